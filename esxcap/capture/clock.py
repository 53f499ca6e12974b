"""Host clocks: how far each host's clock is from this machine's, measured over SSH in one exec per host.

The exec runs `esxcap.esxi.clock_script.CLOCK_SCRIPT`; this machine notes when it started it (sent) and
when each output line arrived. Its first line is `date +%s.%N`, read somewhere between sent and its
arrival (first), so with rtt = first - sent

    offset = host time - (sent + first) / 2,   error bound = rtt / 2 + the reading's resolution.

With nanoseconds that is the reading (`date +%s.%N`). BusyBox prints `%N` literally unless built with
nanosecond support (REFERENCE §9): the reading is then whole seconds (resolution 0.5 s), and the script
goes on sampling `date +%s` until the second ticks over, printing `edge S N` at once. That line arrives
(edge) within one sampling step (step = (edge - first) / N) and one trip back after the host's clock
read S.000000000, so

    offset = S - (edge - rtt / 2),   error bound = rtt / 2 + step   (method `date +%s second edge`),

the one-way trip back being taken as at most rtt. The smaller bound of the two readings wins.

Offsets are measured at start and at end; both go into the JSON summary, the start offset and bound
into every interface's comment of the pcapng (`clock_comment`, read back by `esxcap.pcap.comments`).
`--align-clocks` shifts a host's timestamps only when its offset is larger than its bound (else the
shift would be noise), and a change of offset between start and end counts only beyond both bounds.
Everything here is pure except `measure` (the I/O edge).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from esxcap.errors import HostError, RemoteCommandError
from esxcap.esxi.clock_script import CLOCK_ARGV, parse_edge
from esxcap.ssh.transport import Connection

if TYPE_CHECKING:
    from esxcap.capture.run import StreamRun

PROBE_TIMEOUT_S = 10.0
NANO_METHOD = "date +%s.%N"
SECONDS_METHOD = "date +%s (whole seconds)"
EDGE_METHOD = "date +%s second edge"
_NANO = re.compile(r"^(\d+)\.(\d{9})$")
_SECONDS = re.compile(r"^(\d+)(?:\.(?:%?N)?)?$")


@dataclass(frozen=True)
class ClockRun:
    """One run of the clock script as this machine saw it: when it was started, and each output line
    with the time it arrived."""

    sent_ns: int
    lines: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class ClockReading:
    """A host's clock offset (host clock - this machine's) with its error bound; `probes` counts the
    host's `date` runs behind it."""

    offset_ns: int
    bound_ns: int
    rtt_ns: int
    method: str
    probes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "offset_ms": round(self.offset_ns / 1e6, 3),
            "bound_ms": round(self.bound_ns / 1e6, 3),
            "rtt_ms": round(self.rtt_ns / 1e6, 3),
            "method": self.method,
            "probes": self.probes,
        }


@dataclass(frozen=True)
class ClockCheck:
    """One host's readings at start and end (None when that reading failed: `error` says why)."""

    host: str
    start: ClockReading | None
    end: ClockReading | None = None
    error: str | None = None

    @property
    def drift_ns(self) -> int | None:
        """How much the offset changed between start and end, when both were read."""
        if self.start is None or self.end is None:
            return None
        return self.end.offset_ns - self.start.offset_ns

    @property
    def drift_bound_ns(self) -> int | None:
        """The drift's error bound: both readings' bounds together."""
        if self.start is None or self.end is None:
            return None
        return self.start.bound_ns + self.end.bound_ns

    @property
    def drift_significant(self) -> bool:
        """The change is larger than both readings' error bounds together."""
        drift, bound = self.drift_ns, self.drift_bound_ns
        return drift is not None and bound is not None and abs(drift) > bound

    def as_dict(self) -> dict[str, object]:
        drift, bound = self.drift_ns, self.drift_bound_ns
        return {
            "host": self.host,
            "start": self.start.as_dict() if self.start else None,
            "end": self.end.as_dict() if self.end else None,
            "drift_ms": None if drift is None else round(drift / 1e6, 3),
            "drift_bound_ms": None if bound is None else round(bound / 1e6, 3),
            "drift_significant": self.drift_significant,
            "error": self.error,
        }


def significant(reading: ClockReading) -> bool:
    """The offset is larger than its error bound: aligning by it corrects more than it could spoil."""
    return abs(reading.offset_ns) > reading.bound_ns


def parse_date(reply: str) -> tuple[int, int, str] | None:
    """`date +%s.%N` output -> (host time ns, resolution ns, method); None when it is not a time."""
    text = reply.strip()
    nano = _NANO.match(text)
    if nano:
        return int(nano.group(1)) * 1_000_000_000 + int(nano.group(2)), 0, NANO_METHOD
    whole = _SECONDS.match(text)
    if whole:
        return int(whole.group(1)) * 1_000_000_000 + 500_000_000, 500_000_000, SECONDS_METHOD
    return None


def estimate(run: ClockRun) -> ClockReading:
    """The offset from one clock-script run (see the module docstring); ValueError when its first line
    is not a time."""
    if not run.lines:
        raise ValueError("`date +%s.%N` printed nothing")
    first, reply = run.lines[0]
    parsed = parse_date(reply)
    if parsed is None:
        raise ValueError(f"`date +%s.%N` did not print a time (it printed {reply.strip()[:80]!r})")
    host_ns, resolution, method = parsed
    rtt = first - run.sent_ns
    reading = ClockReading(host_ns - (run.sent_ns + rtt // 2), (rtt + 1) // 2 + resolution, rtt, method, 1)
    edges = [(at, edge) for at, line in run.lines[1:] if (edge := parse_edge(line)) is not None]
    if resolution == 0 or not edges:
        return reading
    at, edge = edges[0]
    if edge.seconds * 1_000_000_000 <= host_ns - resolution or edge.samples < 1:
        return reading  # the loop gave up before the second ticked over
    step = (at - first) // edge.samples if at > first else rtt
    by_edge = ClockReading(
        edge.seconds * 1_000_000_000 - (at - rtt // 2),
        (rtt + 1) // 2 + step,
        rtt,
        EDGE_METHOD,
        1 + edge.samples,
    )
    return by_edge if by_edge.bound_ns < reading.bound_ns else reading


def warnings(checks: Sequence[ClockCheck], window_ns: int, aligned: bool) -> list[str]:
    """What the user should know: skews beyond the reorder window (unless aligned), offsets that moved
    during the capture, failed readings."""
    out = []
    for c in checks:
        if c.error:
            out.append(f"{c.host}: clock not checked: {c.error}")
        for when, r in () if aligned else (("start", c.start), ("end", c.end)):
            if r is not None and abs(r.offset_ns) - r.bound_ns > window_ns:
                out.append(
                    f"{c.host}: clock off by {r.offset_ns / 1e6:+.1f} ms at {when}, more than the "
                    f"{window_ns / 1e6:.0f} ms reorder window: use --align-clocks (or fix NTP on the host)"
                )
                break
        drift = c.drift_ns
        if drift is not None and c.drift_significant:
            out.append(
                f"{c.host}: clock offset changed by {drift / 1e6:+.3f} ms during the capture "
                f"(beyond the error bounds, ±{(c.drift_bound_ns or 0) / 1e6:.3f} ms): the host's clock "
                "was adjusted or drifts"
            )
    return out


def clock_comment(host: str, reading: ClockReading, aligned: bool) -> str:
    """The interface comment recording a host's start offset (`esxcap.pcap.comments` reads it back)."""
    state = "aligned" if aligned else "as read"
    return (
        f"{host}: clock offset {reading.offset_ns / 1e6:+.6f} ms ±{reading.bound_ns / 1e6:.6f} ms "
        f"(rtt {reading.rtt_ns / 1e6:.3f} ms, {reading.method}, {reading.probes} readings) at start; "
        f"timestamps {state}"
    )


async def measure(conn: Connection, host: str) -> ClockReading:
    """Run the clock script on `host`'s open connection, timing each line's arrival (the I/O edge)."""
    sent = time.time_ns()
    proc = await conn.start(CLOCK_ARGV)
    lines: list[tuple[int, str]] = []
    pending = b""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            while chunk := await proc.read():
                arrived = time.time_ns()
                *done, pending = (pending + chunk).split(b"\n")
                lines += [(arrived, line.decode("utf-8", "replace")) for line in done]
            await proc.wait(PROBE_TIMEOUT_S)
    except TimeoutError:
        proc.abort()
        raise RemoteCommandError(
            f"{host}: reading the clock did not finish within {PROBE_TIMEOUT_S:.0f} s",
            "the clock offset is unknown; timestamps are as read",
        ) from None
    try:
        return estimate(ClockRun(sent, tuple(lines)))
    except ValueError as exc:
        raise RemoteCommandError(
            f"{host}: {exc}", "the clock offset is unknown; timestamps are as read"
        ) from exc


async def check(conn: Connection, host: str, previous: ClockCheck | None = None) -> ClockCheck:
    """A start reading (no `previous`) or the end reading added to `previous`; failures are recorded."""
    try:
        reading: ClockReading | None = await measure(conn, host)
        error = previous.error if previous else None
    except HostError as exc:
        reading, error = None, exc.message
    if previous is None:
        return ClockCheck(host, reading, None, error)
    return ClockCheck(host, previous.start, reading, error)


def annotate(runs: Sequence[StreamRun], checks: Mapping[str, ClockCheck], align: bool) -> None:
    """Give each stream its host's clock comment and, with `align`, the shift that undoes the offset -
    only where the offset is larger than its bound (`significant`)."""
    for run in runs:
        check_ = checks.get(run.stream.target.host)
        if check_ is None or check_.start is None:
            continue
        shift = align and significant(check_.start)
        run.notes = (clock_comment(check_.host, check_.start, shift),)
        if shift:
            run.shift_ns = -check_.start.offset_ns


async def check_all(
    conns: Mapping[str, Connection], previous: Mapping[str, ClockCheck]
) -> dict[str, ClockCheck]:
    """`check` on every host at once: start readings, or (given `previous`) the end readings."""
    names = list(conns)
    found = await asyncio.gather(*(check(conns[n], n, previous.get(n)) for n in names))
    return dict(zip(names, found, strict=True))
