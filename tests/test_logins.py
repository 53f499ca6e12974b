"""SSH as ESXi admins meet it, on both transports against the simulator: a password is sent at most once to
a host (ESXi locks accounts after a few failures; keyboard-interactive and password attempts both count),
hosts that share a password are asked once, and the hints for SSH off, lockdown and a shell timeout
name what to do on the host."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import fcntl
import os
import pty
import select
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY, MakeSim

from esxcap.errors import AuthError, ConnectError, EsxcapError
from esxcap.inventory import HostConfig, load_inventory
from esxcap.sim import SimulatorThread
from esxcap.ssh.session import SessionOptions, open_hosts
from esxcap.ssh.transport import Connection
from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport
from esxcap.ssh.transport.paramiko_transport import ParamikoTransport
from esxcap.ssh.transport.passwords import Passwords

TRANSPORTS = {"asyncssh": AsyncsshTransport, "paramiko": ParamikoTransport}
PASSWORD = "esxcap-sim"


@pytest.fixture(params=sorted(TRANSPORTS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def two_hosts(**faults: object) -> dict[str, object]:
    data = copy.deepcopy(FAST_TOPOLOGY)
    data["flows"] = []
    data["hosts"] = {name: data["hosts"][name] for name in ("mid", "new")}
    for host in data["hosts"].values():
        host["password"] = PASSWORD
        host["faults"] = dict(faults)
    return data


def password_hosts(st: SimulatorThread, **changes: object) -> list[HostConfig]:
    hosts = load_inventory(st.sim.inventory_path).hosts
    return [dataclasses.replace(hosts[name], identity_file=None, **changes) for name in ("mid", "new")]


def connect_all(hosts: list[HostConfig], kind: str, passwords: Passwords) -> dict[str, EsxcapError | None]:
    """Log in to every host with one command's passwords; each host's error or None."""

    async def hostname(_host: HostConfig, conn: Connection) -> None:
        assert (await conn.run(["hostname"], timeout=10)).exit_status == 0

    async def go() -> dict[str, EsxcapError | None]:
        chosen = [dataclasses.replace(h, transport=kind) for h in hosts]
        opened, failed = await open_hosts(chosen, SessionOptions(password=passwords), hostname, 2)
        for o in opened:
            await o.conn.close()
        return {h.name: next((f.error for f in failed if f.host.name == h.name), None) for h in hosts}

    return asyncio.run(go())


class Prompts:
    """A password prompt that answers `answer` and remembers what it was asked."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, prompt: str) -> str | None:
        self.asked.append(prompt)
        return self.answer


@pytest.mark.parametrize(
    "faults",
    [{}, {"password_method": True}, {"password_retry_prompt": True}],
    ids=["kbdint", "kbdint-and-password", "kbdint-asks-again"],
)
def test_a_rejected_password_reaches_each_host_once(
    kind: str, faults: dict[str, bool], make_sim: MakeSim, clean_env: Path
) -> None:
    st = make_sim(two_hosts(**faults))
    hosts = password_hosts(st)
    prompts = Prompts("wrong-password-4711")
    passwords = Passwords(prompts)
    for attempt in range(2):
        errors = connect_all(hosts, kind, passwords)
        for host in hosts:
            error = errors[host.name]
            assert isinstance(error, AuthError), error
            expected = "not retried" if attempt == 0 else "not sent again"
            assert expected in str(error) and "4711" not in f"{error} {error.hint}"
    assert {name: h.failed_logins for name, h in st.sim.hosts.items()} == {"mid": 1, "new": 1}
    assert len(prompts.asked) == 2


def test_same_password_asks_once_for_every_host(kind: str, make_sim: MakeSim, clean_env: Path) -> None:
    st = make_sim(two_hosts())
    prompts = Prompts(PASSWORD)
    errors = connect_all(password_hosts(st), kind, Passwords(prompts, same_password=True))
    assert errors == {"mid": None, "new": None}
    assert prompts.asked == ["Password for every host (--same-password): "]


def test_hosts_sharing_password_env_are_asked_once_when_it_is_unset(
    kind: str, make_sim: MakeSim, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESXCAP_TEST_LAB_PW", raising=False)
    st = make_sim(two_hosts())
    prompts = Prompts(PASSWORD)
    hosts = password_hosts(st, password_env="ESXCAP_TEST_LAB_PW")
    assert connect_all(hosts, kind, Passwords(prompts)) == {"mid": None, "new": None}
    assert len(prompts.asked) == 1 and "ESXCAP_TEST_LAB_PW" in prompts.asked[0]
    prompts.asked.clear()
    separate = Passwords(prompts)
    assert connect_all(password_hosts(st), kind, separate) == {"mid": None, "new": None}
    assert sorted(prompts.asked) == [
        f"Password for {h} (127.0.0.1:{st.sim.hosts[h].port}): " for h in ("mid", "new")
    ]


def test_lockdown_refuses_key_and_password_and_the_hint_says_so(
    kind: str, make_sim: MakeSim, clean_env: Path
) -> None:
    st = make_sim(two_hosts(lockdown=True))
    hosts = load_inventory(st.sim.inventory_path).hosts
    with_key = dataclasses.replace(hosts["mid"], transport=kind)
    prompts = Prompts(PASSWORD)
    errors = connect_all([with_key, *password_hosts(st)[1:]], kind, Passwords(prompts))
    for name in ("mid", "new"):
        error = errors[name]
        assert isinstance(error, AuthError) and error.hint is not None, error
        assert "lockdown mode" in error.hint and "Exception Users" in error.hint
    assert st.sim.hosts["new"].failed_logins == 1 and len(prompts.asked) == 2


def test_ssh_off_hint_names_every_way_to_start_it(kind: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    host = HostConfig(name="off", hostname="localhost", port=port, known_hosts=tmp_path / "kh")
    errors = connect_all([host], kind, Passwords(Prompts(None)))
    error = errors["off"]
    assert isinstance(error, ConnectError) and error.hint is not None
    assert "connection refused" in str(error)
    for way in ("Host Client", "vSphere Client", "DCUI", "vim-cmd hostsvc/enable_ssh"):
        assert way in error.hint


def test_shell_timeout_mid_capture_is_reported_as_such(make_sim: MakeSim, tmp_path: Path) -> None:
    data = copy.deepcopy(FAST_TOPOLOGY)
    data["hosts"]["new"]["faults"] = {"session_timeout_s": 2}
    st = make_sim(data)
    out = tmp_path / "cut.pcapng"
    result = esxcap(
        "-i", str(st.sim.inventory_path), "capture", "--vmk", "vmk0", "--host", "new", "-d", "20",
        "-o", str(out), "--json", env=isolated_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    [stream] = result.json()["streams"]
    assert "new: the host ended the SSH session after 2 s, mid-capture" in stream["error"]
    assert "ESXiShellInteractiveTimeOut" in stream["hint"] and str(out) in stream["hint"]
    assert stream["packets"] > 0


def test_cli_same_password_prompts_once_on_the_terminal(kind: str, make_sim: MakeSim, tmp_path: Path) -> None:
    """The real CLI on a terminal (a pty as its controlling tty): one prompt for both hosts."""
    st = make_sim(two_hosts())
    data = yaml.safe_load(st.sim.inventory_path.read_text(encoding="utf-8"))
    for host in data["hosts"].values():
        host.pop("identity_file", None)
    data.get("defaults", {}).pop("identity_file", None)
    inventory = st.sim.state_dir / "password-inventory.yaml"  # beside the known_hosts it names
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    inventory.chmod(0o600)
    argv = ["-i", str(inventory), "discover", "mid", "new", "--same-password", "--transport", kind]
    shown, result = on_terminal(argv, isolated_env(tmp_path), answer=PASSWORD)
    assert result.returncode == 0, result.stderr
    assert shown.count("Password") == 1 and "every host (--same-password)" in shown
    assert st.sim.hosts["mid"].failed_logins == st.sim.hosts["new"].failed_logins == 0


def on_terminal(
    argv: list[str], env: dict[str, str], answer: str
) -> tuple[str, subprocess.CompletedProcess[bytes]]:
    """Run the CLI with a new pty as its controlling terminal, answer every password prompt with
    `answer`; what the terminal showed, and the result."""
    leader, follower = pty.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "esxcap", *argv],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=take_terminal,  # noqa: PLW1509 - the child needs the pty as its controlling tty
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _w, _x = select.select([leader], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        shown += chunk
        if chunk.rstrip().endswith(b":"):
            os.write(leader, answer.encode() + b"\n")
    stdout, stderr = proc.communicate(timeout=60)
    os.close(leader)
    return shown.decode(errors="replace"), subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def test_password_env_that_is_empty_or_rejected_is_named(make_sim: MakeSim, tmp_path: Path) -> None:
    """An empty password_env variable sends nothing (an empty password only counts towards the lockout);
    a rejected one is named as the variable's password; the hint names the variable either way."""
    st = make_sim(two_hosts())
    data = yaml.safe_load(st.sim.inventory_path.read_text(encoding="utf-8"))
    data.get("defaults", {}).pop("identity_file", None)
    data["defaults"]["password_env"] = "ESXCAP_TEST_LAB_PW"
    inventory = st.sim.state_dir / "env-inventory.yaml"  # beside the known_hosts it names
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    inventory.chmod(0o600)
    for value, said, hint in (
        ("", "$ESXCAP_TEST_LAB_PW (password_env) is empty, so no password was sent", "it is set but empty"),
        (
            "wrong-4711",
            "the password was rejected (it came from $ESXCAP_TEST_LAB_PW, password_env)",
            "mid rejected it",
        ),
    ):
        env = isolated_env(tmp_path, ESXCAP_TEST_LAB_PW=value)
        result = esxcap("-i", str(inventory), "discover", "mid", "--json", env=env)
        assert result.code == 1, result.stderr
        [error] = result.json()["errors"]
        assert said in error["error"] and "$ESXCAP_TEST_LAB_PW" in error["hint"] and hint in error["hint"]
        assert "wrong-4711" not in result.stdout + result.stderr
    assert st.sim.hosts["mid"].failed_logins == 1  # the empty variable sent nothing
