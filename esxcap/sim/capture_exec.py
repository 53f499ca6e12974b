"""Exec requests of a simulated host: long-lived captures streamed on the SSH channel, everything else
through the simulated shell.

The command line is parsed by the shell's parser. A single command whose argv is
- `sh -c WRAPPER_SCRIPT esxcap-capture MARKER DEADLINE pktcap-uw ...` (the exact script text of
  `esxcap.esxi.lifecycle`) runs the wrapper natively, with the script's semantics: three processes, the
  wrapper, its watcher and pktcap-uw (in the foreground: SIGINT at its default disposition, its `Y`
  answer needs no reading here). The pidfile names pktcap-uw and the watcher, stderr `esxcap-pid N`;
  pktcap-uw's stdout streams on the channel. stdin EOF or a lost channel (while the watcher lives), or
  DEADLINE, stop it (INT, then TERM and KILL after the grace); when pktcap-uw ends (count reached, or
  stopped by anyone) the pidfile goes, the wrapper prints `esxcap-exit N` and exits with pktcap-uw's
  status, which ends the channel. The wrapper takes no signal of its own: any signal kills it, and then
  nobody tidies up (the pidfile stays; the channel ends when pktcap-uw does). The watcher is a
  background job: it ignores INT and QUIT, other signals end it.
- `sh -c LISTING_SCRIPT` prints the pidfiles, the marker line and `ps -c`;
- `sh -c CLOCK_SCRIPT` (`esxcap.esxi.clock_script`) prints the host's `date +%s.%N` and, where `date`
  prints `%N` literally, samples the host's seconds every `SAMPLE_STEP_S` until they tick over and
  prints `edge S N` at once, as the script does under BusyBox;
- `pktcap-uw ...` naming a capture streams it directly: it runs until its count or SIGINT, and when
  the channel goes it lingers until its next write fails (never, if nothing matches: an orphan).
Output is written as produced and each write waits for the channel to drain: nothing is buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from esxcap.esxi import lifecycle
from esxcap.esxi.clock_script import CLOCK_ARGV, MAX_SAMPLES
from esxcap.esxi.remote import command_line
from esxcap.sim import pktcap
from esxcap.sim.pktcap_run import PktcapRun, Writer
from esxcap.sim.processes import SIGNALS, ProcessTable
from esxcap.sim.programs import CallCount, date, host_clock_ns
from esxcap.sim.shell import Output, Programs, Shell, ShellSyntaxError, parse
from esxcap.sim.topology import Host
from esxcap.sim.traffic import TrafficModel

_IGNORED_BY_BACKGROUND_JOBS = (SIGNALS["INT"], SIGNALS["QUIT"])
_STREAM_ERRORS = (OSError, asyncssh.Error, asyncio.IncompleteReadError)
SAMPLE_STEP_S = 0.002
"""How long one `t=$(date +%s)` of the clock script takes on the simulated host (a BusyBox fork)."""


@dataclass(frozen=True)
class HostRuntime:
    """What runs on one simulated host: its topology, the shared traffic, its processes and shell."""

    host: Host
    traffic: TrafficModel
    processes: ProcessTable
    shell: Shell
    calls: CallCount


def pktcap_program(host: Host) -> Programs:
    """`pktcap-uw` inside a shell script: `-A`, `-h` and refusals; captures must be a whole exec."""

    def run(argv: Sequence[str]) -> Output | None:
        if argv[0] != "pktcap-uw":
            return None
        result = pktcap.parse(host, list(argv))
        if isinstance(result, pktcap.Answer):
            return Output.text(result.stdout, result.stderr, result.status)
        return Output.text(
            stderr="pktcap-uw: this simulator runs captures only as a whole exec command\n", status=1
        )

    return run


class ChannelWriter:
    """stdout/stderr of an exec channel; each write waits until the channel has taken it."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.process = process

    async def write(self, fd: int, data: bytes) -> None:
        stream = self.process.stdout if fd == 1 else self.process.stderr
        try:
            stream.write(data)
            await stream.drain()
        except asyncssh.Error as exc:
            raise BrokenPipeError(str(exc)) from exc


def single_argv(command: str) -> list[str] | None:
    """argv of a command line that is one simple command without redirections, else None."""
    try:
        lists = parse(command)
    except ShellSyntaxError:
        return None
    if len(lists) != 1 or lists[0].rest or lists[0].first.redirects:
        return None
    return [word.expand(0) for word in lists[0].first.words]


async def serve(rt: HostRuntime, process: asyncssh.SSHServerProcess[bytes], command: str) -> None:
    argv = single_argv(command)
    if argv and argv[:3] == ["sh", "-c", lifecycle.WRAPPER_SCRIPT] and len(argv) >= 6:
        await _wrapper(rt, process, argv)
        return
    if argv == ["sh", "-c", lifecycle.LISTING_SCRIPT]:
        await _finish(process, Output.text(listing(rt.processes)))
        return
    if argv and argv[0] == "pktcap-uw":
        session = pktcap.parse(rt.host, argv)
        if isinstance(session, pktcap.Session):
            run = PktcapRun(rt.host, rt.traffic, rt.processes, _faulty(rt, session), ChannelWriter(process))
            run.start()
            rt.calls.events.append("pktcap-uw started")
            _exit(process, await run.status)
            return
    if rt.host.faults.hang_commands:
        await process.channel.wait_closed()
        return
    if argv == list(CLOCK_ARGV):
        await _clock(rt.host, process)
        return
    if rt.host.faults.flood:
        await _flood(process, 1 if rt.host.faults.flood == "stdout" else 2)
        return
    before = rt.calls.esxcli
    output = rt.shell.run(command)
    slow = (rt.calls.esxcli - before) * rt.host.esxcli_latency_ms
    if slow:
        rt.calls.waiting += 1
        rt.calls.peak_waiting = max(rt.calls.peak_waiting, rt.calls.waiting)
        try:
            await asyncio.sleep(slow / 1000)  # every esxcli call of the script, one after another
            rt.calls.events.append("esxcli answered")
        finally:
            rt.calls.waiting -= 1
    await _finish(process, output)


async def _clock(host: Host, process: asyncssh.SSHServerProcess[bytes]) -> None:
    out = ChannelWriter(process)
    first = date(host, ["+%s.%N"]).stream(1)
    try:
        await out.write(1, first)
        if not host.faults.date_nanoseconds:
            seconds, samples = int(first.split(b".")[0]), 0
            now = seconds
            while now == seconds and samples < MAX_SAMPLES:
                await asyncio.sleep(SAMPLE_STEP_S)
                samples += 1
                now = host_clock_ns(host) // 1_000_000_000
            await out.write(1, f"edge {now} {samples}\n".encode())
    except OSError:
        return
    _exit(process, 0)


FLOOD_LINE = b"esxcli: this line repeats for ever\n" * 2048


async def _flood(process: asyncssh.SSHServerProcess[bytes], fd: int) -> None:
    """The `flood` fault: the command prints on `fd` without end, until the client goes away."""
    writer = ChannelWriter(process)
    with contextlib.suppress(*_STREAM_ERRORS):
        while True:
            await writer.write(fd, FLOOD_LINE)


def _faulty(rt: HostRuntime, session: pktcap.Session) -> pktcap.Session:
    """With the `pktcap_garbage` fault, pktcap-uw's console dump goes to stdout instead of pcap."""
    return dataclasses.replace(session, outfile=None) if rt.host.faults.pktcap_garbage else session


def listing(table: ProcessTable) -> str:
    """What LISTING_SCRIPT prints on this host."""
    lines = []
    for path, data in sorted(table.files.items()):
        if path.startswith(lifecycle.PID_DIR + "/") and path.endswith(".pid"):
            pids = bytes(data).decode(errors="replace").split()
            live = len(pids) > 1 and pids[1].isdigit() and table.get(int(pids[1])) is not None
            lines.append(
                f"esxcap-pidfile {path} {'live' if live else 'orphan'} {' '.join(pids[:1])}".rstrip()
            )
    extra = [("sh", "sh -c " + lifecycle.LISTING_SCRIPT), ("ps", "ps -c")]
    return "\n".join([*lines, lifecycle.LISTING_MARK]) + "\n" + table.ps(True, extra)


async def _finish(process: asyncssh.SSHServerProcess[bytes], output: Output) -> None:
    writer = ChannelWriter(process)
    try:
        for fd, data in output.chunks:
            await writer.write(fd, data)
    except OSError:
        return
    _exit(process, output.status)


def _exit(process: asyncssh.SSHServerProcess[bytes], status: int) -> None:
    try:
        process.exit(status)
    except _STREAM_ERRORS:
        return


async def _stdin_eof(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Returns when the channel's stdin ends, however it ends."""
    try:
        while await process.stdin.read(65536):
            pass
    except _STREAM_ERRORS:
        return


async def _wrapper(rt: HostRuntime, process: asyncssh.SSHServerProcess[bytes], argv: list[str]) -> None:
    marker, deadline_text, command = argv[4], argv[5], argv[6:]
    out = ChannelWriter(process)
    killed: list[int] = []
    watcher_gone = asyncio.Event()

    def on_wrapper_signal(sig: int) -> None:
        killed.append(sig)
        rt.processes.exited(me)

    def on_watcher_signal(sig: int) -> None:
        if sig not in _IGNORED_BY_BACKGROUND_JOBS:
            watcher_gone.set()
            rt.processes.exited(watcher)

    me = rt.processes.spawn(argv, "sh", on_wrapper_signal)
    watcher = rt.processes.spawn(argv, "sh", on_watcher_signal)
    status, pid = await _start(rt, command, out)
    pidfile = lifecycle.pidfile_path(marker)
    rt.processes.files[pidfile] = bytearray(f"{pid} {watcher.cid}\n".encode())
    await _quiet(out, f"esxcap-pid {pid}\n")
    loop = asyncio.get_running_loop()
    deadline = int(deadline_text) if deadline_text.isdigit() else 0
    watchdog = loop.call_later(deadline, lambda: loop.create_task(_stop(rt.processes, pid, status)))
    watching = loop.create_task(_watch(process, watcher_gone, rt.processes, pid, status))
    try:
        result = await status
    finally:
        watching.cancel()
        watchdog.cancel()
        rt.processes.exited(watcher)
    if killed:
        _exit(process, 128 + killed[0])
        return
    rt.processes.files.pop(pidfile, None)
    rt.processes.exited(me)
    await _quiet(out, f"esxcap-exit {result}\n")
    _exit(process, result)


async def _watch(
    process: asyncssh.SSHServerProcess[bytes],
    gone: asyncio.Event,
    table: ProcessTable,
    pid: int,
    status: asyncio.Future[int],
) -> None:
    """The watcher: stdin EOF stops pktcap-uw, unless the watcher was killed first."""
    waits = [asyncio.create_task(_stdin_eof(process)), asyncio.create_task(gone.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    if not gone.is_set():
        await _stop(table, pid, status)


async def _ended(status: asyncio.Future[int]) -> None:
    await asyncio.shield(status)


async def _quiet(out: Writer, text: str) -> None:
    try:
        await out.write(2, text.encode())
    except OSError:
        return


async def _start(rt: HostRuntime, command: list[str], out: Writer) -> tuple[asyncio.Future[int], int]:
    """Start the wrapped command in the background: (its exit status to come, its cartel id)."""
    session = pktcap.parse(rt.host, command) if command[0] == "pktcap-uw" else None
    if isinstance(session, pktcap.Session):
        run = PktcapRun(rt.host, rt.traffic, rt.processes, _faulty(rt, session), out)
        cid = run.start().cid
        rt.calls.events.append("pktcap-uw started")
        return run.status, cid
    output = rt.shell.run(command_line(command))
    status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    proc = rt.processes.spawn(command, command[0].rsplit("/", 1)[-1], lambda sig: None)

    async def short() -> None:
        try:
            for fd, data in output.chunks:
                await out.write(fd, data)
        except OSError:
            pass
        rt.processes.exited(proc)
        status.set_result(output.status)

    asyncio.get_running_loop().create_task(short())
    return status, proc.cid


async def _stop(table: ProcessTable, pid: int, status: asyncio.Future[int]) -> None:
    """INT, up to the grace for it to end, then TERM, a second, then KILL (the wrapper's `stop`)."""
    for sig, wait in (("INT", lifecycle.GRACE_SECONDS), ("TERM", 1.0), ("KILL", 1.0)):
        if status.done() or not table.signal(pid, SIGNALS[sig]):
            return
        try:
            await asyncio.wait_for(asyncio.shield(status), wait)
        except TimeoutError:
            continue
        return
