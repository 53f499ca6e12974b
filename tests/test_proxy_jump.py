"""ProxyJump on both transports: simulated hosts reached through a real OpenSSH jump host (sshd on
127.0.0.1 forwarding with direct-tcpip), the jump host described in an ssh config as OpenSSH users do."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env

from bench.sshd import OpenSshd, SshdUnavailable
from esxcap.inventory import TRANSPORTS
from esxcap.sim import SimulatorThread, load_topology

TOPOLOGY = load_topology()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    with SimulatorThread(TOPOLOGY, tmp_path_factory.mktemp("sim")) as sim_thread:
        yield sim_thread


@pytest.fixture(scope="module")
def jump_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshd]:
    try:
        sshd = OpenSshd.start(tmp_path_factory.mktemp("jump"))
    except SshdUnavailable as exc:
        pytest.skip(f"a jump host needs OpenSSH's sshd: {exc}")
    with sshd:
        yield sshd


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _setup(running: SimulatorThread, jump: OpenSshd, tmp_path: Path, jump_port: int) -> dict[str, str]:
    """Every simulated host behind `proxy_jump: jump`; `jump` defined in an ssh config file."""
    for name in ("known_hosts", "client_key"):
        shutil.copy(running.sim.state_dir / name, tmp_path / name)
    data = yaml.safe_load(running.sim.inventory_path.read_text())
    data["defaults"]["proxy_jump"] = "jump"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {jump_port}\n  User {jump.user}\n"
        f"  IdentityFile {jump.client_key}\n  UserKnownHostsFile {jump.known_hosts}\n"
    )
    env = isolated_env(tmp_path, ESXCAP_SSH_CONFIG=str(config))
    env["ESXCAP_INVENTORY"] = str(inventory)
    return env


def test_discover_and_capture_through_a_jump_host(running, jump_host, transport, tmp_path) -> None:
    env = _setup(running, jump_host, tmp_path, jump_host.port)
    found = esxcap("discover", "--json", "--transport", transport, env=env)
    assert found.code == 0, found.stderr
    assert len(found.json()["hosts"]) == len(TOPOLOGY.hosts)
    out = tmp_path / "via-jump.pcapng"
    captured = esxcap(
        "capture", "--vm", "web 01", "-c", "6", "-o", str(out), "--json", "--transport", transport, env=env
    )
    assert captured.code == 0, captured.stderr
    assert sum(s["packets"] for s in captured.json()["streams"]) == 6 and out.stat().st_size > 0


def test_a_jump_host_down_is_named_and_nothing_goes_around_it(running, jump_host, transport, tmp_path):
    """The simulated hosts are reachable directly; with the jump host down they must not be reached."""
    env = _setup(running, jump_host, tmp_path, _closed_port())
    result = esxcap("discover", "esx01", "--json", "--transport", transport, env=env)
    assert result.code == 1
    doc = result.json()
    assert doc["hosts"] == [] and len(doc["errors"]) == 1
    assert "through jump host jump" in doc["errors"][0]["error"]


@pytest.fixture(scope="module")
def closed_jump_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshd]:
    """A jump host that lets you in but forwards nothing."""
    try:
        sshd = OpenSshd.start(tmp_path_factory.mktemp("nofwd"), extra_config=["AllowTcpForwarding no"])
    except SshdUnavailable as exc:
        pytest.skip(f"a jump host needs OpenSSH's sshd: {exc}")
    with sshd:
        yield sshd


def test_a_jump_host_that_forwards_nothing_is_named(running, closed_jump_host, transport, tmp_path) -> None:
    env = _setup(running, closed_jump_host, tmp_path, closed_jump_host.port)
    result = esxcap("discover", "esx01", "--json", "--transport", transport, env=env)
    assert result.code == 1
    [error] = result.json()["errors"]
    assert "through jump host jump" in error["error"] and "cannot reach" in error["error"], error
    assert "AllowTcpForwarding" in error["hint"] and "Secsh" not in result.stderr
