"""Both SSH transports (asyncssh, paramiko) over real SSH against the ESXi simulator: auth, host keys, errors,
exec, streaming. Every test runs on each transport and expects the same behaviour and the same words."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esxcap.errors import AuthError, CommandTimeout, ConnectError, HostKeyError
from esxcap.inventory import HostConfig, load_inventory
from esxcap.pcap import PcapStreamReader
from esxcap.sim import SimulatorThread, load_topology
from esxcap.ssh.transport import STREAM_CHUNK, Transport
from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport
from esxcap.ssh.transport.paramiko_transport import ParamikoTransport

TRANSPORTS = {"asyncssh": AsyncsshTransport, "paramiko": ParamikoTransport}


def make_transport(kind: str, ssh_config: list[Path] | None = None) -> Transport:
    return TRANSPORTS[kind](ssh_config=ssh_config or [])


@pytest.fixture(params=sorted(TRANSPORTS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("sim")) as st:
        yield st


def no_password(prompt: str) -> str | None:
    return None


def sim_host(st: SimulatorThread, name: str, **changes: object) -> HostConfig:
    host = load_inventory(st.sim.inventory_path).hosts[name]
    return dataclasses.replace(host, **changes) if changes else host


def known_lines(path: Path, port: int) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(f"[127.0.0.1]:{port} ")]


def fingerprint(line: str) -> str:
    blob = base64.b64decode(line.split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def connect(
    host: HostConfig,
    kind: str,
    *,
    password=no_password,
    accept_new: bool = False,
    ssh_config: list[Path] | None = None,
) -> None:
    """Connect, run `hostname`, close; the host's name must come back."""

    async def go() -> None:
        transport = make_transport(kind, ssh_config)
        conn = await transport.connect(host, password=password, accept_new=accept_new)
        try:
            result = await conn.run(["hostname"], timeout=10)
            assert result.exit_status == 0
        finally:
            await conn.close()

    asyncio.run(go())


def run(
    host: HostConfig, kind: str, argv: list[str], timeout: float = 10
) -> tuple[int | None, bytes, bytes, dict]:
    async def go() -> tuple[int | None, bytes, bytes, dict]:
        conn = await make_transport(kind).connect(host, password=no_password, accept_new=False)
        try:
            result = await conn.run(argv, timeout=timeout)
            algorithms = conn.algorithms  # type: ignore[attr-defined]
            return result.exit_status, result.stdout, result.stderr, algorithms
        finally:
            await conn.close()

    return asyncio.run(go())


def test_publickey_login_runs_argv_with_status_and_separate_stderr(
    kind: str, sim_state: SimulatorThread
) -> None:
    host = sim_host(sim_state, "esx03")
    assert run(host, kind, ["hostname"])[:3] == (0, b"esx03\n", b"")
    status, out, err, _ = run(host, kind, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (status, out, err) == (3, b"out\n", b"err\n")


def test_binary_output_arrives_byte_for_byte(kind: str, sim_state: SimulatorThread) -> None:
    """Every byte of a pcap stream arrives unchanged: header, then exactly three whole records."""
    argv = ["pktcap-uw", "--uplink", "vmnic0", "-c", "3", "-o", "-"]
    status, out, err, _ = run(sim_host(sim_state, "esx03"), kind, argv)
    assert out[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    assert status == 0 and b"Dumped 3 packet" in err
    reader = PcapStreamReader()
    records = reader.feed(out)
    assert reader.finish() == 0 and len(records) == 3
    assert sum(16 + len(r.data) for r in records) == len(out) - 24


HOSTILE = [
    "$(touch X)",
    "`touch Y`",
    "it's",
    '"dq"',
    "a;b",
    "&& exit 9",
    "日本語 ネット",
    "x | y",
    "*",
    "$HOME",
]


def test_hostile_argv_arrives_intact(kind: str, sim_state: SimulatorThread) -> None:
    status, out, err, _ = run(sim_host(sim_state, "esx03"), kind, ["echo", *HOSTILE])
    assert (status, err) == (0, b"")
    assert out == (" ".join(HOSTILE) + "\n").encode()


def test_many_short_commands_at_once_keep_the_connection(kind: str, sim_state: SimulatorThread) -> None:
    """Commands that end as soon as they start, 16 at a time on one connection: an EOF or window adjust
    sent after the channel's close makes the server end the whole connection ("Invalid channel number"),
    which is how a capture lost its host while discovery ran beside it."""
    host = sim_host(sim_state, "esx03")

    async def go() -> list[bytes]:
        conn = await make_transport(kind).connect(host, password=no_password, accept_new=False)
        try:
            outputs = []
            for _ in range(60):
                results = await asyncio.gather(*(conn.run(["hostname"], timeout=20) for _ in range(16)))
                outputs += [r.stdout for r in results]
            return outputs
        finally:
            await conn.close()

    assert asyncio.run(go()) == [b"esx03\n"] * 60 * 16


def test_keyboard_interactive_password_from_password_env(
    kind: str, sim_state: SimulatorThread, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESXCAP_TEST_PW", sim_state.sim.hosts["esx03"].topology.password)
    host = sim_host(sim_state, "esx03", identity_file=None, password_env="ESXCAP_TEST_PW")
    prompts: list[str] = []
    connect(host, kind, password=lambda p: prompts.append(p) or "wrong")
    assert prompts == []


def test_password_prompt_is_asked_once_and_only_when_needed(
    kind: str, sim_state: SimulatorThread, clean_env: Path
) -> None:
    secret = sim_state.sim.hosts["esx02"].topology.password
    prompts: list[str] = []
    connect(
        sim_host(sim_state, "esx02", identity_file=None), kind, password=lambda p: prompts.append(p) or secret
    )
    assert len(prompts) == 1
    assert "esx02" in prompts[0]
    prompts.clear()
    connect(sim_host(sim_state, "esx02"), kind, password=lambda p: prompts.append(p) or secret)
    assert prompts == []


def test_wrong_password_is_an_auth_error_without_the_password(
    kind: str, sim_state: SimulatorThread, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESXCAP_TEST_PW", "not-the-password-4711")
    host = sim_host(sim_state, "esx03", identity_file=None, password_env="ESXCAP_TEST_PW")
    with pytest.raises(AuthError) as info:
        connect(host, kind)
    text = f"{info.value} {info.value.hint} {info.value!r}"
    assert "esx03" in text and "user 'root'" in text
    assert "server offered: publickey, keyboard-interactive" in text
    assert "password was rejected" in text
    assert "/etc/ssh/keys-root/authorized_keys" in text and "password_env" in text
    assert "4711" not in text


def test_no_credentials_names_the_offered_methods(
    kind: str, sim_state: SimulatorThread, clean_env: Path
) -> None:
    with pytest.raises(AuthError, match=r"server offered: publickey, keyboard-interactive\)$"):
        connect(sim_host(sim_state, "esx03", identity_file=None), kind)


def test_unknown_host_key_refused_then_accept_new_records_it(
    kind: str, sim_state: SimulatorThread, tmp_path: Path
) -> None:
    port = sim_state.sim.hosts["esx03"].port
    [ecdsa] = [line for line in known_lines(sim_state.sim.known_hosts_path, port) if " ecdsa-" in line]
    known = tmp_path / "ssh" / "known_hosts"
    host = sim_host(sim_state, "esx03", known_hosts=known)
    with pytest.raises(HostKeyError) as info:
        connect(host, kind)
    text = f"{info.value} {info.value.hint}"
    assert f"esx03 (127.0.0.1:{port})" in text
    assert f"ecdsa-sha2-nistp256 {fingerprint(ecdsa)}" in text
    assert "esxcap discover esx03 --accept-new" in text
    assert f"ssh-keyscan -p {port} 127.0.0.1 >> {known}" in text
    assert not known.exists()

    connect(host, kind, accept_new=True)
    assert known.read_text() == ecdsa + "\n"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    connect(host, kind)
    assert known.read_text() == ecdsa + "\n"


def test_accept_new_appends_to_an_existing_file(
    kind: str, sim_state: SimulatorThread, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    other_port = sim_state.sim.hosts["esx01"].port
    [other] = known_lines(sim_state.sim.known_hosts_path, other_port)
    known.write_text(other)  # no newline at the end: the new entry must still start on its own line
    connect(sim_host(sim_state, "esx02", known_hosts=known), kind, accept_new=True)
    lines = known.read_text().splitlines()
    assert lines[0] == other
    assert len(lines) == 2 and lines[1].startswith(f"[127.0.0.1]:{sim_state.sim.hosts['esx02'].port} ecdsa-")


def test_changed_host_key_refused_even_with_accept_new(
    kind: str, sim_state: SimulatorThread, tmp_path: Path
) -> None:
    hosts = sim_state.sim.hosts
    port = hosts["esx03"].port
    [other] = [
        line for line in known_lines(sim_state.sim.known_hosts_path, hosts["esx02"].port) if " ecdsa-" in line
    ]
    known = tmp_path / "known_hosts"
    forged = other.replace(f"[127.0.0.1]:{hosts['esx02'].port} ", f"[127.0.0.1]:{port} ") + "\n"
    known.write_text(forged)
    host = sim_host(sim_state, "esx03", known_hosts=known)
    for accept_new in (False, True):
        with pytest.raises(HostKeyError) as info:
            connect(host, kind, accept_new=accept_new)
        text = f"{info.value} {info.value.hint}"
        assert "CHANGED" in text
        assert f"ssh-keygen -R '[127.0.0.1]:{port}' -f {known}" in text
    assert known.read_text() == forged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_is_a_connect_error(kind: str, tmp_path: Path) -> None:
    port = free_port()
    host = HostConfig(
        name="gone",
        hostname="127.0.0.1",
        port=port,
        known_hosts=tmp_path / "kh",
        explicit=frozenset({"hostname", "port"}),
    )
    with pytest.raises(ConnectError) as info:
        connect(host, kind)
    assert str(info.value) == f"gone (127.0.0.1:{port}): connection refused"
    assert info.value.hint is not None and "vim-cmd hostsvc/enable_ssh" in info.value.hint


def test_listener_that_never_speaks_ssh_times_out(kind: str, tmp_path: Path) -> None:
    async def go() -> float:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        host = HostConfig(
            name="mute",
            hostname="127.0.0.1",
            port=port,
            known_hosts=tmp_path / "kh",
            connect_timeout=0.5,
            explicit=frozenset({"hostname", "port"}),
        )
        start = time.monotonic()
        try:
            expected = rf"^mute \(127.0.0.1:{port}\): no SSH answer within 0.5 s$"
            with pytest.raises(ConnectError, match=expected):
                await make_transport(kind).connect(host, password=no_password, accept_new=False)
        finally:
            server.close()
        return time.monotonic() - start

    assert asyncio.run(go()) < 5


def test_ssh_config_fills_what_the_inventory_leaves_open(
    kind: str, sim_state: SimulatorThread, tmp_path: Path, clean_env: Path
) -> None:
    port = sim_state.sim.hosts["esx03"].port
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host sim-alias\n  HostName 127.0.0.1\n  Port {port}\n"
        f"  IdentityFile {sim_state.sim.client_key_path}\n  User nobody\n"
    )
    alias = HostConfig(
        name="sim-alias",
        hostname="sim-alias",
        known_hosts=sim_state.sim.known_hosts_path,
        explicit=frozenset({"known_hosts"}),
    )
    with pytest.raises(AuthError, match="user 'nobody'"):
        connect(alias, kind, ssh_config=[config])
    connect(dataclasses.replace(alias, explicit=alias.explicit | {"username"}), kind, ssh_config=[config])
    wrong_port = dataclasses.replace(alias, port=free_port(), explicit=alias.explicit | {"username", "port"})
    with pytest.raises(ConnectError, match="connection refused"):
        connect(wrong_port, kind, ssh_config=[config])


def test_modern_host_gets_aes128_gcm(kind: str, sim_state: SimulatorThread) -> None:
    algorithms = run(sim_host(sim_state, "esx03"), kind, ["hostname"])[3]
    assert algorithms["cipher"] == "aes128-gcm@openssh.com"
    assert algorithms["host_key"] == "ecdsa-sha2-nistp256"


def test_esxi55_persona_negotiates_old_algorithms(kind: str, sim_state: SimulatorThread) -> None:
    algorithms = run(sim_host(sim_state, "esx01"), kind, ["hostname"])[3]
    assert algorithms["cipher"] == "aes128-ctr"
    assert algorithms["mac"] == "hmac-sha1"
    assert algorithms["host_key"] == "ssh-rsa"


def test_command_timeout_names_host_command_and_seconds(kind: str, sim_state: SimulatorThread) -> None:
    argv = ["pktcap-uw", "--uplink", "vmnic0", "--ethtype", "0x1234", "-o", "-"]
    with pytest.raises(CommandTimeout) as info:
        run(sim_host(sim_state, "esx03"), kind, argv, timeout=0.5)
    assert f"esx03 (127.0.0.1:{sim_state.sim.hosts['esx03'].port})" in str(info.value)
    assert "'pktcap-uw --uplink vmnic0" in str(info.value)
    assert "within 0.5 s" in str(info.value)


def test_both_transports_negotiate_the_same(sim_state: SimulatorThread) -> None:
    for name in ("esx01", "esx02", "esx03"):
        seen = [run(sim_host(sim_state, name), kind, ["true"])[3] for kind in sorted(TRANSPORTS)]
        for algorithms in seen:
            algorithms.pop("server_version")
        assert seen[0] == seen[1], name


async def stream(
    conn_factory, argv: list[str], *, cancel_every: float | None = None
) -> tuple[bytes, bytes, int | None]:
    """start argv, read stdout to its end (optionally through reads cut short by a timeout), wait."""
    conn = await conn_factory()
    try:
        proc = await conn.start(argv)
        out = bytearray()
        while True:
            try:
                async with asyncio.timeout(cancel_every):
                    chunk = await proc.read()
            except TimeoutError:
                continue
            assert len(chunk) <= STREAM_CHUNK
            if not chunk:
                break
            out += chunk
        status = await proc.wait(5)
        return bytes(out), proc.stderr(), status
    finally:
        await conn.close()


def pcap_records(data: bytes) -> int:
    reader = PcapStreamReader()
    records = reader.feed(data)
    assert reader.finish() == 0
    return len(records)


def test_start_streams_stdout_with_stderr_aside(kind: str, fast_sim: SimulatorThread) -> None:
    host = sim_host(fast_sim, "new")

    def factory():
        return make_transport(kind).connect(host, password=no_password, accept_new=False)

    argv = ["pktcap-uw", "--uplink", "vmnic0", "-c", "200", "-o", "-"]
    out, err, status = asyncio.run(stream(factory, argv))
    assert pcap_records(out) == 200
    assert status == 0 and b"Dumped 200 packet" in err
    # reads cut short by a timeout lose nothing: a later read hands over the bytes
    argv = ["pktcap-uw", "--uplink", "vmnic0", "-c", "300", "-o", "-"]
    out, err, status = asyncio.run(stream(factory, argv, cancel_every=0.0002))
    assert pcap_records(out) == 300
    assert status == 0 and b"Dumped 300 packet" in err


def test_abort_ends_a_running_stream_and_stderr_changed_wakes(kind: str, fast_sim: SimulatorThread) -> None:
    host = sim_host(fast_sim, "new")

    async def go() -> tuple[bytes, bytes, int | None]:
        conn = await make_transport(kind).connect(host, password=no_password, accept_new=False)
        try:
            proc = await conn.start(["pktcap-uw", "--uplink", "vmnic0", "-o", "-"])
            async with asyncio.timeout(5):
                while b"Accept..." not in proc.stderr():
                    await proc.stderr_changed()
                first = await proc.read()
                proc.abort()
                while await proc.read():
                    pass
            return first, proc.stderr(), await proc.wait(2)
        finally:
            await conn.close()

    first, err, status = asyncio.run(go())
    assert first[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") and b"Accept..." in err
    assert status is None


def test_a_name_that_does_not_resolve_gets_a_dns_hint_not_an_ssh_one() -> None:
    from esxcap.ssh.transport.common import cannot_connect_error

    unresolved = cannot_connect_error("esx09", "[Errno -2] Name or service not known", 22)
    assert "does not resolve" in unresolved.message and "DNS" in (unresolved.hint or "")
    assert "TSM-SSH" not in (unresolved.hint or "")
    down = cannot_connect_error("esx09", "[Errno 113] No route to host", 22)
    assert "TSM-SSH" in (down.hint or "")


def test_jump_host_hint_is_an_ssh_command_that_works() -> None:
    from esxcap.ssh.transport.common import jump_error, ssh_command

    assert ssh_command("root@bastion:2222") == "ssh -p 2222 root@bastion"
    assert ssh_command("bastion") == "ssh bastion"
    assert ssh_command("admin@[2001:db8::1]:22") == "ssh -p 22 admin@2001:db8::1"
    assert "(ssh -p 2222 root@bastion)" in (jump_error("esx01", "root@bastion:2222", "refused").hint or "")
