"""The simulator's shell (pure) and its SSH servers, exercised over real SSH with an asyncssh client."""

from __future__ import annotations

import asyncio
import shlex
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import asyncssh  # noqa: TID251 - these tests talk to the simulator as an SSH client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.esxi.remote import Batch
from esxcap.sim import SimulatorThread, load_topology, topology_from_data
from esxcap.sim.shell import Output, Shell

# --- shell (pure) -------------------------------------------------------------------------------------------


class Recorder:
    """Programs that record what they were asked to run; `fail` exits 1 with a message on stderr."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> Output | None:
        self.calls.append(list(argv))
        if argv[0] == "fail":
            return Output.text("out\n", "err\n", status=1)
        if argv[0] == "args":
            return Output.text("".join(f"<{a}>" for a in argv[1:]) + "\n")
        return None


def sh(script: str) -> tuple[str, str, int, list[list[str]]]:
    programs = Recorder()
    out = Shell(programs).run(script)
    return out.stream(1).decode(), out.stream(2).decode(), out.status, programs.calls


@pytest.mark.parametrize(
    ("script", "stdout", "stderr", "status"),
    [
        ("echo a b; echo 'c  d'", "a b\nc  d\n", "", 0),
        ("false && echo no || echo yes", "yes\n", "", 0),
        ("true || echo no; echo $?", "0\n", "", 0),
        ('false; echo "st=$?" st=$?', "st=1 st=1\n", "", 0),
        ("fail 2>&1; echo M $?", "out\nerr\nM 1\n", "", 0),
        ("fail 2>/dev/null", "out\n", "", 1),
        ("fail >/dev/null 2>&1", "", "", 1),
        ("fail 2>&1 >/dev/null", "err\n", "", 1),
        ("echo x >&2", "", "x\n", 0),
        ("exit 3; echo never", "", "", 3),
        ("sh -c 'exit 4'; echo $?", "4\n", "", 0),
        ("sh -c 'echo \"in $?\"' 2>&1", "in 0\n", "", 0),
        ("nosuch", "", "sh: nosuch: not found\n", 127),
        ("echo -n a; echo b", "ab\n", "", 0),
        ("args 'a b' \"c\\\"d\" e\\ f '' \\$x # comment", '<a b><c"d><e f><><$x>\n', "", 0),
        ("args a &&\n  args b", "<a>\n<b>\n", "", 0),
        ("sh -c 'nosuch' 2>&1", "sh: nosuch: not found\n", "", 127),
    ],
)
def test_shell_semantics(script: str, stdout: str, stderr: str, status: int) -> None:
    assert sh(script)[:3] == (stdout, stderr, status)


@pytest.mark.parametrize(
    "script",
    [
        "args $(touch /tmp/x)",
        "args `touch /tmp/x`",
        'args "$(touch /tmp/x)"',
        'args "`touch /tmp/x`"',
        "args | args",
        "args & args",
        "args > /tmp/file",
        "args >> /dev/null",
        "args < /dev/null",
        "args $HOME",
        "args ${x}",
        "args *",
        "X=1 args",
        "if true; then args; fi",
        "( args )",
        "{ args; }",
        "args 'unterminated",
        "; args",
        "args ;; args",
        "args &&",
        "args ~",
    ],
)
def test_unsupported_syntax_fails_before_anything_runs(script: str) -> None:
    stdout, stderr, status, calls = sh(f"args first; {script}")
    assert (stdout, status, calls) == ("", 2, [])
    assert stderr.startswith("sh: syntax error: ") and stderr.endswith("\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")), min_size=1, max_size=4
    )
)
def test_quoted_arguments_are_only_data(args: list[str]) -> None:
    """Whatever the text, argv quoted by shlex.join arrives unchanged, inside `sh -c` too."""
    programs = Recorder()
    inner = shlex.join(["args", *args])
    out = Shell(programs).run(shlex.join(["sh", "-c", f"{inner} 2>&1; echo 'ESXCAP-t-0' $?"]))
    assert programs.calls == [["args", *args]]
    assert out.status == 0 and out.stream(1).decode().endswith("\nESXCAP-t-0 0\n")


# --- SSH -------------------------------------------------------------------------------------------------


def connect(sim: SimulatorThread, host: str, **options: Any) -> Any:
    options.setdefault("known_hosts", str(sim.sim.known_hosts_path))
    return asyncssh.connect("127.0.0.1", sim.sim.hosts[host].port, username="root", **options)


def key_options(sim: SimulatorThread) -> dict[str, Any]:
    return {"client_keys": [str(sim.sim.client_key_path)], "agent_path": None}


def run_commands(sim: SimulatorThread, host: str, commands: Sequence[str], **options: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with connect(sim, host, **(options or key_options(sim))) as conn:
            return [await conn.run(c, encoding=None, input=b"") for c in commands]

    return asyncio.run(go())


def test_publickey_login_and_counters(sim: SimulatorThread) -> None:
    results = run_commands(sim, "esx02", ["hostname", "vmware -v", "nosuch"])
    assert [(r.stdout, r.stderr, r.exit_status) for r in results] == [
        (b"esx02\n", b"", 0),
        (b"VMware ESXi 6.7.0 build-8169922\n", b"", 0),
        (b"", b"sh: nosuch: not found\n", 127),
    ]
    host = sim.sim.hosts["esx02"]
    assert (host.connections, host.exec_requests) == (1, 3)
    assert (sim.sim.hosts["esx01"].connections, sim.sim.hosts["esx01"].exec_requests) == (0, 0)


class PromptRecorder(asyncssh.SSHClient):
    prompts: ClassVar[list[tuple[str, bool]]] = []

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str]:
        PromptRecorder.prompts += list(prompts)
        return [self.answer] * len(prompts)


def test_keyboard_interactive_password(sim: SimulatorThread) -> None:
    PromptRecorder.prompts = []
    results = run_commands(
        sim, "esx03", ["uname -s"], client_factory=lambda: PromptRecorder("esxcap-sim"), client_keys=None,
        preferred_auth="keyboard-interactive",
    )  # fmt: skip
    assert results[0].stdout == b"VMkernel\n"
    assert PromptRecorder.prompts == [("Password: ", False)]


@pytest.mark.parametrize(
    "options",
    [
        {"client_keys": None, "password": "wrong", "preferred_auth": "keyboard-interactive"},
        {"client_keys": None, "password": "esxcap-sim", "preferred_auth": "password"},
        {
            "client_keys": [asyncssh.generate_private_key("ecdsa-sha2-nistp256")],
            "preferred_auth": "publickey",
        },
    ],
)
def test_refused_logins(sim: SimulatorThread, options: dict[str, Any]) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        run_commands(sim, "esx03", ["hostname"], agent_path=None, **options)


def test_batch_sections_statuses_and_binary_output(sim: SimulatorThread) -> None:
    batch = Batch(
        (("vmware", "-vl"), ("esxcli", "network", "vm", "list"), ("esxcli", "network", "vm", "port", "list",
         "-w", "1"), ("nosuch",)),
        "f00d",
    )  # fmt: skip
    (result,) = run_commands(sim, "esx03", [shlex.join(batch.argv())])
    assert result.exit_status == 0 and result.stderr == b""
    sections = batch.split(result.stdout.decode("utf-8"))
    assert [status for _, status in sections] == [0, 0, 1, 127]
    assert sections[0][0] == "VMware ESXi 8.0.2 build-22380479\nVMware ESXi 8.0 Update 2\n"
    assert " 2101155  データベース01 " in sections[1][0]
    assert sections[2][0].startswith("Error: ")
    assert sections[3][0] == "sh: nosuch: not found\n"
    assert sim.sim.hosts["esx03"].exec_requests == 1


def test_hostile_arguments_are_never_executed(sim: SimulatorThread, tmp_path: Path) -> None:
    marks = [tmp_path / f"m{i}" for i in range(4)]
    hostile = [
        f"$(touch {marks[0]})",
        f"`touch {marks[1]}`",
        f"x; touch {marks[2]}",
        f"' && touch {marks[3]} '",
    ]
    port_lists = tuple(("esxcli", "network", "vm", "port", "list", "-w", h) for h in hostile)
    batch = Batch((*port_lists, ("echo", *hostile)), "b")
    (result,) = run_commands(sim, "esx02", [shlex.join(batch.argv())])
    sections = batch.split(result.stdout.decode())
    assert [s for _, s in sections] == [1, 1, 1, 1, 0]
    assert sections[4][0] == " ".join(hostile) + "\n"
    raw = run_commands(sim, "esx02", [f"echo $(touch {marks[0]})", f"echo `touch {marks[1]}`"])
    assert [r.exit_status for r in raw] == [2, 2]
    assert not any(m.exists() for m in marks)


def test_stop_and_start_host(sim: SimulatorThread) -> None:
    port = sim.sim.hosts["esx01"].port

    async def hold_then_lose() -> None:
        async with connect(sim, "esx01", **key_options(sim)) as conn:
            assert (await conn.run("hostname", encoding=None)).stdout == b"esx01\n"
            sim.call(sim.sim.stop_host("esx01"))
            with pytest.raises((asyncssh.Error, OSError)):
                await asyncio.wait_for(conn.run("hostname", encoding=None, check=True), 10)

    asyncio.run(hold_then_lose())
    with pytest.raises(OSError):
        run_commands(sim, "esx01", ["hostname"])
    assert run_commands(sim, "esx02", ["hostname"])[0].stdout == b"esx02\n"
    sim.call(sim.sim.start_host("esx01"))
    assert sim.sim.hosts["esx01"].port == port
    assert run_commands(sim, "esx01", ["hostname"])[0].stdout == b"esx01\n"


# The side that finds no common algorithm disconnects; which side notices first is a race.
REFUSED_KEX = (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost)


def test_legacy_persona_offers_only_old_algorithms(sim: SimulatorThread) -> None:
    async def negotiated(host: str, **options: Any) -> tuple[str, str]:
        async with connect(sim, host, **key_options(sim), **options) as conn:
            return conn.get_extra_info("send_cipher"), conn.get_extra_info("send_mac")

    cipher, mac = asyncio.run(negotiated("esx01", encryption_algs="*", mac_algs="*", kex_algs="*"))
    assert cipher in ("aes128-ctr", "aes256-ctr") and mac == "hmac-sha1"
    for modern in ({"kex_algs": ["ecdh-sha2-nistp256", "curve25519-sha256"]},
                   {"encryption_algs": ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"]},
                   {"server_host_key_algs": ["rsa-sha2-256", "rsa-sha2-512"]}):  # fmt: skip
        with pytest.raises(REFUSED_KEX):
            asyncio.run(negotiated("esx01", **modern))
    assert asyncio.run(negotiated("esx03"))[0].endswith("-gcm@openssh.com")
    with pytest.raises(REFUSED_KEX):
        asyncio.run(negotiated("esx03", kex_algs=["diffie-hellman-group14-sha1"]))


def test_state_dir(sim: SimulatorThread) -> None:
    s = sim.sim
    ports = {name: h.port for name, h in s.hosts.items()}
    assert s.inventory_path.read_text() == (
        "defaults:\n  username: root\n  port: 22\n  known_hosts: known_hosts\n  identity_file: client_key\n"
        "groups:\n  sim:\n    port: 22\nhosts:\n"
        + "".join(
            f"  {n}:\n    hostname: 127.0.0.1\n    port: {p}\n    groups: [sim]\n" for n, p in ports.items()
        )
    )
    known = [line.split() for line in s.known_hosts_path.read_text().splitlines()]
    assert sorted((k[0], k[1]) for k in known) == sorted(
        [(f"[127.0.0.1]:{ports['esx01']}", "ssh-rsa")]
        + [
            (f"[127.0.0.1]:{ports[h]}", t)
            for h in ("esx02", "esx03")
            for t in ("ecdsa-sha2-nistp256", "ssh-rsa")
        ]
    )
    assert stat.S_IMODE(s.client_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.inventory_path.stat().st_mode) == 0o600
    assert s.client_key_path.with_name("client_key.pub").read_text().startswith("ecdsa-sha2-nistp256 ")


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no two adjacent free ports")


def test_port_base_and_restart_reuses_keys(tmp_path: Path) -> None:
    data = {"hosts": {"a": {"version": "7.0.3", "build": "1"}, "b": {"version": "6.0.0", "build": "2"}}}
    topology = topology_from_data(data, "<test>")
    with SimulatorThread(topology, tmp_path) as first:
        known = first.sim.known_hosts_path.read_text()
        old_ports = [first.sim.hosts[n].port for n in ("a", "b")]
    base = free_port_pair()
    with SimulatorThread(topology, tmp_path, port_base=base) as again:
        assert [again.sim.hosts[n].port for n in ("a", "b")] == [base, base + 1]
        expected = known.replace(f":{old_ports[0]} ", f":{base} ").replace(
            f":{old_ports[1]} ", f":{base + 1} "
        )
        assert again.sim.known_hosts_path.read_text() == expected
        assert run_commands(again, "b", ["hostname"])[0].stdout == b"b\n"


def test_a_state_folder_serves_one_simulator_at_a_time(tmp_path: Path) -> None:
    import os

    from esxcap.errors import ConfigError

    busy = f"in use by another simulator \\(pid {os.getpid()}\\)"
    with (
        SimulatorThread(load_topology(), tmp_path / "state"),
        pytest.raises(ConfigError, match=busy),
        SimulatorThread(load_topology(), tmp_path / "state"),
    ):
        pass
    with SimulatorThread(load_topology(), tmp_path / "state"):  # free again once the first stopped
        pass


def test_the_state_folder_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (state_dir / "known_hosts").symlink_to(victim)
    with pytest.raises(OSError), SimulatorThread(load_topology(), state_dir):
        pass
    assert victim.read_text() == "mine\n"
