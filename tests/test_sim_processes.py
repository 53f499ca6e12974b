"""The simulated process table over SSH: esxcap's dead-man wrapper run natively (stdin EOF, deadline,
abrupt channel loss), orphans of unwrapped captures found by the cleanup listing and killed, and
`ps -c` / `kill` / `pgrep` / `pkill` as a BusyBox host answers them."""

from __future__ import annotations

import asyncio
import shlex
import time

import pytest
from conftest import run_exec, ssh

from esxcap.esxi.lifecycle import (
    GRACE_SECONDS,
    LISTING_MARK,
    LISTING_SCRIPT,
    PID_DIR,
    new_marker,
    parse_listing,
    reported_exit,
    reported_pid,
    strip_wrapper_lines,
    wrapper_argv,
)
from esxcap.pcap import PcapStreamReader
from esxcap.sim import SimulatorThread
from esxcap.sim.processes import PS_HEADER, ProcessTable
from esxcap.sim.shell import Shell

NOTHING = ["pktcap-uw", "--uplink", "vmnic0", "--ethtype", "0x1234", "-o", "-"]
"""A capture whose filter matches nothing: it never writes after its banner."""
ICMP = ["pktcap-uw", "--switchport", "67108868", "--capture", "VnicTx", "-o", "-"]


def left(st: SimulatorThread, host: str = "new") -> list[str]:
    table = st.sim.hosts[host].processes
    return [p.command for p in table.running()] + [f for f in table.files if f.startswith(PID_DIR)]


def wait_until_clean(st: SimulatorThread, seconds: float, host: str = "new") -> float:
    started = time.monotonic()
    while left(st, host) and time.monotonic() - started < seconds:
        time.sleep(0.05)
    return time.monotonic() - started


async def _read_until(stream: asyncio.StreamReader | object, needle: bytes, seconds: float) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while needle not in data and time.monotonic() < deadline:
        chunk = await asyncio.wait_for(stream.read(65536), deadline - time.monotonic())  # type: ignore[attr-defined]
        if not chunk:
            break
        data += chunk
    return data


def test_wrapper_stdin_eof_ends_the_capture_with_trailer_and_exit(fast_sim: SimulatorThread) -> None:
    marker = new_marker()

    async def go() -> tuple[int | None, bytes, bytes, list[str]]:
        async with ssh(fast_sim, "new") as conn:
            proc = await conn.create_process(shlex.join(wrapper_argv(marker, 30, ICMP)), encoding=None)
            err = await _read_until(proc.stderr, b"Vsock connection", 5)
            running = left(fast_sim)
            await asyncio.sleep(0.2)
            proc.stdin.write_eof()
            out, rest = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
            await proc.wait_closed()
            return proc.exit_status, out, err + rest, running

    status, out, err, running = asyncio.run(go())
    pid = reported_pid(err)
    assert pid is not None and f"{PID_DIR}/{marker}.pid" in running
    assert any(cmd.startswith("pktcap-uw --switchport") for cmd in running)
    assert status == 0 and reported_exit(err) == 0
    assert err.startswith(f"esxcap-pid {pid}\n".encode()) and err.endswith(b"esxcap-exit 0\n")
    assert b"pktcap: Done.\n" in strip_wrapper_lines(err)
    reader = PcapStreamReader()
    assert len(reader.feed(out)) > 0 and reader.finish() == 0
    assert left(fast_sim) == []


def test_wrapper_deadline_stops_a_capture_nobody_stops(fast_sim: SimulatorThread) -> None:
    async def go() -> tuple[float, bytes, int | None]:
        async with ssh(fast_sim, "new") as conn:
            proc = await conn.create_process(
                shlex.join(wrapper_argv(new_marker(), 1, NOTHING)), encoding=None
            )
            started = time.monotonic()
            _, err = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), 5)
            await proc.wait_closed()
            return time.monotonic() - started, err, proc.exit_status

    took, err, status = asyncio.run(go())
    assert 0.8 < took < 3
    assert b"pktcap: Dumped 0 packet to file -, dropped 0 packets.\n" in err
    assert status == 0 and reported_exit(err) == 0
    assert left(fast_sim) == []


def test_wrapped_capture_reaching_its_count_ends_the_channel(fast_sim: SimulatorThread) -> None:
    argv = wrapper_argv(new_marker(), 30, [*ICMP, "-c", "4"])
    status, out, err = run_exec(fast_sim, "new", argv, timeout=5)
    reader = PcapStreamReader()
    assert status == 0 and reported_exit(err) == 0 and len(reader.feed(out)) == 4
    assert left(fast_sim) == []


def test_channel_lost_abruptly_stops_the_capture_within_the_grace(fast_sim: SimulatorThread) -> None:
    marker = new_marker()

    async def go() -> None:
        async with ssh(fast_sim, "new") as conn:
            proc = await conn.create_process(shlex.join(wrapper_argv(marker, 60, NOTHING)), encoding=None)
            await _read_until(proc.stderr, b"Vsock connection", 5)
            assert left(fast_sim)
            conn.abort()

    asyncio.run(go())
    assert wait_until_clean(fast_sim, GRACE_SECONDS + 2) < GRACE_SECONDS + 2
    assert left(fast_sim) == []


def test_unwrapped_capture_lingers_is_listed_and_killed_with_int(fast_sim: SimulatorThread) -> None:
    with pytest.raises(TimeoutError):
        run_exec(fast_sim, "new", NOTHING, timeout=0.5)
    time.sleep(0.2)
    orphans = fast_sim.sim.hosts["new"].processes.pktcaps()
    assert [p.command for p in orphans] == [" ".join(NOTHING)]
    status, out, _ = run_exec(fast_sim, "new", ["sh", "-c", LISTING_SCRIPT])
    found = parse_listing(out.decode()).captures
    assert status == 0 and [(c.pid, c.command, c.marker) for c in found] == [
        (orphans[0].cid, " ".join(NOTHING), None)
    ]
    assert run_exec(fast_sim, "new", ["kill", "-INT", str(orphans[0].cid)]) == (0, b"", b"")
    assert wait_until_clean(fast_sim, 2) < 2


def test_listing_names_our_pidfile_and_four_worlds_per_capture(fast_sim: SimulatorThread) -> None:
    marker = new_marker()

    async def go() -> str:
        async with ssh(fast_sim, "mid") as conn:
            argv = wrapper_argv(marker, 30, ["pktcap-uw", "--vmk", "vmk0", "--ethtype", "0x1234", "-o", "-"])
            proc = await conn.create_process(shlex.join(argv), encoding=None)
            await _read_until(proc.stderr, b"Vsock connection", 5)
            listing = await conn.run(shlex.join(["sh", "-c", LISTING_SCRIPT]))
            proc.stdin.write_eof()
            await proc.wait_closed()
            assert isinstance(listing.stdout, str)
            return listing.stdout

    text = asyncio.run(go())
    found = parse_listing(text).captures
    assert [(c.marker, c.in_use) for c in found] == [(marker, True)]  # its watcher reads the channel
    rows = text.split(LISTING_MARK + "\n", 1)[1].splitlines()
    assert rows[0] == PS_HEADER
    assert len([r for r in rows if r.split()[1] == str(found[0].pid)]) == 4
    assert wait_until_clean(fast_sim, 2, "mid") < 2


# --- ps, kill, pgrep, pkill (pure, on a table of their own) -------------------------------------------------


def test_kill_answers_like_busybox_and_delivers_signals() -> None:
    table = ProcessTable()
    got: list[int] = []
    proc = table.spawn(["pktcap-uw", "--vmk", "vmk0"], "pktcap-uw", got.append, worlds=4)
    shell = Shell(table.programs())

    def sh(script: str) -> tuple[str, str, int]:
        out = shell.run(script)
        return out.stream(1).decode(), out.stream(2).decode(), out.status

    assert sh(f"kill -0 {proc.cid}") == ("", "", 0) and got == []
    assert sh(f"kill -INT {proc.cid}; kill -2 {proc.cid}; kill -s HUP {proc.cid}; kill {proc.cid}")[2] == 0
    assert got == [2, 2, 1, 15]
    assert sh("kill 1234567") == ("", "sh: can't kill pid 1234567: No such process\n", 1)
    assert sh(f"kill -9 1234567 {proc.cid}")[1:] == ("sh: can't kill pid 1234567: No such process\n", 1)
    assert got[-1] == 9
    assert sh("kill -BOGUS 1")[2] == 1
    assert sh("pgrep pktcap-uw") == (f"{proc.cid}\n", "", 0)
    assert sh("pkill -INT pktcap") == ("", "", 0) and got[-1] == 2
    table.exited(proc)
    assert sh("pgrep pktcap-uw") == ("", "", 1) and sh("pkill pktcap-uw")[2] == 1


def test_ps_c_lists_every_world_with_its_cartel() -> None:
    table = ProcessTable()
    first = table.spawn(["pktcap-uw", "--uplink", "vmnic0", "-o", "-"], "pktcap-uw", lambda s: None, worlds=4)
    second = table.spawn(["pktcap-uw", "--vmk", "vmk0"], "pktcap-uw", lambda s: None, worlds=4)
    assert len(str(first.cid)) == 7 and second.cid > first.cid + 3
    text = Shell(table.programs()).run("ps -c").stream(1).decode()
    lines = text.splitlines()
    assert lines[0] == "WID      CID      World Name            Command"
    rows = [line for line in lines if line[18:40].strip() == "pktcap-uw"]
    assert [r.split()[1] for r in rows] == [str(first.cid)] * 4 + [str(second.cid)] * 4
    assert rows[1].split()[0] != rows[1].split()[1]
    assert rows[0][40:] == "pktcap-uw --uplink vmnic0 -o -"
    assert lines[-1].split()[2:] == ["ps", "ps", "-c"]
    plain = Shell(table.programs()).run("ps").stream(1).decode().splitlines()
    assert plain[0] == "WID      CID      World Name" and all(len(r.split()) == 3 for r in plain[1:])
