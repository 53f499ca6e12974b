"""ProxyJump on both transports: simulated hosts reached through a real OpenSSH jump host (sshd on
127.0.0.1 forwarding with direct-tcpip), the jump host described in an ssh config as OpenSSH users do."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env

from bench.sshd import OpenSshd, SshdUnavailable
from esxcap.inventory import TRANSPORTS, HostConfig
from esxcap.sim import SimulatorThread, load_topology
from esxcap.ssh.transport.paramiko_channel import MAX_PACKET_SIZE, WINDOW_SIZE
from esxcap.ssh.transport.paramiko_transport import ParamikoTransport, _Endpoint

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


def _setup(
    running: SimulatorThread, jump: OpenSshd, tmp_path: Path, jump_port: int, extra: str = ""
) -> dict[str, str]:
    """Every simulated host behind `proxy_jump: jump` (2 s connect timeout); `jump` defined in an ssh
    config file, with `extra` lines after it."""
    for name in ("known_hosts", "client_key"):
        shutil.copy(running.sim.state_dir / name, tmp_path / name)
    data = yaml.safe_load(running.sim.inventory_path.read_text())
    data["defaults"]["proxy_jump"] = "jump"
    data["defaults"]["connect_timeout"] = 2
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {jump_port}\n  User {jump.user}\n"
        f"  IdentityFile {jump.client_key}\n  UserKnownHostsFile {jump.known_hosts}\n{extra}"
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


def test_a_jump_host_that_never_answers_is_named(running, jump_host, transport, tmp_path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        env = _setup(running, jump_host, tmp_path, int(silent.getsockname()[1]))
        result = esxcap("discover", "esx01", "--json", "--transport", transport, env=env)
    assert result.code == 1
    [error] = result.json()["errors"]
    assert "through jump host jump" in error["error"] and "no answer within 2 s" in error["error"], error


def test_the_first_hops_own_proxy_jump_comes_first(running, jump_host, transport, tmp_path) -> None:
    """`jump` is itself behind `outer` in ~/.ssh/config, as `ssh -J jump` would honour."""
    outer = (
        f"  ProxyJump outer\nHost outer\n  HostName 127.0.0.1\n  Port {jump_host.port}\n"
        f"  User {jump_host.user}\n  IdentityFile {jump_host.client_key}\n"
        f"  UserKnownHostsFile {jump_host.known_hosts}\n"
    )
    env = _setup(running, jump_host, tmp_path, jump_host.port, outer)
    found = esxcap("discover", "esx01", "--json", "--transport", transport, env=env)
    assert found.code == 0, found.stderr
    (tmp_path / "down").mkdir()
    down = _setup(running, jump_host, tmp_path / "down", jump_host.port, outer.replace(
        f"Port {jump_host.port}\n  User", f"Port {_closed_port()}\n  User"
    ))  # fmt: skip
    result = esxcap("discover", "esx01", "--json", "--transport", transport, env=down)
    assert result.code == 1, "the outer hop was not used"


def test_paramiko_hop_channel_is_tuned_like_a_session(running, jump_host, tmp_path) -> None:
    """The tunnel through the jump host carries the whole capture: same window and packet size as our
    own session channels."""
    _setup(running, jump_host, tmp_path, jump_host.port)
    host = HostConfig(
        name="esx01",
        hostname="127.0.0.1",
        port=running.sim.hosts["esx01"].port,
        known_hosts=tmp_path / "known_hosts",
        identity_file=tmp_path / "client_key",
        proxy_jump="jump",
        explicit=frozenset({"hostname", "port", "known_hosts", "identity_file", "proxy_jump"}),
    )

    async def tunnel_sizes() -> tuple[int, int]:
        transport = ParamikoTransport(ssh_config=[tmp_path / "ssh_config"])
        conn = await transport.connect(host, password=lambda _prompt: None, accept_new=False)
        try:
            tunnel = conn._transport.sock
            return tunnel.in_window_size, tunnel.in_max_packet_size
        finally:
            await conn.close()

    assert asyncio.run(tunnel_sizes()) == (WINDOW_SIZE, MAX_PACKET_SIZE)


def test_hops_are_read_as_openssh_writes_them(tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host bastion\n  User ops\n  ProxyJump gate\nHost gate\n  ProxyJump bastion\n")
    hops = _Endpoint.resolve(
        HostConfig(name="esx", hostname="10.0.0.1", proxy_jump="bastion"), [config]
    ).jumps
    assert [h.name for h, _ in hops] == ["gate", "bastion"]  # bastion's own hop first; the loop ends it
    assert hops[1][1].username == "ops"
    uri = HostConfig(name="esx", hostname="10.0.0.1", proxy_jump="ssh://admin@[2001:db8::1]:2222")
    [(hop, endpoint)] = _Endpoint.resolve(uri, [config]).jumps
    assert (hop.hostname, hop.port, hop.username) == ("2001:db8::1", 2222, "admin")
    assert (endpoint.target, endpoint.port) == ("2001:db8::1", 2222)


def test_an_unknown_jump_host_key_is_refused_and_named(running, jump_host, transport, tmp_path) -> None:
    env = _setup(running, jump_host, tmp_path, jump_host.port)
    empty = tmp_path / "jump_known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(config.read_text().replace(str(jump_host.known_hosts), str(empty)))
    refused = esxcap("discover", "esx01", "--json", "--transport", transport, env=env)
    assert refused.code == 1
    [error] = refused.json()["errors"]
    assert "jump host jump" in error["error"], error
    if transport == "paramiko":  # asyncssh's own tunnel code decides on hop keys without --accept-new
        assert "esxcap discover esx01 --accept-new" in error["hint"], error
        trusted = esxcap("discover", "esx01", "--json", "--transport", transport, "--accept-new", env=env)
        assert trusted.code == 0, trusted.stderr
        assert "127.0.0.1" in empty.read_text()
