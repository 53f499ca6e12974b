"""Host clock offsets: how far each host's clock is from this machine's, measured over SSH.

Method, the same on every ESXi version: PROBES runs of `date +%s.%N` one after another on the host's
open connection, each bracketed by this machine's clock (sent, received). The host read its clock
somewhere between the two, so for the probe with the shortest round trip

    offset = host time - (sent + received) / 2,   error bound = RTT / 2 + the reading's resolution.

ESXi's BusyBox `date` prints nanoseconds for `%N` where it was built with nanosecond support; a host
whose `date` does not (it prints whole seconds, or `%N`/`N` literally) is read to the second: its
reading is taken as the middle of that second and the bound grows by 0.5 s. Which one a host gave is
recorded as the method (`date +%s.%N` or `date +%s (whole seconds)`).

Offsets are measured at start and at end; both go into the JSON summary, the start offset and bound
into every interface's comment of the pcapng (`clock_comment`, read back by `esxcap.pcap.comments`).
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
from esxcap.ssh.transport import Connection

if TYPE_CHECKING:
    from esxcap.capture.run import StreamRun

DATE_ARGV = ("date", "+%s.%N")
PROBES = 5
PROBE_TIMEOUT_S = 10.0
NANO_METHOD = "date +%s.%N"
SECONDS_METHOD = "date +%s (whole seconds)"
_NANO = re.compile(r"^(\d+)\.(\d{9})$")
_SECONDS = re.compile(r"^(\d+)(?:\.(?:%?N)?)?$")


@dataclass(frozen=True)
class Probe:
    """One `date` run: this machine's clock when it was sent and when its answer arrived, and the answer."""

    sent_ns: int
    received_ns: int
    reply: str


@dataclass(frozen=True)
class ClockReading:
    """A host's clock offset (host clock - this machine's) with its error bound, from the best probe."""

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
    def drift_significant(self) -> bool:
        """The change is larger than both readings' error bounds together."""
        if self.start is None or self.end is None:
            return False
        return abs(self.end.offset_ns - self.start.offset_ns) > self.start.bound_ns + self.end.bound_ns

    def as_dict(self) -> dict[str, object]:
        drift = self.drift_ns
        return {
            "host": self.host,
            "start": self.start.as_dict() if self.start else None,
            "end": self.end.as_dict() if self.end else None,
            "drift_ms": None if drift is None else round(drift / 1e6, 3),
            "error": self.error,
        }


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


def estimate(probes: Sequence[Probe]) -> ClockReading:
    """The offset from the probe with the shortest round trip; ValueError when no probe is usable."""
    usable = [(p, parsed) for p in probes if (parsed := parse_date(p.reply)) is not None]
    if not usable:
        said = probes[-1].reply.strip()[:80] if probes else "nothing"
        raise ValueError(f"`date +%s.%N` did not print a time (it printed {said!r})")
    best, (host_ns, resolution, method) = min(usable, key=lambda u: u[0].received_ns - u[0].sent_ns)
    rtt = best.received_ns - best.sent_ns
    midpoint = best.sent_ns + rtt // 2
    return ClockReading(host_ns - midpoint, (rtt + 1) // 2 + resolution, rtt, method, len(probes))


def warnings(checks: Sequence[ClockCheck], window_ns: int, aligned: bool) -> list[str]:
    """What the user should know: skews beyond the reorder window (unless aligned), offsets that moved
    during the capture, failed readings."""
    out = []
    for c in checks:
        if c.error:
            out.append(f"{c.host}: clock not checked: {c.error}")
        for when, r in () if aligned else (("start", c.start), ("end", c.end)):
            if r is not None and abs(r.offset_ns) > window_ns:
                out.append(
                    f"{c.host}: clock off by {r.offset_ns / 1e6:+.1f} ms at {when}, more than the "
                    f"{window_ns / 1e6:.0f} ms reorder window: use --align-clocks (or fix NTP on the host)"
                )
                break
        drift = c.drift_ns
        if drift is not None and c.drift_significant:
            out.append(
                f"{c.host}: clock offset changed by {drift / 1e6:+.3f} ms during the capture "
                "(beyond the error bounds): the host's clock was adjusted or drifts"
            )
    return out


def clock_comment(host: str, reading: ClockReading, aligned: bool) -> str:
    """The interface comment recording a host's start offset (`esxcap.pcap.comments` reads it back)."""
    state = "aligned" if aligned else "as read"
    return (
        f"{host}: clock offset {reading.offset_ns / 1e6:+.6f} ms ±{reading.bound_ns / 1e6:.6f} ms "
        f"(rtt {reading.rtt_ns / 1e6:.3f} ms, {reading.method}, best of {reading.probes} probes) at start; "
        f"timestamps {state}"
    )


async def measure(conn: Connection, host: str, probes: int = PROBES) -> ClockReading:
    """Probe `host`'s clock `probes` times on its open connection (the I/O edge of this module)."""
    taken = []
    for _ in range(probes):
        sent = time.time_ns()
        result = await conn.run(DATE_ARGV, timeout=PROBE_TIMEOUT_S)
        received = time.time_ns()
        taken.append(Probe(sent, received, result.stdout.decode("utf-8", "replace")))
    try:
        return estimate(taken)
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
    """Give each stream its host's clock comment and, with `align`, the shift that undoes the offset."""
    for run in runs:
        check_ = checks.get(run.stream.target.host)
        if check_ is None or check_.start is None:
            continue
        run.notes = (clock_comment(check_.host, check_.start, align),)
        if align:
            run.shift_ns = -check_.start.offset_ns


async def check_all(
    conns: Mapping[str, Connection], previous: Mapping[str, ClockCheck]
) -> dict[str, ClockCheck]:
    """`check` on every host at once: start readings, or (given `previous`) the end readings."""
    names = list(conns)
    found = await asyncio.gather(*(check(conns[n], n, previous.get(n)) for n in names))
    return dict(zip(names, found, strict=True))
