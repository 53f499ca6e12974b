"""Running captures: each pktcap-uw under the dead-man-switch wrapper, its pcap stream read in large
chunks, checked and written through to a sink, and stopped safely.

Stops: `-c` (pktcap-uw's own count), `--duration` (counted from the moment every stream of the command
is confirmed running), `--max-bytes`, the first Ctrl-C (graceful: every stream is asked to stop and its
file completed) and the second (abort: channels closed at once; files still hold every complete packet).
A stream is asked to stop by closing its stdin; the wrapper then stops pktcap-uw by its own PID.
SIGTERM counts as Ctrl-C. A graceful stop is how an open-ended capture normally ends, so it exits 0 (as
tcpdump does); an abort exits 130, within ABORT_WAIT_S even when a host no longer answers.
After a graceful stop each host has STOP_WAIT_S to end its streams; a host that sent nothing since is
failed as frozen and its connection closed, so the other hosts' files complete on time (keepalives
notice a frozen host before any stop). A stream that ends though nobody here asked, and not at its
count, was stopped on the host (e.g. `esxcap cleanup --all` elsewhere): an error, with its stop reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from esxcap.capture.sinks import CaptureSink, DiskFull, ReaderClosed
from esxcap.errors import HostError, RemoteCommandError
from esxcap.esxi.lifecycle import (
    GRACE_SECONDS,
    new_marker,
    reported_exit,
    reported_pid,
    strip_wrapper_lines,
    wrapper_argv,
)
from esxcap.esxi.pktcap_output import parse_trailer
from esxcap.esxi.remote import command_line
from esxcap.pcap import DIRECTION_FLAGS, CaptureFormatError, Interface, NotPcapError, PcapngTranscoder
from esxcap.plan.planner import Stream
from esxcap.ssh.transport import Connection, RemoteProcess
from esxcap.ssh.transport.common import session_ended_error

MAX_CHANNELS_PER_HOST = 8
"""Under sshd's MaxSessions (10 by default, on ESXi too), leaving room for a cleanup channel."""
DEFAULT_DEADLINE_S = 4 * 3600
"""The remote hard stop when no --duration is given: nothing outlives this, whatever fails."""
START_TIMEOUT_S = 30.0
ABORT_WAIT_S = 1.0
STOP_WAIT_S = GRACE_SECONDS + 2
"""After a stop, how long a host's streams may take to end before the host is given up as frozen."""
SIGNAL_STATUS = 128
"""Exit statuses from here on are a death by signal (128 + N)."""
STOP_COMMAND_TIMEOUT_S = 2.0
"""How long the TERM of a `term_to_stop` stream may take (a frozen host must not hold the stop up)."""


WAITING_NOTE_S = 2.0
"""How long after the first stream had its -c packets the ones still waiting are named."""
STOP_REASONS = (
    "count",
    "duration",
    "max-bytes",
    "interrupted",
    "output-closed",
    "disk-full",
    "stopped on the host",
)
"""Why a stream ends: its --count; the command's --duration, --max-bytes, Ctrl-C, a closed reader of its
output or a full disk; or something on the host."""


@dataclass
class StopControl:
    """Shared by every stream of one command: `graceful` asks all to finish, `abort` cuts them off."""

    graceful: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    interrupted: int = 0

    def stop(self, reason: str) -> None:
        if not self.graceful.is_set():
            self.reason = reason
            self.graceful.set()


@dataclass
class StreamRun:
    """One stream's live state and final result."""

    stream: Stream
    sink: CaptureSink
    marker: str = field(default_factory=new_marker)
    iface: int | None = None
    pid: int | None = None
    packets: int = 0
    bytes: int = 0
    dropped: int | None = None
    exit_status: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: HostError | None = None
    host_stderr: str = ""
    shift_ns: int = 0
    """Added to every timestamp of this stream (--align-clocks: minus its host's measured offset)."""
    notes: tuple[str, ...] = ()
    """Extra comments for the stream's interface (e.g. its host's clock offset)."""
    noted: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    """Set once `notes` and `shift_ns` are final: the interface is written only then. Set from the
    start unless given unset (a capture reads the clocks while pktcap-uw starts)."""
    stop_reason: str | None = None
    """Why the stream ended (STOP_REASONS), once it has."""
    term_to_stop: bool = False
    """`esxcap doctor` found that INT does not stop pktcap-uw on this host's build: a graceful stop sends
    TERM to its PID at once instead of letting the wrapper wait the grace for INT to work."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_heard: float = 0.0
    """time.monotonic() of the last data from the host."""

    def __post_init__(self) -> None:
        self.sink.expect_stream()

    @property
    def remote_command(self) -> str:
        return command_line(self.stream.argv)


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def deadline_for(duration: float | None) -> int:
    """The wrapper's hard deadline: the duration plus room to stop gracefully, or the default cap."""
    if duration is None:
        return DEFAULT_DEADLINE_S
    return int(duration) + 3 * GRACE_SECONDS + 10


async def _await_pid(proc: RemoteProcess, run: StreamRun) -> None:
    """Wait until the wrapper reports pktcap-uw's PID (or stderr ends: it failed to start)."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while (pid := reported_pid(proc.stderr())) is None:
                before = len(proc.stderr())
                await proc.stderr_changed()
                if len(proc.stderr()) == before:
                    return
    except TimeoutError:
        raise RemoteCommandError(
            f"{run.stream.target.host}: pktcap-uw did not start within {START_TIMEOUT_S:g} s",
            "the host may have stopped answering; check it, then `esxcap cleanup` it",
        ) from None
    run.pid = pid


async def _watch_stop(
    conn: Connection, run: StreamRun, proc: RemoteProcess, control: StopControl, stopped: asyncio.Event
) -> None:
    await control.graceful.wait()
    if run.term_to_stop and run.pid is not None:
        with contextlib.suppress(HostError):
            await conn.run(["kill", "-TERM", str(run.pid)], timeout=STOP_COMMAND_TIMEOUT_S)
    proc.close_stdin()
    waits = [asyncio.create_task(control.abort.wait()), asyncio.create_task(stopped.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the stream's end cancels this watcher mid-wait: no task is left pending
        for task in waits:
            task.cancel()
    if control.abort.is_set():
        proc.abort()


async def run_stream(conn: Connection, run: StreamRun, control: StopControl, deadline_s: int) -> None:
    """Run one stream to its end; failures land in `run.error`, data already received stays in the sink."""
    stream = run.stream
    proc = await conn.start(wrapper_argv(run.marker, deadline_s, stream.argv))
    run.started_at = time.time()
    stopped = asyncio.Event()
    watcher = asyncio.create_task(_watch_stop(conn, run, proc, control, stopped))
    reader = PcapngTranscoder()
    sink = run.sink
    flags = DIRECTION_FLAGS.get(stream.packet_direction or "", 0)
    try:
        await _await_pid(proc, run)
        run.ready.set()
        while chunk := await proc.read():
            run.last_heard = time.monotonic()
            if run.iface is not None:
                batch = reader.transcode(chunk, run.iface, sink.room, run.shift_ns, sink.wants_keys, flags)
                run.packets += sink.write_batch(run.iface, batch)
                run.bytes += batch.bytes
                if batch.limit_reached:
                    control.stop("max-bytes")
                if sink.listener_gone:
                    control.stop("output-closed")
                continue
            records = reader.feed(chunk)
            if run.iface is None and reader.header is not None:
                await run.noted.wait()
            if run.shift_ns or flags:
                shift = run.shift_ns
                records = [r._replace(ts_ns=r.ts_ns + shift, flags=flags) for r in records]
            if run.iface is None and reader.header is not None:
                header = reader.header
                run.iface = sink.add_stream(
                    Interface(
                        stream.interface_name,
                        header.linktype,
                        header.snaplen,
                        stream.description,
                        (f"remote command: {run.remote_command}", *run.notes),
                    )
                )
            if records and run.iface is not None:
                before = sink.packet_bytes
                run.packets += sink.push(run.iface, records)
                run.bytes += sink.packet_bytes - before
                if sink.limit_reached:
                    control.stop("max-bytes")
                if sink.listener_gone:
                    control.stop("output-closed")
        reader.finish()
    except NotPcapError as exc:
        run.error = _host_said(run, proc, "did not send a pcap stream", exc)
    except CaptureFormatError as exc:
        run.error = _host_said(run, proc, f"sent a corrupt pcap stream ({exc.message})", exc)
    except ReaderClosed:
        control.stop("output-closed")
    except DiskFull as exc:
        run.error = run.error or exc
        control.stop("disk-full")
    except HostError as exc:
        if not control.abort.is_set():
            run.error = run.error or exc
    finally:
        asked_to_stop = control.graceful.is_set()
        run.ready.set()
        proc.close_stdin()
        stopped.set()
        status = await proc.wait(timeout=3 * GRACE_SECONDS + 5)
        watcher.cancel()
        run.ended_at = time.time()
        _finish(run, proc, status, asked_to_stop, deadline_s)


def _count_of(run: StreamRun) -> int | None:
    """The stream's own packet count (pktcap-uw's -c), if it has one."""
    argv = run.stream.argv
    count = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-c", "--count")), None)
    return int(count) if count is not None and count.isdigit() else None


def _count_reached(run: StreamRun) -> bool:
    count = _count_of(run)
    return count is not None and run.packets >= count


async def note_streams_still_counting(
    runs: Sequence[StreamRun], control: StopControl, notify: Callable[[str], None]
) -> None:
    """pktcap-uw counts -c per stream: once some streams have their packets and others still wait
    WAITING_NOTE_S later (a point the traffic never passes waits forever), say which ones wait."""
    counted = [run for run in runs if _count_of(run) is not None]
    while counted and not control.graceful.is_set():
        ended = [run.ended_at for run in counted if run.ended_at is not None]
        waiting = [run for run in counted if run.ended_at is None]
        if not waiting:
            return
        if ended and time.time() - min(ended) >= WAITING_NOTE_S:
            shown = ", ".join(f"{run.stream.interface_name} ({run.packets} so far)" for run in waiting)
            done = f"{len(counted) - len(waiting)} of {len(counted)} streams"
            notify(
                f"{done} have their -c {_count_of(waiting[0])} packets; still waiting for {shown}. "
                "-c counts per stream: Ctrl-C (or -d) ends the wait and keeps what came"
            )
            return
        await asyncio.sleep(0.25)


def _kept(run: StreamRun) -> str:
    return "the packets received before are kept" + (f" in {run.sink.path}" if run.sink.path else "")


def _ended_by_a_stop(run: StreamRun) -> bool:
    """pktcap-uw ended as a stop ends it: cleanly (it took SIGINT), by a signal, or with its wrapper gone
    (no status, or the channel's -1 for a shell killed by a signal); not with an error status of its own."""
    status = run.exit_status
    return status is None or status <= 0 or status >= SIGNAL_STATUS


def _stopped_on_host(run: StreamRun, deadline_s: int) -> None:
    """pktcap-uw ended cleanly though nobody here asked and its count was not reached: something on the
    host stopped it (`esxcap cleanup --all` from elsewhere, an admin's kill, the wrapper's deadline)."""
    host = run.stream.target.host
    elapsed = (run.ended_at or 0) - (run.started_at or 0)
    by = "by its hard deadline" if elapsed >= deadline_s - 1 else "from outside this esxcap"
    run.stop_reason = "stopped on the host"
    run.error = RemoteCommandError(
        f"{host}: the capture was stopped on the host ({by}) after {run.packets} packets",
        f"{_kept(run)}; another `esxcap cleanup --all` or a `kill` of "
        "pktcap-uw on the host ends captures in use: capture again when it is free",
    )


def _finish(
    run: StreamRun, proc: RemoteProcess, status: int | None, asked_to_stop: bool, deadline_s: int
) -> None:
    stderr = proc.stderr()
    run.host_stderr = strip_wrapper_lines(stderr).decode("utf-8", "replace").strip()
    trailer = parse_trailer(stderr)
    if trailer is not None:
        run.dropped = trailer.dropped
    if run.iface is not None:
        run.sink.set_dropped(run.iface, run.dropped)
    run.exit_status = reported_exit(stderr)
    if run.exit_status is None:
        run.exit_status = status
        if run.error is None and run.iface is not None and not asked_to_stop and run.dropped is None:
            # without pktcap-uw's trailer: the session went, not a stop on the host (that one came)
            run.error = session_ended_error(run.stream.target.host, run.packets, _ran_for(run), run.sink.path)
    if run.error is None and run.iface is None:
        said = [line for line in run.host_stderr.splitlines() if line.strip()]
        run.error = RemoteCommandError(
            f"{run.stream.target.host}: pktcap-uw ended (status {run.exit_status}) without a capture: "
            f"{said[-1] if said else 'it printed nothing'}",
            f"the host said: {run.host_stderr[-500:] or 'nothing'}; "
            "check the command with --dry-run and try it by hand on the host",
        )
    elif run.error is None and not asked_to_stop and not _count_reached(run) and _ended_by_a_stop(run):
        _stopped_on_host(run, deadline_s)
    elif run.error is None and run.exit_status not in (0, None) and not asked_to_stop:
        said = [line for line in run.host_stderr.splitlines() if line.strip()]
        run.error = RemoteCommandError(
            f"{run.stream.target.host}: pktcap-uw failed (status {run.exit_status}) after "
            f"{run.packets} packets: {said[-1] if said else 'it printed nothing'}",
            f"{_kept(run)}; check that the target still exists on the "
            "host (a VM that moved or powered off takes its port with it) and capture again",
        )


def _ran_for(run: StreamRun) -> float:
    return (run.ended_at or time.time()) - (run.started_at or time.time())


def _host_said(run: StreamRun, proc: RemoteProcess, what: str, exc: Exception) -> HostError:
    said = strip_wrapper_lines(proc.stderr()).decode("utf-8", "replace").strip()
    return RemoteCommandError(
        f"{run.stream.target.host}: pktcap-uw {what}; the host said: {said[-500:] or '(nothing)'}",
        f"check the command with --dry-run; detail: {exc}",
    )


async def run_host_streams(
    conn: Connection, runs: Sequence[StreamRun], control: StopControl, deadline_s: int
) -> None:
    """All streams of one host on its one connection. After a stop they get STOP_WAIT_S to end, after an
    abort ABORT_WAIT_S; then the connection is closed under them (each wrapper stops its pktcap-uw
    itself), and a host that sent nothing since the stop is given up as frozen."""
    if len(runs) > MAX_CHANNELS_PER_HOST:
        host = runs[0].stream.target.host
        raise RemoteCommandError(
            f"{host}: {len(runs)} streams at once; one SSH connection carries {MAX_CHANNELS_PER_HOST}",
            "capture fewer targets or points per host in one command",
        )
    streams: asyncio.Future[Any] = asyncio.gather(
        *(run_stream(conn, run, control, deadline_s) for run in runs)
    )
    aborted: asyncio.Future[Any] = asyncio.create_task(control.abort.wait())
    stopping: asyncio.Future[Any] = asyncio.create_task(control.graceful.wait())
    try:
        await asyncio.wait([streams, aborted, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not streams.done() and not control.abort.is_set():
            asked = time.monotonic()
            await asyncio.wait([streams, aborted], timeout=STOP_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            if not streams.done() and not control.abort.is_set():
                _give_up(runs, asked)
                await conn.close()
        if not streams.done():
            try:
                async with asyncio.timeout(ABORT_WAIT_S):
                    await asyncio.shield(streams)
            except TimeoutError:
                await conn.close()
        await streams
    finally:
        aborted.cancel()
        stopping.cancel()


def _give_up(runs: Sequence[StreamRun], asked: float) -> None:
    """Streams still open STOP_WAIT_S after the stop: those that sent nothing since are a frozen host."""
    for run in runs:
        if run.ended_at is None and run.error is None and run.last_heard < asked:
            run.error = RemoteCommandError(
                f"{run.stream.target.host}: stopped answering: its stream neither ended nor sent anything "
                f"within {STOP_WAIT_S} s of the stop",
                f"{_kept(run)}; check the host and its network, then "
                "`esxcap cleanup` it (its capture stops itself by its deadline at the latest)",
            )


async def start_clock(runs: Sequence[StreamRun], control: StopControl, duration: float | None) -> None:
    """Once every stream is running (or has failed), count --duration from that common start."""
    await asyncio.gather(*(run.ready.wait() for run in runs))
    if duration is None:
        return
    try:
        async with asyncio.timeout(duration):
            await control.graceful.wait()
    except TimeoutError:
        control.stop("duration")


def settle_stop_reasons(control: StopControl, runs: Sequence[StreamRun]) -> str | None:
    """Why the capture ended: the command's own stop, else the first stream's own reason. Streams that
    ended without an error and without a reason of their own take it."""
    for run in runs:
        if run.stop_reason is None and run.error is None:
            run.stop_reason = "count" if _count_reached(run) else control.reason
    return control.reason or next((r.stop_reason for r in runs if r.stop_reason), None)


def install_stop_signals(control: StopControl, notify: Callable[[str], None]) -> Callable[[], None]:
    """First Ctrl-C (or SIGTERM): graceful stop; second: abort. Returns a function that removes them."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        control.interrupted += 1
        if control.interrupted == 1:
            control.stop("interrupted")
            notify("stopping: files are being completed (Ctrl-C again to abort)")
        else:
            control.abort.set()
            notify("aborting")

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    return remove
