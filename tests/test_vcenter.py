"""vCenter-assisted captures against govmomi's vcsim (built by `make vcsim`) through pyVmomi: the
certificate trusted like an SSH host key, hosts and clusters, VMs located in one query and SSH to that
host only, and --enable-ssh (vcsim does not simulate host services: `vcenter_services` stands in for
those calls and opens the simulated host's port when SSH is "started")."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY
from polling import wait_until
from vcenter_services import ServiceDesk

from esxcap.errors import HostError, UsageError
from esxcap.inventory import VcenterConfig, normalize_fingerprint, parse_inventory
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread, topology_from_data
from esxcap.vcenter.client import Vcenter, check_trust, server_fingerprint
from esxcap.vcenter.estate import VcNic, VcVm, hosts_running, locate

VCSIM = Path(__file__).resolve().parents[1] / "build" / "vcsim"
PASSWORD_ENV = "ESXCAP_TEST_VC_PASSWORD"
TESTS = str(Path(__file__).resolve().parent)


# --- pure parts ----------------------------------------------------------------------------------------


def test_fingerprints_in_every_spelling() -> None:
    digits = "ab" * 32
    canonical = "SHA256:" + ":".join(["AB"] * 32)
    assert normalize_fingerprint(digits) == canonical
    assert normalize_fingerprint("sha256:" + ":".join(["ab"] * 32)) == canonical
    assert normalize_fingerprint("ab:cd") is None


def test_vcenter_block_is_checked(tmp_path: Path) -> None:
    inv = parse_inventory(
        "vcenter: {address: vc.lab, password_env: VC_PW, fingerprint: " + "ab" * 32 + "}\n",
        tmp_path / "i.yaml",
    )
    assert inv.vcenter == VcenterConfig(
        "vc.lab", password_env="VC_PW", fingerprint="SHA256:" + ":".join(["AB"] * 32)
    )
    with pytest.raises(Exception, match="no address"):
        parse_inventory("vcenter: {username: x}\n", tmp_path / "i.yaml")
    with pytest.raises(Exception, match="passwords are not accepted"):
        parse_inventory("vcenter: {address: a, password: x}\n", tmp_path / "i.yaml")
    with pytest.raises(Exception, match="not a SHA-256 fingerprint"):
        parse_inventory("vcenter: {address: a, fingerprint: abc}\n", tmp_path / "i.yaml")


def test_vcenter_hosts_join_the_inventory(tmp_path: Path) -> None:
    inv = parse_inventory(
        "defaults: {username: capture}\nhosts:\n  h1: {hostname: 10.0.0.1}\n", tmp_path / "i.yaml"
    )
    merged = inv.with_vcenter_hosts([("h1", "prod"), ("h2", "prod"), ("h3", None)])
    assert merged.hosts["h1"].hostname == "10.0.0.1" and merged.hosts["h1"].groups == ("prod",)
    assert merged.hosts["h2"].username == "capture" and merged.groups == ("prod",)
    assert [h.name for h in merged.select([], "prod")] == ["h1", "h2"]


def test_locating_vms() -> None:
    vms = [
        VcVm("web01", "h1", "poweredOn", (VcNic("Network adapter 1", "00:50:56:00:00:01", "VM Network"),)),
        VcVm("web02", None, "poweredOff", ()),
        VcVm("db01", "h2", "poweredOn", ()),
    ]
    assert [v.host for v in locate("WEB01", vms)] == ["h1"]
    assert [v.name for v in locate("web*", vms)] == ["web01"]
    with pytest.raises(UsageError, match="is running"):
        locate("web02", vms)
    with pytest.raises(UsageError, match="knows no VM"):
        locate("nope", vms)
    assert hosts_running("00-50-56-00-00-01", vms) == ["h1"]
    assert hosts_running("10.0.0.0/24", vms) is None and hosts_running("nope", vms) == []


def test_trust_is_as_strict_as_for_host_keys(tmp_path: Path) -> None:
    known = tmp_path / "known_vcenters"
    config = VcenterConfig("vc.lab")
    seen = "SHA256:" + ":".join(["AB"] * 32)
    other = "SHA256:" + ":".join(["CD"] * 32)
    with pytest.raises(HostError, match="not known") as unknown:
        check_trust(config, seen, False, known)
    assert seen in unknown.value.message and "--accept-new" in (unknown.value.hint or "")
    assert check_trust(config, seen, True, known) == seen and known.stat().st_mode & 0o777 == 0o600
    assert check_trust(config, seen, False, known) == seen
    with pytest.raises(HostError, match="not the one recorded"):
        check_trust(config, other, True, known)
    with pytest.raises(HostError, match="pinned in the inventory"):
        check_trust(VcenterConfig("vc.lab", fingerprint=other), seen, True, known)


# --- against vcsim -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vcsim() -> Iterator[VcenterConfig]:
    if not VCSIM.is_file():
        pytest.skip(
            "vcsim is not built (make vcsim needs Debian's golang-go and golang-github-vmware-govmomi-dev)"
        )
    proc = subprocess.Popen([str(VCSIM)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        yield VcenterConfig("127.0.0.1", port=port, username="user", password_env=PASSWORD_ENV)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def _connect(config: VcenterConfig, monkeypatch: pytest.MonkeyPatch) -> Vcenter:
    monkeypatch.setenv(PASSWORD_ENV, "pass")
    pinned = VcenterConfig(**{**vars(config), "fingerprint": server_fingerprint(config)})
    return Vcenter.connect(pinned, lambda _prompt: None, False)


def test_vcsim_hosts_clusters_and_vms_in_one_query_each(
    vcsim: VcenterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    vc = _connect(vcsim, monkeypatch)
    try:
        hosts = vc.hosts()
        vms = vc.vms()
        assert not vc.ssh_running(hosts[0].name) and vc.lockdown(hosts[0].name) == ("lockdownDisabled", ())
    finally:
        vc.close()
    assert {h.cluster for h in hosts} >= {"DC0_C0"}
    running = [vm for vm in vms if vm.power_state == "poweredOn"]
    assert running and all(vm.host in {h.name for h in hosts} for vm in running)
    assert all(nic.mac and nic.network.startswith("dvportgroup") for vm in running for nic in vm.nics)


def _inventory(sim: SimulatorThread, vcsim: VcenterConfig, **extra: Any) -> Path:
    """The simulator's inventory plus a vcenter block (beside it: its paths are relative)."""
    path = sim.sim.inventory_path.with_name("inventory-vcenter.yaml")
    data = yaml.safe_load(sim.sim.inventory_path.read_text())
    data["vcenter"] = {
        "address": vcsim.address,
        "port": vcsim.port,
        "username": vcsim.username,
        "password_env": PASSWORD_ENV,
        "fingerprint": server_fingerprint(vcsim),
        **extra,
    }
    data["vcenter"] = {k: v for k, v in data["vcenter"].items() if v is not None}
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_certificate_is_refused_then_accepted(vcsim: VcenterConfig, fast_sim, tmp_path: Path) -> None:
    inventory = _inventory(fast_sim, vcsim, fingerprint=None)
    env = isolated_env(tmp_path, **{PASSWORD_ENV: "pass"})
    refused = esxcap("-i", str(inventory), "hosts", "--vcenter", env=env)
    assert refused.code == 1 and server_fingerprint(vcsim) in refused.stderr
    assert "esxcap hosts --vcenter --accept-new" in refused.stderr
    accepted = esxcap("-i", str(inventory), "hosts", "--vcenter", "--accept-new", "--json", env=env)
    assert accepted.code == 0, accepted.stderr
    rows = {h["name"]: h for h in accepted.json()["hosts"]}
    assert "DC0_C0" in rows["DC0_C0_H0"]["groups"] and "old" in rows
    again = esxcap("-i", str(inventory), "hosts", "--vcenter", env=env)
    assert again.code == 0, again.stderr


@pytest.fixture
def placed(
    vcsim: VcenterConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[SimulatorThread, str, str, str]]:
    """A simulator whose hosts are vcsim's cluster hosts: the VM vcsim places first runs on its host
    (as m1 did on mid); the other cluster host holds n1's place. Yields (simulator, vm, its host, other)."""
    vc = _connect(vcsim, monkeypatch)
    try:
        vm = next(v for v in vc.vms() if v.power_state == "poweredOn" and v.host)
        other = next(h.name for h in vc.hosts() if h.name != vm.host and h.cluster)
    finally:
        vc.close()
    assert vm.host is not None
    names = {"mid": vm.host, "new": other, "m1": vm.name}
    text = json.dumps(copy.deepcopy(FAST_TOPOLOGY))
    for old, new in names.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    st = SimulatorThread(topology_from_data(json.loads(text), "<vcsim topology>"), tmp_path / "sim")
    with st:
        yield st, vm.name, vm.host, other


def test_capture_goes_to_the_one_host_vcenter_names(placed, vcsim: VcenterConfig, tmp_path: Path) -> None:
    st, vm, host, other = placed
    st.call(st.sim.stop_host(other))
    st.call(st.sim.stop_host("old"))  # were either contacted, the capture would report it
    inventory = _inventory(st, vcsim)
    out = tmp_path / "vc.pcapng"
    env = isolated_env(tmp_path, **{PASSWORD_ENV: "pass"})
    result = esxcap("-i", str(inventory), "capture", "--vm", vm, "-c", "5", "-o", str(out), "--json", env=env)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["vcenter"]["located"] == {vm: [host]} and doc["errors"] == []
    assert {s["host"] for s in doc["streams"]} == {host}
    assert "SSH to 1 host(s)" in result.stderr
    with out.open("rb") as handle:
        assert sum(1 for _ in CaptureFile(handle, out.name)) > 0


def _cli(control: Path, inventory: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    code = (
        f"import sys; sys.path.insert(0, {TESTS!r}); import vcenter_services as v; "
        f"v.run_cli({str(control)!r}, sys.argv[1:])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "-i", str(inventory), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _with_ssh(desk: tuple[ServiceDesk, Path, dict[str, str], str, str], *args: str) -> subprocess.Popen[str]:
    """`capture --vm VM --enable-ssh ARGS` on the desk's VM, its service calls answered by the desk."""
    service, inventory, env, vm, _host = desk
    return _cli(service.folder, inventory, env, "capture", "--vm", vm, "--enable-ssh", *args)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


@pytest.fixture
def desk(
    placed, vcsim: VcenterConfig, tmp_path: Path
) -> Iterator[tuple[ServiceDesk, Path, dict[str, str], str, str]]:
    st, vm, host, _other = placed
    st.call(st.sim.stop_host(host))  # SSH is off on the VM's host
    control = tmp_path / "control"
    control.mkdir()
    inventory = _inventory(st, vcsim, ssh_start_timeout=3)
    env = isolated_env(tmp_path, **{PASSWORD_ENV: "pass"})
    with ServiceDesk(control, st, running=set()) as service_desk:
        yield service_desk, inventory, env, vm, host


def test_enable_ssh_starts_and_stops_it_exactly_once(desk, tmp_path: Path) -> None:
    service, inventory, env, vm, host = desk
    off = _finish(_cli(service.folder, inventory, env, "capture", "--vm", vm, "-c", "3", "-o", str(tmp_path)))
    assert off[0] == 1 and "--enable-ssh" in off[2] and service.calls == []
    out = tmp_path / "on.pcapng"
    code, stdout, stderr = _finish(
        _with_ssh(
            desk,
            "-d",
            "2",
            "-o",
            str(out),
            "--json",
        )
    )
    assert code == 0, stderr
    assert service.calls == [f"start {host}", f"stop {host}"]
    changes = json.loads(stdout)["vcenter"]["ssh_changes"]
    assert [(c["action"], c["done"]) for c in changes] == [
        ("started SSH (TSM-SSH)", True),
        ("stopped SSH (TSM-SSH)", True),
    ]
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["vcenter"]["ssh_changes"] == changes
    assert "vCenter: started SSH" in stderr and "vCenter: stopped SSH" in stderr


def test_enable_ssh_when_starting_fails_or_the_port_stays_shut(desk, tmp_path: Path) -> None:
    service, host = desk[0], desk[4]
    service.update(start_fails=True)
    code, _out, stderr = _finish(_with_ssh(desk, "-c", "1"))
    assert code == 1 and "Host.Config.NetService" in stderr
    service.update(start_fails=False)
    service.start_opens_port = False
    code, _out, stderr = _finish(_with_ssh(desk, "-c", "1"))
    assert code == 1 and "did not answer" in stderr
    assert service.calls == [f"start {host}", f"start {host}", f"stop {host}"]  # what it started, it stops


def test_interrupted_capture_still_stops_ssh(desk, tmp_path: Path) -> None:
    service, host = desk[0], desk[4]
    proc = _with_ssh(
        desk,
        "-d",
        "60",
        "-o",
        str(tmp_path / "i.pcapng"),
    )
    assert wait_until(lambda: any(tmp_path.glob("i.pcapng*.part")), 60)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    code, _out, stderr = _finish(proc)
    assert code == 0 and "files are being completed" in stderr, stderr  # one Ctrl-C: a graceful stop
    assert service.calls == [f"start {host}", f"stop {host}"]


def test_a_second_capture_keeps_ssh_until_the_last_one_ends(desk, tmp_path: Path) -> None:
    service, host = desk[0], desk[4]
    first = _with_ssh(
        desk,
        "-d",
        "8",
        "-o",
        str(tmp_path / "a.pcapng"),
    )
    assert wait_until(lambda: service.calls == [f"start {host}"] and any(tmp_path.glob("a.pcapng*.part")), 60)
    second = _finish(
        _with_ssh(
            desk,
            "-d",
            "1",
            "-o",
            str(tmp_path / "b.pcapng"),
        )
    )
    assert second[0] == 0, second[2]
    assert service.calls == [f"start {host}"]  # the second found SSH on and left it on
    code, _out, stderr = _finish(first)
    assert code == 0, stderr
    assert service.calls == [f"start {host}", f"stop {host}"]


def test_lockdown_lets_in_exception_users_only(desk, tmp_path: Path) -> None:
    service, host = desk[0], desk[4]
    service.update(lockdown={host: ["lockdownNormal", ["svc-capture"]]})
    code, _out, stderr = _finish(_with_ssh(desk, "-c", "1"))
    assert code == 2 and "normal lockdown mode" in stderr and "svc-capture" in stderr and service.calls == []
    service.update(lockdown={host: ["lockdownNormal", ["root", "svc-capture"]]})
    code, _out, stderr = _finish(
        _with_ssh(
            desk,
            "-c",
            "1",
            "-o",
            str(tmp_path),
        )
    )
    assert code == 0, stderr
    assert service.calls == [f"start {host}", f"stop {host}"]


def test_find_asks_only_the_host_vcenter_names(placed, vcsim: VcenterConfig, tmp_path: Path) -> None:
    st, vm, host, other = placed
    st.call(st.sim.stop_host(other))
    st.call(st.sim.stop_host("old"))
    env = isolated_env(tmp_path, **{PASSWORD_ENV: "pass"})
    result = esxcap("-i", str(_inventory(st, vcsim)), "find", vm, "--json", env=env)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert [(m["host"], m["name"]) for m in doc["matches"]] == [(host, vm)] and doc["errors"] == []
    assert "SSH to 1 of" in result.stderr
