"""`esxcap discover`, `find` and `hosts` end to end: the real CLI, over real SSH, against the simulator.
The main flows run on every transport, chosen by `--transport` or by the inventory key `transport`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env

from esxcap.inventory import TRANSPORTS
from esxcap.sim import SimulatorThread, load_topology

TOPOLOGY = load_topology()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    with SimulatorThread(TOPOLOGY, tmp_path_factory.mktemp("sim")) as sim_thread:
        yield sim_thread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _inventory(running: SimulatorThread) -> str:
    return str(running.sim.inventory_path)


def _edited_inventory(running: SimulatorThread, tmp_path: Path, edit) -> str:
    """A copy of the simulator's inventory (next to copies of its key files), changed by `edit`."""
    for name in ("known_hosts", "client_key", "client_key.pub"):
        src = running.sim.state_dir / name
        if src.exists():
            shutil.copy(src, tmp_path / name)
    data = yaml.safe_load(running.sim.inventory_path.read_text())
    edit(data)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    path.chmod(0o600)
    return str(path)


def test_discover_json_has_the_published_shape_and_the_simulated_facts(running, env, transport) -> None:
    result = esxcap("-i", _inventory(running), "discover", "--json", "--transport", transport, env=env)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["errors"] == []
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert set(hosts) == set(TOPOLOGY_HOST_NAMES)
    for name, host in hosts.items():
        sim_host = running.sim.hosts[name]
        assert host["port"] == sim_host.port and host["address"] == "127.0.0.1"
        assert set(host) >= {"host", "address", "port", "esxi", "vms", "vmknics", "uplinks", "ports"}
        assert set(host["esxi"]) >= {"version", "build", "update"}
        ports_by_id = {p["port_id"]: p for p in host["ports"]}
        for vm in host["vms"]:
            assert set(vm) >= {"name", "world_id", "ports"}
            for port in vm["ports"]:
                assert set(port) >= {
                    "port_id",
                    "mac",
                    "ip",
                    "portgroup",
                    "vswitch",
                    "dvport_id",
                    "team_uplink",
                    "uplink_port_id",
                }
                # every vNIC port is the one net-stats lists for that VM's NIC
                assert ports_by_id[port["port_id"]]["client"].startswith(vm["name"] + ".eth")
                assert ports_by_id[port["port_id"]]["mac"] == port["mac"]
        for vmk in host["vmknics"]:
            assert ports_by_id[vmk["port_id"]]["client"] == vmk["name"]
        for uplink in host["uplinks"]:
            assert uplink["link"] in ("Up", "Down")
            assert ports_by_id[uplink["port_id"]]["client"] == uplink["name"]
    versions = {h["esxi"]["version"] for h in hosts.values()}
    assert len(versions) >= 3
    names = {vm["name"] for h in hosts.values() for vm in h["vms"]}
    assert "web 01" in names and any(not n.isascii() for n in names)
    assert any(len(vm["ports"]) >= 2 for h in hosts.values() for vm in h["vms"])
    assert any(p["dvport_id"] for h in hosts.values() for vm in h["vms"] for p in vm["ports"])


TOPOLOGY_HOST_NAMES = [h.name for h in TOPOLOGY.hosts]


def test_discover_tables_show_every_host_and_vm(running, env) -> None:
    result = esxcap("-i", _inventory(running), "discover", env=env)
    assert result.code == 0, result.stderr
    for host in TOPOLOGY.hosts:
        assert host.name in result.stdout
        for vm in host.vms:
            assert (vm.name in result.stdout) == vm.running
    assert "VMkernel NICs" in result.stdout and "Uplinks" in result.stdout


def test_discover_through_the_console_script_prints_nothing_on_stderr(running, env) -> None:
    """No library notice (cryptography's DSA deprecation via asyncssh) reaches the admin's terminal."""
    result = esxcap("-i", _inventory(running), "discover", "--json", env=env, console_script=True)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert {h["host"] for h in result.json()["hosts"]} == set(TOPOLOGY_HOST_NAMES)


def test_one_connection_and_two_round_trips_per_host(running, env) -> None:
    name = TOPOLOGY_HOST_NAMES[-1]
    host = running.sim.hosts[name]
    before = (host.connections, host.exec_requests)
    result = esxcap("-i", _inventory(running), "discover", name, "--json", env=env)
    assert result.code == 0, result.stderr
    assert (host.connections - before[0], host.exec_requests - before[1]) == (1, 2)


def test_one_unreachable_host_among_reachable_ones(running, env, tmp_path, transport) -> None:
    def add_dead_host(data):
        data["defaults"]["transport"] = transport
        data["hosts"]["esx-down"] = {"hostname": "127.0.0.1", "port": 1, "connect_timeout": 3}

    result = esxcap("-i", _edited_inventory(running, tmp_path, add_dead_host), "discover", "--json", env=env)
    assert result.code == 3, result.stderr
    doc = result.json()
    assert {h["host"] for h in doc["hosts"]} == set(TOPOLOGY_HOST_NAMES)
    [error] = doc["errors"]
    assert error["host"] == "esx-down" and "127.0.0.1" in error["error"] and error["hint"]
    tables = esxcap("-i", _edited_inventory(running, tmp_path, add_dead_host), "discover", env=env)
    assert tables.code == 3
    assert "esx-down" in tables.stderr and TOPOLOGY_HOST_NAMES[0] in tables.stdout


def test_all_hosts_failing_exits_1(env, tmp_path) -> None:
    result = esxcap("discover", "root@127.0.0.1:1", env=env)
    assert result.code == 1
    assert "127.0.0.1" in result.stderr


def test_unknown_host_key_is_refused_then_accept_new_records_it(running, env, tmp_path, transport) -> None:
    def forget_keys(data):
        data["defaults"]["known_hosts"] = str(tmp_path / "empty_known_hosts")

    inventory = _edited_inventory(running, tmp_path, forget_keys)
    name = TOPOLOGY_HOST_NAMES[-1]
    refused = esxcap("-i", inventory, "discover", name, "--transport", transport, env=env)
    assert refused.code == 1
    assert "SHA256:" in refused.stderr and "--accept-new" in refused.stderr
    accepted = esxcap("-i", inventory, "discover", name, "--accept-new", "--transport", transport, env=env)
    assert accepted.code == 0, accepted.stderr
    recorded = (tmp_path / "empty_known_hosts").read_text()
    assert f"[127.0.0.1]:{running.sim.hosts[name].port}" in recorded
    again = esxcap("-i", inventory, "discover", name, "--transport", transport, env=env)
    assert again.code == 0, again.stderr


def test_changed_host_key_is_refused_even_with_accept_new(running, env, tmp_path, transport) -> None:
    name = TOPOLOGY_HOST_NAMES[-1]
    port = running.sim.hosts[name].port
    other = TOPOLOGY_HOST_NAMES[0]
    other_port = running.sim.hosts[other].port
    # known_hosts claims the other host's keys for this host's address
    lines = running.sim.known_hosts_path.read_text().splitlines()
    forged = [
        ln.replace(f"[127.0.0.1]:{other_port}", f"[127.0.0.1]:{port}")
        for ln in lines
        if ln.startswith(f"[127.0.0.1]:{other_port} ")
    ]

    def forge(data):
        (tmp_path / "forged_known_hosts").write_text("\n".join(forged) + "\n")
        data["defaults"]["known_hosts"] = str(tmp_path / "forged_known_hosts")

    inventory = _edited_inventory(running, tmp_path, forge)
    for extra in ([], ["--accept-new"]):
        result = esxcap("-i", inventory, "discover", name, *extra, "--transport", transport, env=env)
        assert result.code == 1
        assert "changed" in result.stderr.lower() and "ssh-keygen -R" in result.stderr


def test_wrong_password_names_the_host_and_the_way_out(running, env, tmp_path, transport) -> None:
    def password_only(data):
        data["defaults"].pop("identity_file", None)
        data["defaults"]["password_env"] = "SIM_PASSWORD"
        data["defaults"]["transport"] = transport

    inventory = _edited_inventory(running, tmp_path, password_only)
    name = TOPOLOGY_HOST_NAMES[-1]
    bad = esxcap("-i", inventory, "discover", name, env={**env, "SIM_PASSWORD": "wrong-password"})
    assert bad.code == 1
    assert name in bad.stderr and "wrong-password" not in bad.stderr + bad.stdout
    good = esxcap(
        "-i",
        inventory,
        "discover",
        name,
        env={**env, "SIM_PASSWORD": running.sim.topology.hosts[-1].password},
    )
    assert good.code == 0, good.stderr


def test_find_exact_glob_mac_ip(running, env) -> None:
    inventory = _inventory(running)
    vm_host = next(h for h in TOPOLOGY.hosts if any(vm.name == "web 01" for vm in h.vms))
    exact = esxcap("-i", inventory, "find", "web 01", "--json", env=env).json()
    assert {(m["host"], m["name"], m["matched_by"]) for m in exact["matches"]} == {
        (vm_host.name, "web 01", "exact")
    }
    anycase = esxcap("-i", inventory, "find", "WEB 01", "--json", env=env).json()
    assert {m["matched_by"] for m in anycase["matches"]} == {"case-insensitive"}
    glob = esxcap("-i", inventory, "find", "*", "--json", env=env).json()
    assert {m["name"] for m in glob["matches"]} == {
        vm.name for h in TOPOLOGY.hosts for vm in h.vms if vm.running
    }
    port = exact["matches"][0]
    by_mac = esxcap("-i", inventory, "find", port["mac"].upper(), "--json", env=env).json()
    assert [(m["host"], m["port_id"]) for m in by_mac["matches"]] == [(vm_host.name, port["port_id"])]


def test_find_nothing_exits_2_with_advice_as_capture_does(running, env) -> None:
    result = esxcap("-i", _inventory(running), "find", "no-such-vm", env=env)
    assert result.code == 2
    assert "no-such-vm" in result.stderr and "glob" in result.stderr
    capture = esxcap("-i", _inventory(running), "capture", "--vm", "no-such-vm", "--dry-run", env=env)
    assert capture.code == result.code and "no-such-vm" in capture.stderr


def test_hosts_shows_the_inventory_without_secrets(running, env) -> None:
    result = esxcap("-i", _inventory(running), "hosts", "--json", env=env)
    assert result.code == 0, result.stderr
    names = [h["name"] for h in result.json()["hosts"]]
    assert names == TOPOLOGY_HOST_NAMES


def test_inventory_error_exits_2_naming_file_line_and_key(env, tmp_path) -> None:
    bad = tmp_path / "inventory.yaml"
    bad.write_text("defaults:\n  username: root\nhosts:\n  esx01:\n    hostname: 10.0.0.1\n    prot: 22\n")
    result = esxcap("-i", str(bad), "discover", env=env)
    assert result.code == 2
    assert str(bad) in result.stderr and "6" in result.stderr and "prot" in result.stderr


@pytest.mark.parametrize(
    "command", ["hosts", "discover", "find", "capture", "points", "cleanup", "merge", "sim"]
)
def test_every_command_has_help(command, env) -> None:
    result = esxcap(command, "--help", env=env)
    assert result.code == 0, result.stderr
    assert "Usage" in result.stdout


def test_version_and_bad_option(env) -> None:
    assert esxcap("--version", env=env).stdout.startswith("esxcap ")
    bad = esxcap("discover", "--no-such-option", env=env)
    assert bad.code == 2 and "--no-such-option" in bad.stderr


def test_distributed_portgroups_are_shown_by_name_where_the_host_names_them(running, env) -> None:
    result = esxcap("-i", str(running.sim.inventory_path), "discover", "esx03", env=env)
    assert result.code == 0, result.stderr
    assert "dvpg-web (dvportgroup-4024)" in result.stdout and "dvpg-db (dvportgroup-4025)" in result.stdout
    assert "dvportgroup-4026" in result.stdout  # no VM names that one: its key alone
