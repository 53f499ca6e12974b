"""Triggered captures (`--trigger`): the moment kept on every host.

A `TriggerRecorder` taps the capture's sink. It sees each stream's packets as they arrive (`scan`: the
condition is checked there) and every packet again in time order once the sink's reorder window
releases it (`take`: kept in the before-window, and written to each open event whose window holds it).
When the condition fires, an event opens: [t - before, t + after] in this machine's time, each stream's
timestamps converted with its host's measured clock offset, so the same moment is kept on every host.
Each event is one merged pcapng, `<base>_trigger001_<UTC>.pcapng`, holding every stream's packets of the
window, the trigger packet marked with a packet comment (what fired, on which stream).

A trigger inside an open event's window belongs to that event: its packet is marked too and the event
lists it, but the window is neither extended nor a new event opened. Without `--trigger-count` the
capture stops once the first event's after-window has passed; with N, once the Nth's has.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from esxcap.capture.before import BeforeBuffer, Buffer
from esxcap.capture.destinations import (
    ConsoleView,
    OutputChoice,
    Outputs,
    live_viewer,
    merged_name,
    safe_name,
    section_comments,
)
from esxcap.capture.dfwatch import DisplayFilterWatch
from esxcap.capture.files import create_part, cut_to_whole_blocks, place
from esxcap.capture.ring import DISK_FULL_ERRNOS, ring_base
from esxcap.capture.sinks import CaptureSink, DiskFull, OutputError
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, CaptureFormatError, Interface, PcapngWriter, encode_epb
from esxcap.pcap.triggers import Hit, TriggerPlan, TriggerScanner
from esxcap.plan.planner import Stream

CLOSE_MARGIN_NS = 2_000_000_000
"""An event is complete once a packet this much newer than its window's end has been released (other
hosts' streams may lag by their clock offsets and the network)."""
STOP_MARGIN_S = 1.5
"""After the last event's window ends, how long the streams still run so its last packets arrive."""
_EPB_FIELDS = struct.Struct("<8xIIIII")
LISTED_TRIGGERS = 100
"""Triggers listed per event in the metadata (a burst of them is counted, not listed)."""


def event_name(base: Path, number: int, ts_ns: int) -> Path:
    """`<base>_trigger001_<UTC>.pcapng` beside `base` (the capture file, without `.pcapng`; names sort)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts_ns / 1e9)) + f".{ts_ns // 1_000_000 % 1000:03d}Z"
    return base.with_name(f"{ring_base(base).name}_trigger{number:03d}_{stamp}.pcapng")


@dataclass
class TriggerEvent:
    """One kept moment: its window (local ns), its file, the triggers inside it, what it holds."""

    number: int
    trigger: Hit
    stream: str
    start_ns: int
    end_ns: int
    before_kept_s: float
    path: Path
    part: Path
    file: IO[bytes]
    writer: PcapngWriter
    marks: dict[tuple[int, int], str] = field(default_factory=dict)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    """The first LISTED_TRIGGERS triggers inside the window (`fired` counts them all)."""
    fired: int = 0
    packets: dict[int, int] = field(default_factory=dict)
    closed: bool = False
    good: int = 0
    """The file's length after the last write that went through (whole blocks)."""
    broken: bool = False
    """A write failed (a full disk): the file may end inside a block and is cut back when closed."""
    after_kept_s: float | None = None
    """Set when the capture stopped (Ctrl-C, -d, a failure) before the window's end: what it holds."""

    def write(self, stamps: Sequence[int], blocks: Sequence[Buffer]) -> None:
        """Append the blocks whose local time lies in the window; marked ones get their comment."""
        parts: list[Buffer] = []
        counts: dict[int, int] = {}
        for local, held in zip(stamps, blocks, strict=True):
            if not self.start_ns <= local <= self.end_ns:
                continue
            iface, high, low, caplen, origlen = _EPB_FIELDS.unpack_from(held, 0)
            ts = high << 32 | low
            comment = self.marks.pop((iface, ts), None) if self.marks else None
            if comment is None:
                parts.append(held)
            else:
                parts.append(encode_epb(iface, ts, bytes(held[28 : 28 + caplen]), origlen, (comment,)))
            counts[iface] = counts.get(iface, 0) + 1
        if not parts:
            return
        try:
            self.writer.write_blocks(parts, len(parts))
        except OSError:
            self.broken = True
            raise
        self.good = self.file.tell()
        for iface, count in counts.items():
            self.packets[iface] = self.packets.get(iface, 0) + count

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {
            "number": self.number,
            "file": self.path.name,
            "condition": self.triggers[0]["condition"],
            "fired_on": self.stream,
            "what": self.trigger.what,
            "trigger_utc": _utc(self.trigger.local_ns),
            "window_utc": [_utc(self.start_ns), _utc(self.end_ns)],
            "before_s_kept": round(self.before_kept_s, 3),
            "after_s_kept": round(self.after_kept_s, 3)
            if self.after_kept_s is not None
            else round((self.end_ns - self.trigger.local_ns) / 1e9, 3),
            "window_end_reached": self.after_kept_s is None,
            "triggers": self.triggers,
            "triggers_in_window": self.fired,
            "packets": {names[i]: n for i, n in sorted(self.packets.items())},
        }


def _packets_in(path: Path) -> dict[int, int]:
    """Packets per interface in a pcapng file ({} when it holds none or cannot be read)."""
    counts: dict[int, int] = {}
    with contextlib.suppress(CaptureFormatError, OSError), path.open("rb") as handle:
        for record in CaptureFile(handle, path.name):
            counts[record.interface] = counts.get(record.interface, 0) + 1
    return counts


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d}Z"


class TriggerRecorder:
    """The tap of a triggered capture's sink (see the module): scans, holds the before-window, writes
    one file per event. `info` speaks to the user; `on_last_event(seconds)` is called when the last
    event to keep opens, with how long the capture should still run."""

    def __init__(
        self,
        plan: TriggerPlan,
        base: Path,
        comments: Sequence[str],
        info: Callable[[str], None],
        force: bool = False,
    ) -> None:
        self.plan = plan
        self.base = base
        self._comments = tuple(comments)
        self._info = info
        self._force = force
        self.scanner = TriggerScanner(plan.condition)
        self.before = BeforeBuffer(plan.before_bytes, base.parent)
        self._streams: dict[str, tuple[int, bool]] = {}
        """Interface name -> (shift to local time, at the Drop point), told before the streams start."""
        self._interfaces: list[Interface] = []
        self._to_local: list[int] = []
        self.events: list[TriggerEvent] = []
        self.first_ns: int | None = None
        self.on_last_event: Callable[[float], None] = lambda _seconds: None
        self._newest = 0
        self._keep_ns = round(plan.before_s * 1e9) + plan.condition.late_ns + CLOSE_MARGIN_NS
        self.failed: OutputError | None = None
        """The write that failed (the events keep what was written before it)."""
        self.watch: DisplayFilterWatch | None = None
        """df: the tshark that checks the display filter (its answers come later than the packets)."""

    def expect(self, interface_name: str, to_local_ns: int, drop_point: bool) -> None:
        self._streams[interface_name] = (to_local_ns, drop_point)

    def add_interface(self, iface: int, interface: Interface) -> None:
        to_local, drop = self._streams.get(interface.name, (0, False))
        self._interfaces.append(interface)
        self._to_local.append(to_local)
        self.scanner.add_stream(iface, to_local, drop)
        if self.watch is not None:
            self.watch.add_interface(interface)
        for event in self.events:
            if not event.closed:
                event.writer.add_interface(interface)

    def scan(self, iface: int, stamps: Sequence[int], blocks: Sequence[Buffer]) -> None:
        if stamps:
            local = stamps[0] + self._to_local[iface]
            self.first_ns = local if self.first_ns is None else min(self.first_ns, local)
        if self.watch is not None:
            self._matched(self.watch.matches())
            return
        for hit in self.scanner.scan(iface, stamps, blocks):
            self.fire(hit)

    def _matched(self, found: Sequence[tuple[int, int]]) -> None:
        what = f"display filter {self.plan.condition.display_filter!r} matched"
        for iface, ts in found:
            if 0 <= iface < len(self._to_local):
                self.fire(Hit(iface, ts, ts + self._to_local[iface], what))

    def fire(self, hit: Hit) -> None:
        """A trigger: marked in the open event whose window holds it, else a new event (while fewer than
        the events to keep were opened)."""
        stream = self._interfaces[hit.iface].name
        entry = {"condition": self.plan.condition.text, "stream": stream, "what": hit.what}
        comment = f"esxcap trigger {self.plan.condition.text} fired on {stream}: {hit.what}"
        for event in self.events:
            if event.start_ns <= hit.local_ns <= event.end_ns:
                if not event.closed:
                    event.marks[hit.iface, hit.ts_ns] = comment
                event.fired += 1
                if len(event.triggers) < LISTED_TRIGGERS:
                    event.triggers.append({**entry, "utc": _utc(hit.local_ns)})
                return
        if len(self.events) >= self.plan.events or self.failed is not None:
            return
        with self._writing():
            self._open(hit, stream, entry, comment)

    def _open(self, hit: Hit, stream: str, entry: dict[str, Any], comment: str) -> None:
        plan = self.plan
        start = hit.local_ns - round(plan.before_s * 1e9)
        first = self.first_ns if self.first_ns is not None else hit.local_ns
        kept = min(plan.before_s, max(0.0, (hit.local_ns - first) / 1e9))
        number = len(self.events) + 1
        path = event_name(self.base, number, hit.local_ns)
        part, handle = create_part(path)
        section = (
            *self._comments,
            f"esxcap trigger event {number}: {comment}; window {plan.before_s:g} s before, "
            f"{plan.after_s:g} s after, in this machine's time (each host's clock offset applied)",
        )
        writer = PcapngWriter(handle, comments=section)
        for interface in self._interfaces:
            writer.add_interface(interface)
        end = hit.local_ns + round(plan.after_s * 1e9)
        event = TriggerEvent(number, hit, stream, start, end, kept, path, part, handle, writer)
        event.marks[hit.iface, hit.ts_ns] = comment
        event.triggers.append({**entry, "utc": _utc(hit.local_ns)})
        event.fired = 1
        self.events.append(event)
        self._info(f"trigger {number}: {comment}")
        if kept < plan.before_s:
            self._info(
                f"trigger {number} fired {kept:.1f} s after the capture's first packet: its before-window "
                f"holds {kept:.1f} s, not {plan.before_s:g} s"
            )
        for held in self.before.since(start):
            event.write(self._locals(held), held)
        if number == plan.events:
            self.on_last_event(max(0.0, (event.end_ns - time.time_ns()) / 1e9) + STOP_MARGIN_S)

    def take(self, blocks: Sequence[Buffer]) -> None:
        """Released blocks in time order: kept for later events, written to the open ones (nothing more
        once a write failed: the capture is stopping and the events are completed as they are)."""
        if self.failed is None:
            with self._writing():
                self._take(blocks)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write of an event or of the before-window's spill file stops the capture: DiskFull
        when the disk (file-size limit, quota) is full, else OutputError; said once."""
        try:
            yield
        except OSError as exc:
            error = DiskFull if exc.errno in DISK_FULL_ERRNOS else OutputError
            self.failed = error(
                f"cannot write the trigger events or their before-window in {self.base.parent}: "
                f"{exc.strerror or exc}",
                "free some space or choose another folder with -o; the events written so far are kept",
            )
            raise self.failed from exc

    def _take(self, blocks: Sequence[Buffer]) -> None:
        """Only an open event looks at each packet's time; the before-window keeps the batch whole, by
        the time of its last packet (the sink releases in time order, late packets first)."""
        if not blocks:
            return
        listed = list(blocks)
        if self.watch is not None:
            self.watch.feed(listed)
        newest = self._locals(listed[-1:])[0]
        open_events = [event for event in self.events if not event.closed]
        if open_events:
            stamps = self._locals(listed)
            newest = max(stamps)
            for event in open_events:
                event.write(stamps, listed)
                if newest > event.end_ns + CLOSE_MARGIN_NS:
                    self._close(event)
        self.before.add(newest, listed)
        self._newest = max(self._newest, newest)
        self.before.prune(self._newest - self._keep_ns)

    def _locals(self, blocks: Sequence[Buffer]) -> list[int]:
        """Each block's timestamp in this machine's time."""
        unpack, to_local = _EPB_FIELDS.unpack_from, self._to_local
        stamps = []
        for block in blocks:
            iface, high, low, _caplen, _origlen = unpack(block, 0)
            stamps.append((high << 32 | low) + to_local[iface])
        return stamps

    def _close(self, event: TriggerEvent) -> None:
        event.closed = True
        try:
            event.file.close()
        except OSError:
            event.broken = True
        if event.broken:
            cut_to_whole_blocks(event.part, [event.good])
            event.packets = _packets_in(event.part)
        if not event.packets and self.failed is not None:  # none reached the disk
            event.part.unlink()
            self.events.remove(event)
            self._info(f"trigger event {event.number}: nothing of it could be written ({self.failed})")
            return
        event.path = place(event.part, event.path, self._force)

    def finish(self) -> list[TriggerEvent]:
        """Close every open event (call after the sink has released everything); the events kept."""
        if self.watch is not None:
            with contextlib.suppress(OutputError):  # a failed write: said when it happened
                self._matched(self.watch.close())
        now = time.time_ns()
        for event in list(self.events):
            if not event.closed:
                if now < event.end_ns:
                    self._cut_short(event)
                with contextlib.suppress(OSError):
                    self._close(event)
        self.before.close()
        return self.events

    def _cut_short(self, event: TriggerEvent) -> None:
        """The capture stopped inside `event`'s after-window: it holds up to the newest packet seen."""
        kept = event.after_kept_s = max(0.0, (self._newest - event.trigger.local_ns) / 1e9)
        self._info(
            f"trigger event {event.number}: the capture stopped {kept:.1f} s after its trigger: "
            f"its after-window holds {kept:.1f} s, not {self.plan.after_s:g} s"
        )

    @property
    def names(self) -> list[str]:
        return [i.name for i in self._interfaces]


def triggered_outputs(
    planned: Sequence[Stream],
    choice: OutputChoice,
    started: float,
    plan: TriggerPlan,
    info: Callable[[str], None],
    name: str | None = None,
    max_bytes: int | None = None,
    console: ConsoleView | None = None,
    notice: Callable[[str], None] | None = None,
) -> tuple[Outputs, TriggerRecorder]:
    """The one sink of a triggered capture (its continuous timeline goes nowhere: only the events are
    kept; --console and --live still show every packet, `notice` tells of a viewer that left) and its
    recorder, whose event files are named after what the capture's file would be."""
    if choice.file is not None:
        base = choice.file
    elif choice.directory is not None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
        base = choice.directory / f"{stamp}-{safe_name(name or merged_name(planned))}.pcapng"
    else:
        raise UsageError("--trigger writes one file per event; a stream output keeps none", "write -o FOLDER")
    recorder = TriggerRecorder(plan, base, section_comments(planned, started), info, choice.force)
    if plan.condition.kind == "df":
        from esxcap.capture.viewers import find_tshark

        tshark = find_tshark()
        if tshark is None:
            raise UsageError("--trigger df: needs tshark, which is not installed", "install tshark")
        recorder.watch = DisplayFilterWatch(tshark, plan.condition.display_filter, info)
    feed, tee = live_viewer(choice, section_comments(planned, started), notice or info)
    nowhere = open(os.devnull, "wb", buffering=0)  # noqa: SIM115 - closed with the Outputs
    sink = CaptureSink(nowhere, (), max_bytes, console, tap=recorder, tee=tee)
    return Outputs([sink] * len(planned), console=console, device=nowhere, feed=feed), recorder


def to_local_ns(shift_ns: int, offset_ns: int | None) -> int:
    """What turns a stream's written timestamps into this machine's time: minus its host's offset,
    minus the shift --align-clocks already applied."""
    return -(offset_ns or 0) - shift_ns


def tap_ring(
    sinks: Sequence[CaptureSink],
    planned: Sequence[Stream],
    started: float,
    plan: TriggerPlan,
    info: Callable[[str], None],
) -> TriggerRecorder:
    """--ring with --trigger: the ring keeps rolling in its one merged sink; the recorder taps it and
    writes its events beside the segments, named so that the ring never takes them for segments (it
    deletes only its own)."""
    [sink] = set(sinks)
    if sink.ring is None:
        raise ValueError("tap_ring() needs the one sink of a --ring capture")
    base = sink.ring.base
    recorder = TriggerRecorder(
        plan, base.with_name(f"{base.name}.pcapng"), section_comments(planned, started), info
    )
    sink.tap = recorder
    return recorder
