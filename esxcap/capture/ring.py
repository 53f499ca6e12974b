"""`--ring`: a capture kept as a rolling set of standalone pcapng segments on the workstation.

A `Ring` takes the sink's Enhanced Packet Blocks and cuts them into segments at block boundaries (no
packet lost or written twice): a new segment starts when the open one would pass `filesize`, or when a
packet's time passes the open segment's `duration` (from its first packet) or the next multiple of
`interval` (wall-clock aligned, UTC). Each segment is a `SegmentWriter`: its own section header, the
same interfaces with their names and descriptions, its own statistics, written as a private `.part` and
given its name `<base>_00001_<UTC of its first packet>.pcapng` when closed. With `files:K` the oldest
segment is deleted as the K+1th begins, so the ring holds at most K files (K x filesize on disk).
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from esxcap.capture.files import create_part, cut_to_whole_blocks, place
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, CaptureFormatError, Interface, InterfaceStatistics, PcapngWriter
from esxcap.pcap.pcapng import TIMESTAMP_LIMIT
from esxcap.plan.sizes import size_in_bytes

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
"""Write errors that mean "no more room": a full disk, a file-size limit, a quota."""
FREE_SPACE_MARGIN = 1.1
"""A ring starts only when its folder has K x filesize x this much free space."""
SEGMENT_NAME = re.compile(r"^(?P<base>.+)_(?P<number>\d{5,})_(?P<utc>\d{8}T\d{6}Z)\.pcapng$")
_EPB_HEAD = struct.Struct("<IIIII")
"""An Enhanced Packet Block's type, length, interface and timestamp (high, low words)."""
EPB_TYPE = 6
STATISTICS_ROOM = 160
"""Bytes kept free in a segment for each interface's statistics block, written when it closes."""


@dataclass(frozen=True)
class RingSpec:
    """What `--ring files:K,filesize:SIZE,duration:S,interval:S` asks for (any of them, at least one of
    filesize, duration or interval)."""

    files: int | None = None
    filesize: int | None = None
    duration: float | None = None
    interval: float | None = None

    @property
    def bound(self) -> int | None:
        """The most the ring holds on disk (K x filesize), when both are given."""
        return self.files * self.filesize if self.files and self.filesize else None


RING_EXAMPLE = "e.g. --ring files:5,filesize:20M or --ring interval:60"


def parse_ring(text: str) -> RingSpec:
    """The spec of `--ring TEXT` (comma-separated `key:value`); a clear UsageError for anything else."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition(":")
        if not sep or key not in ("files", "filesize", "duration", "interval") or key in values:
            raise UsageError(
                f"--ring {text}: {item!r} is not one of files:K, filesize:SIZE, duration:S, interval:S "
                "(each once)",
                RING_EXAMPLE,
            )
        values[key] = value.strip()
    files = filesize = None
    duration = interval = None
    if "files" in values:
        if not values["files"].isdigit() or not 1 <= int(values["files"]) <= 100_000:
            raise UsageError(
                f"--ring files:{values['files']}: a number of segments, 1 to 100000", RING_EXAMPLE
            )
        files = int(values["files"])
    if "filesize" in values:
        filesize = size_in_bytes(values["filesize"])
        if filesize is None or filesize < 4096:
            raise UsageError(
                f"--ring filesize:{values['filesize']}: a size of at least 4K (K, M, G: powers of 1024)",
                RING_EXAMPLE,
            )
    for key in ("duration", "interval"):
        if key in values:
            try:
                seconds = float(values[key])
            except ValueError:
                seconds = 0.0
            if not 1 <= seconds <= 366 * 24 * 3600:
                raise UsageError(f"--ring {key}:{values[key]}: seconds, at least 1", RING_EXAMPLE)
            duration, interval = (seconds, interval) if key == "duration" else (duration, seconds)
    if filesize is None and duration is None and interval is None:
        raise UsageError(f"--ring {text}: says when to start a new segment", RING_EXAMPLE)
    if duration is not None and interval is not None:
        raise UsageError(
            f"--ring {text}: duration and interval both time segments", "keep one of duration: or interval:"
        )
    return RingSpec(files, filesize, duration, interval)


def check_free_space(folder: Path, spec: RingSpec, rings: int = 1) -> None:
    """Refuse a ring whose bound (x `rings`, x FREE_SPACE_MARGIN) does not fit in `folder`'s free space."""
    bound = spec.bound
    if bound is None:
        return
    needed = int(bound * rings * FREE_SPACE_MARGIN)
    free = shutil.disk_usage(folder).free
    if free < needed:
        rings_text = f" for {rings} rings" if rings > 1 else ""
        raise UsageError(
            f"{folder} has {_mib(free)} free; the ring needs {_mib(needed)}{rings_text} "
            f"({spec.files} x {_mib(spec.filesize or 0)} + 10%)",
            "free some space there, choose another folder with -o, or ask for fewer or smaller segments",
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def ring_base(file: Path) -> Path:
    """The base a ring's segments are named after: the capture file's path without `.pcapng`/`.pcap`."""
    return file.with_name(file.stem if file.suffix in (".pcapng", ".pcap") else file.name)


def utc_stamp(ts_ns: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts_ns // 1_000_000_000))


@dataclass
class Segment:
    """A closed segment: its file and what it holds."""

    path: Path
    packets: int
    size: int
    first_ns: int | None
    last_ns: int | None


@dataclass
class SegmentWriter:
    """One standalone pcapng segment: created as a private `.part` with its section header and
    `interfaces`, fed whole Enhanced Packet Blocks, closed with per-interface statistics and named."""

    path: Path
    comments: Sequence[str]
    interfaces: Sequence[Interface]
    packets: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    _packets: list[int] = field(default_factory=list)
    """Packets of each interface in this segment; the first and last timestamp of each below."""
    _first: dict[int, int] = field(default_factory=dict)
    _last: dict[int, int] = field(default_factory=dict)
    _good: int = 0
    """The file's length after the last write that went through (whole blocks)."""
    _broken: bool = False
    """A write failed: the file may end inside a block, and nothing more is written to it."""

    def __post_init__(self) -> None:
        self.part, self._file = create_part(self.path)
        self._writer = PcapngWriter(self._file, comments=tuple(self.comments))
        for interface in self.interfaces:
            self.add_interface(interface)

    @property
    def size(self) -> int:
        """The segment's length once closed: what is written and its statistics blocks."""
        return self._file.tell() + STATISTICS_ROOM * len(self._packets)

    def add_interface(self, interface: Interface) -> None:
        self._writer.add_interface(interface)
        self._packets.append(0)
        self._good = self._file.tell()

    def write(self, blocks: memoryview, ifaces: list[int], stamps: list[int]) -> None:
        """Append whole blocks holding packets of these interfaces and timestamps (index for index)."""
        try:
            self._writer.write_blocks([blocks], len(ifaces))
        except OSError:
            self._broken = True
            raise
        self._good = self._file.tell()
        self.packets += len(ifaces)
        first, last = min(stamps), max(stamps)
        self.first_ns = first if self.first_ns is None else min(first, self.first_ns)
        self.last_ns = last if self.last_ns is None else max(last, self.last_ns)
        for iface, count in Counter(ifaces).items():
            self._packets[iface] += count
        for iface, ts in dict(zip(reversed(ifaces), reversed(stamps), strict=True)).items():
            self._first.setdefault(iface, ts)
        self._last.update(zip(ifaces, stamps, strict=True))

    def close(self, end_ns: int, totals: Sequence[InterfaceStatistics] = ()) -> Segment | None:
        """Write each interface's statistics for this segment (drop counts from `totals`, which cover
        the whole capture), close and name it; after a failed write, cut back to its last whole block.
        A segment left without a packet by a failed write is removed (None)."""
        dropped = {s.interface: s.dropped for s in totals}
        failed = self._broken
        try:
            for iface, packets in enumerate([] if failed else self._packets):
                self._writer.write_statistics(
                    InterfaceStatistics(
                        interface=iface,
                        ts_ns=end_ns,
                        starttime_ns=self._first.get(iface),
                        endtime_ns=self._last.get(iface),
                        received=packets,
                        dropped=dropped.get(iface),
                        comments=("ifdrop counts the whole capture",) if dropped.get(iface) else (),
                    )
                )
            self._file.flush()
        except OSError:
            failed = True
        finally:
            with contextlib.suppress(OSError):
                self._file.close()
        if failed:
            cut_to_whole_blocks(self.part, [self._good])
            self._recount()
            if not self.packets:
                with contextlib.suppress(OSError):
                    self.part.unlink()
                return None
        size = self.part.stat().st_size
        return Segment(place(self.part, self.path), self.packets, size, self.first_ns, self.last_ns)

    def _recount(self) -> None:
        """What the segment holds once cut back, as a reader sees it: the write that failed may still
        have put whole blocks in (a disk filling inside the segment's first write keeps what fitted)."""
        stamps: list[int] = []
        with contextlib.suppress(OSError, CaptureFormatError), self.part.open("rb") as handle:
            stamps.extend(record.ts_ns for record in CaptureFile(handle, self.part.name))
        self.packets = len(stamps)
        self.first_ns = min(stamps, default=None)
        self.last_ns = max(stamps, default=None)


class Ring:
    """The segments of one ring, duck-typed as the PcapngWriter a CaptureSink writes to: interfaces,
    whole Enhanced Packet Blocks, and the statistics written at the end (which close the last segment)."""

    def __init__(self, base: Path, spec: RingSpec, comments: Sequence[str]) -> None:
        self.base = base
        self.spec = spec
        self.comments = tuple(comments)
        self.interfaces: list[Interface] = []
        self.kept: deque[Segment] = deque()
        self.rotated_out = 0
        self._open: SegmentWriter | None = None
        self._number = 0
        self._ends_at: int | None = None
        self._totals: list[InterfaceStatistics] = []

    @property
    def folder(self) -> Path:
        return self.base.parent

    def add_interface(self, interface: Interface) -> int:
        self.interfaces.append(interface)
        if self._open is not None:
            self._open.add_interface(interface)
        return len(self.interfaces) - 1

    def write_blocks(self, parts: Sequence[bytes | memoryview], packets: int) -> None:
        """Append whole blocks (`parts` joined hold `packets` EPBs), starting new segments between them:
        a segment's first packet always goes in (one larger than filesize too)."""
        data = memoryview(parts[0] if len(parts) == 1 else b"".join(parts))
        unpack, end = _EPB_HEAD.unpack_from, len(data)
        start = pos = 0
        ifaces: list[int] = []
        stamps: list[int] = []
        room, ends_at = self._limits()
        opened = self._open
        while pos + 20 <= end:
            block_type, total, iface, high, low = unpack(data, pos)
            if block_type == EPB_TYPE:
                ts = high << 32 | low
                if (pos + total - start > room or ts >= ends_at) and (
                    ifaces or opened is None or opened.packets
                ):
                    if opened is not None and ifaces:
                        opened.write(data[start:pos], ifaces, stamps)
                        ifaces, stamps, start = [], [], pos
                    opened = self._rotate(ts)
                    room, ends_at = self._limits()
                ifaces.append(iface)
                stamps.append(ts)
            pos += total
        if opened is not None and ifaces:
            opened.write(data[start:pos], ifaces, stamps)

    def _limits(self) -> tuple[int, int]:
        """(bytes the open segment may still take, the time from which packets go to the next one)."""
        if self._open is None:
            return 0, 0
        size = self.spec.filesize
        room = sys.maxsize if size is None else size - self._open.size
        return room, TIMESTAMP_LIMIT if self._ends_at is None else self._ends_at

    def _rotate(self, ts: int) -> SegmentWriter:
        """Close the open segment, make room under files:K and open the next one at `ts`."""
        if self._open is not None:
            self._close_open(ts)
        limit = self.spec.files
        while limit is not None and self.kept and len(self.kept) >= limit:
            oldest = self.kept.popleft()
            with contextlib.suppress(FileNotFoundError):
                oldest.path.unlink()
            self.rotated_out += 1
        self._number += 1
        path = self.base.with_name(f"{self.base.name}_{self._number:05d}_{utc_stamp(ts)}.pcapng")
        self._open = SegmentWriter(path, self.comments, self.interfaces)
        self._ends_at = self._segment_end(ts)
        return self._open

    def _segment_end(self, ts: int) -> int | None:
        if self.spec.duration is not None:
            return ts + int(self.spec.duration * 1e9)
        if self.spec.interval is not None:
            step = int(self.spec.interval * 1e9)
            return (ts // step + 1) * step
        return None

    def _close_open(self, end_ns: int) -> None:
        segment, self._open = self._open, None
        if segment is not None:
            closed = segment.close(end_ns, self._totals)
            if closed is not None:
                self.kept.append(closed)

    def write_statistics(self, stats: InterfaceStatistics) -> None:
        """The capture's statistics of one interface: kept for the last segment's drop counts."""
        self._totals.append(stats)

    def flush(self) -> None:
        """The capture is over: close the last segment (a ring that saw no packet gets one empty segment,
        so it still leaves a file naming its interfaces)."""
        end_ns = max((s.ts_ns for s in self._totals), default=time.time_ns())
        if self._open is None and not self.kept:
            self._rotate(end_ns)
        self._close_open(end_ns)

    def close(self) -> None:
        """After a failed write: close the open segment with what it holds."""
        if self._open is not None:
            self._close_open(time.time_ns())

    @property
    def segments(self) -> list[Segment]:
        return list(self.kept)


def ring_summary(ring: Ring) -> str:
    """One line on what a ring kept: how many segments, which, and how many were rotated out."""
    kept = ring.segments
    if not kept:
        return f"--ring: no segment kept for {ring.base}"
    names = kept[0].path.name if len(kept) == 1 else f"{kept[0].path.name} .. {kept[-1].path.name}"
    rotated = f"; {ring.rotated_out} older rotated out" if ring.rotated_out else ""
    return f"--ring: {len(kept)} segments kept in {ring.folder} ({names}){rotated}"
