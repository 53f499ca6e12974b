"""Security checks through the real CLI and the simulator: a password never shows up in any process's
argv, in anything printed, in JSON, capture files, sidecars or bundles; every file a capture writes is
private even under umask 000; hostile names and filter values stay data."""

from __future__ import annotations

import copy
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import CliResult, esxcap, isolated_env

from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread, topology_from_data

PASSWORD = "Pw-9zQ!unique-7f3c"
"""The simulated hosts' root password in these tests."""
PASSWORD_ENV = "SIM_ROOT_PASSWORD"
UMASK_000 = ["sh", "-c", 'umask 000 && exec "$0" "$@"', sys.executable, "-m", "esxcap"]
"""The CLI started with the most permissive umask."""
DEFAULT = yaml.safe_load(
    resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def password_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    """The default topology with PASSWORD for root on every host."""
    data = copy.deepcopy(DEFAULT)
    for host in data["hosts"].values():
        host["password"] = PASSWORD
    with SimulatorThread(topology_from_data(data, "<password>"), tmp_path_factory.mktemp("pwsim")) as st:
        yield st


def password_inventory(st: SimulatorThread, where: Path) -> Path:
    """The simulator's inventory, logging in by password (from $SIM_ROOT_PASSWORD) instead of a key."""
    data: dict[str, Any] = yaml.safe_load(st.sim.inventory_path.read_text(encoding="utf-8"))
    del data["defaults"]["identity_file"]
    data["defaults"]["known_hosts"] = str(st.sim.known_hosts_path)
    data["defaults"]["password_env"] = PASSWORD_ENV
    path = where / "inventory.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def command_lines() -> list[bytes]:
    """Every process's argv on this machine, as /proc shows it to other users."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:
                continue
    return lines


def unpacked(path: Path) -> bytes:
    """A file's bytes; a zip's members decompressed (a compressed secret would not match a grep)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return b"".join(archive.read(name) for name in archive.namelist())
    return path.read_bytes()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to read other argv")
def test_password_is_in_no_argv_output_json_capture_or_bundle(password_sim, tmp_path) -> None:
    st = password_sim
    home, out_dir = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out_dir.mkdir()
    inventory = password_inventory(st, tmp_path)
    env = isolated_env(home, **{PASSWORD_ENV: PASSWORD})
    secret = PASSWORD.encode()
    out = out_dir / "web02.pcapng"
    proc = subprocess.Popen(
        [*UMASK_000, "-i", str(inventory), "capture", "--vm", "web02", "-o", str(out), "--bundle", "SR-4242",
         "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not any(p.command for h in st.sim.hosts.values() for p in h.processes.pktcaps()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    leaked = [line for line in command_lines() if secret in line]  # the CLI and all its children
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert leaked == []
    assert secret not in stdout and secret not in stderr
    made = sorted(p for p in out_dir.rglob("*") if p.is_file())
    assert out in made and any(p.suffix == ".json" for p in made) and any(p.suffix == ".zip" for p in made)
    for path in made:
        assert secret not in unpacked(path), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path  # also under umask 000
    with out.open("rb") as handle:
        assert sum(1 for _ in CaptureFile(handle, out.name)) > 0

    def run(*args: str, password: str = PASSWORD) -> CliResult:
        return esxcap("-i", str(inventory), *args, env=isolated_env(home, **{PASSWORD_ENV: password}))

    for result in (
        run("hosts", "--json"),
        run("discover", "--json"),
        run("discover"),
        run("points", "esx03", "--json"),
        run("cleanup", "--json"),
        run("capture", "--vmk", "vmk0", "--host", "esx03", "--dry-run", "--json"),
    ):
        assert result.code == 0, result.stderr
        assert PASSWORD not in result.stdout + result.stderr
    wrong = PASSWORD[::-1]
    refused = run("discover", "--json", password=wrong)
    said = refused.stdout + refused.stderr
    assert refused.code == 1 and "the password was rejected" in said
    assert wrong not in said and PASSWORD not in said


def test_every_file_a_capture_writes_is_private_under_umask_000(password_sim, tmp_path) -> None:
    st = password_sim
    env = isolated_env(tmp_path, **{PASSWORD_ENV: PASSWORD})
    inventory = password_inventory(st, tmp_path)
    result = subprocess.run(
        [*UMASK_000, "-i", str(inventory), "capture", "--vmk", "vmk0", "--all-hosts", "-c", "2", "--split"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = [p for p in (tmp_path / "captures").rglob("*") if p.is_file()]
    assert len([p for p in made if p.name.endswith(".pcapng")]) >= 3
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in made} == dict.fromkeys(made, 0o600)
    merged = tmp_path / "merged.pcapng"
    captures = sorted(p for p in made if p.name.endswith(".pcapng"))
    assert esxcap("merge", *map(str, captures[:2]), "-o", str(merged), env=env).code == 0
    assert stat.S_IMODE(merged.stat().st_mode) == 0o600


def test_hostile_host_name_and_dvfilter_reach_the_host_as_data(tmp_path_factory, tmp_path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"$(touch${{IFS}}{marker})`touch${{IFS}}{marker}`;x"
    with SimulatorThread(topology_from_data(DEFAULT, "<default>"), tmp_path_factory.mktemp("hostile")) as st:
        data: dict[str, Any] = yaml.safe_load(st.sim.inventory_path.read_text(encoding="utf-8"))
        data["defaults"]["known_hosts"] = str(st.sim.known_hosts_path)
        data["defaults"]["identity_file"] = str(st.sim.client_key_path)
        data["hosts"] = {hostile: data["hosts"]["esx03"]}
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
        env = isolated_env(tmp_path)
        out = tmp_path / "out.pcapng"
        vmk = esxcap("-i", str(inventory), "capture", "--vmk", "vmk0", "-c", "2", "-o", str(out), env=env)
        # The simulated shell refuses $(...) and backticks before running anything: the refusal below can
        # only come from pktcap-uw itself, which therefore got the name as one argument.
        dvfilter = esxcap(
            "-i", str(inventory), "capture", "--dvfilter", hostile, "-o", str(tmp_path / "d.pcapng"), env=env
        )
        leftovers = st.sim.hosts["esx03"].processes.pktcaps()
    assert vmk.code == 0, vmk.stderr
    with out.open("rb") as handle:
        assert sum(1 for _ in CaptureFile(handle, out.name)) == 2
    assert dvfilter.code == 1
    assert f"error: Failed to find the dvfilter {hostile}" in " ".join(dvfilter.stderr.split())
    assert not marker.exists() and leftovers == []


def test_hostile_filter_and_target_values_are_refused_naming_the_option(password_sim, tmp_path) -> None:
    inventory = password_inventory(password_sim, tmp_path)
    env = isolated_env(tmp_path, **{PASSWORD_ENV: PASSWORD})
    hostile = f"$(touch {tmp_path / 'x'})`id`"
    for option in ("--ip", "--srcmac", "--vlan", "--tcpport", "--ethtype", "--proto", "--vmk", "--uplink"):
        target = [] if option in ("--vmk", "--uplink") else ["--vmk", "vmk0"]
        result = esxcap("-i", str(inventory), "capture", "--host", "esx03", *target, option, hostile, env=env)
        assert result.code == 2, (option, result.stderr)
        assert f"{option}: invalid value" in result.stderr
    assert not (tmp_path / "x").exists()
    assert password_sim.sim.hosts["esx03"].processes.pktcaps() == []
