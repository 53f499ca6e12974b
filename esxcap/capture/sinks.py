"""Where captured packets go: a pcapng file (a private `.part` unique to the run, given its name when done
without replacing anything unless forced: esxcap.capture.files) or a
byte stream (stdout, a viewer's stdin, a FIFO or character device named with -o, written straight into),
with one interface per stream and packets in time order.

A sink fed by one stream writes its packets straight through (one pktcap-uw stream is already in time
order), from PcapngTranscoder batches or records. A sink fed by several streams orders them in a
BlockWindow: each batch is encoded once into one buffer, its blocks are held (views into that buffer,
with their timestamps) until the newest packet is REORDER_WINDOW_NS (1 s) newer, or until the window's
byte bound (1 MiB per stream, 16 MiB at least) is reached, then written oldest first with one gathered
write. A packet later than what was already written is still written (never dropped) and counted as late.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from esxcap.capture.files import create_part, cut_to_whole_blocks, place
from esxcap.capture.ring import DISK_FULL_ERRNOS, Ring
from esxcap.capture.tee import BlockWriter
from esxcap.errors import HostError, UsageError
from esxcap.pcap import (
    BlockWindow,
    CaptureFile,
    CaptureFormatError,
    EpbBatch,
    Interface,
    InterfaceStatistics,
    PcapngWriter,
    Record,
    encode_epb,
    epb_records,
)

REORDER_WINDOW_NS = 1_000_000_000
REORDER_MAX_BYTES = 16 << 20
REORDER_BYTES_PER_STREAM = 1 << 20
"""What the window of one sink may hold: REORDER_BYTES_PER_STREAM for each stream feeding it, at least
REORDER_MAX_BYTES, whatever their rate (200 streams: 200 MiB at most, 1 MiB each)."""
HELD_OVERHEAD = 256
"""Bytes a held packet costs beside its block (its view, timestamp and list slots), counted in the bound."""
BOUNDARIES_KEPT = 64
"""File offsets after the last writes (all block boundaries), kept to find the last whole block fast."""

PacketListener = Callable[[str, Record], None]
"""Called with (interface name, record) for every packet written, in file order (console output)."""


class BlockTap(Protocol):
    """Sees a sink's packets as encoded blocks (a triggered capture: esxcap.capture.triggered): each
    stream's as it arrives (`scan`), then all of them in time order as they are written (`take`)."""

    def add_interface(self, iface: int, interface: Interface) -> None: ...

    def scan(self, iface: int, stamps: Sequence[int], blocks: Sequence[bytes | memoryview]) -> None: ...

    def take(self, blocks: Sequence[bytes | memoryview]) -> None: ...


class OutputError(HostError):
    """Writing a capture file failed (disk full, permissions); what was written stays readable."""


class DiskFull(OutputError):
    """The disk (or the file-size limit, or the quota) is full: the capture stops, its files complete."""


class ReaderClosed(OutputError):
    """The reader of a stream output (Wireshark's FIFO, a pipe) closed it: the capture is over, not failed."""


@dataclass
class _StreamCounters:
    name: str
    received: int = 0
    dropped: int | None = None
    first_ns: int | None = None
    last_ns: int | None = None


def stream_file_kind(path: Path) -> str | None:
    """The kind ("FIFO" or "character device") when `path` is one: written straight into, never replaced.
    None when it is missing, a regular file or a folder. Any other special file (block device, socket) is
    refused: a capture never replaces or writes over it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    raise UsageError(
        f"{path} is neither a file nor a FIFO nor a character device; it is left alone",
        "write to a file, a folder, a FIFO or -",
    )


def open_stream_file(path: Path) -> IO[bytes]:
    """Open a FIFO or character device for writing as it is: no `.part`, no truncation, no chmod (opening
    a FIFO waits for its reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror or exc}", "check who may write to it") from exc
    return os.fdopen(fd, "wb", buffering=0)


class CopyingStream(io.RawIOBase):
    """A stream output (FIFO, device) that also keeps a file copy of everything written to it: each
    write goes to the copy first (`COPY.part`, 0600), and `close` renames the copy to its name."""

    def __init__(self, stream: IO[bytes], copy: Path) -> None:
        super().__init__()
        self._stream, self._copy_path = stream, copy
        try:
            self._part, self._copy = create_part(copy)
        except OSError as exc:
            raise OutputError(
                f"cannot write {copy}: {exc.strerror or exc}", "choose another file to save to"
            ) from exc

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._copy.write(data)
        return self._stream.write(data)

    def flush(self) -> None:
        self._copy.flush()
        self._stream.flush()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        with contextlib.suppress(OSError):
            self._stream.close()
        self._copy.close()
        place(self._part, self._copy_path, force=True)


class CaptureSink:
    """One pcapng output shared by one or more streams.

    Every stream that will feed the sink is announced with `expect_stream()` before any of them pushes
    packets (StreamRun does this): the sink then knows whether it may write straight through. A stream
    added without being announced turns on the window from then on.
    """

    def __init__(
        self,
        target: Path | IO[bytes] | Ring,
        comments: Sequence[str],
        max_bytes: int | None = None,
        listener: PacketListener | None = None,
        flush_each: bool = False,
        force: bool = False,
        tap: BlockTap | None = None,
        tee: Callable[[BlockWriter], PcapngWriter] | None = None,
    ) -> None:
        self.path: Path | None = None
        self.tap = tap
        self.part: Path | None = None
        self._force = force
        self.ring = target if isinstance(target, Ring) else None
        self._file: IO[bytes] | Ring
        self._writer: PcapngWriter | Ring
        if isinstance(target, Ring):
            self._file = self._writer = target  # the ring writes its own segments
        else:
            if isinstance(target, Path):
                self.path = target
                self.part, target = create_part(target)
            self._file = target
            self._writer = PcapngWriter(target, comments=tuple(comments))
        if tee is not None:
            self._writer = tee(self._writer)  # e.g. a ViewerTee: a viewer also gets what is written
        self._window = BlockWindow(REORDER_WINDOW_NS, REORDER_MAX_BYTES, HELD_OVERHEAD)
        self._streams: list[_StreamCounters] = []
        self._expected = 0
        self.max_bytes = max_bytes
        self.packet_bytes = 0
        self.limit_reached = False
        self._listener = listener
        self.listener_gone = False
        """The listener's reader went away (ReaderClosed from it, e.g. `--console | head`): the packets are
        still written, the listener is no longer called."""
        self._flush_each = flush_each
        self._failed: OutputError | None = None
        self._boundaries: deque[int] = deque(maxlen=BOUNDARIES_KEPT)
        self.written: dict[int, tuple[int, int]] | None = None
        """After a failed write: (packets, packet bytes) per interface as the file holds them."""

    @property
    def late(self) -> int:
        return self._window.late

    @property
    def held_bytes(self) -> int:
        """What the reorder window holds now (blocks plus HELD_OVERHEAD per packet)."""
        return self._window.held_bytes

    def expect_stream(self) -> None:
        """Announce one more stream that will feed this sink."""
        self._expected += 1
        self._size_window()

    def _size_window(self) -> None:
        streams = max(self._expected, len(self._streams))
        self._window.max_bytes = max(REORDER_MAX_BYTES, streams * REORDER_BYTES_PER_STREAM)

    @property
    def writes_through(self) -> bool:
        """True while a single stream feeds this sink (and no tap needs whole blocks): its packets are
        written as they come."""
        return self.tap is None and max(self._expected, len(self._streams)) <= 1

    @property
    def wants_keys(self) -> bool:
        """True when batches must carry keys (PcapngTranscoder.transcode(keys=True)): several streams."""
        return not self.writes_through

    @property
    def room(self) -> int | None:
        """Packet bytes still allowed under max_bytes (None: no limit; -1 once it was reached: no more
        packets are taken, not even empty ones)."""
        if self.limit_reached:
            return -1
        return None if self.max_bytes is None else max(0, self.max_bytes - self.packet_bytes)

    def add_stream(self, interface: Interface) -> int:
        """Register one stream's interface; returns its interface id."""
        self._streams.append(_StreamCounters(interface.name))
        self._size_window()
        iface = self._guard(lambda: self._writer.add_interface(interface))
        if self.tap is not None:
            self.tap.add_interface(iface, interface)
        return iface

    def push(self, iface: int, records: Sequence[Record]) -> int:
        """Take a stream's records (written at once, or queued in the window when several streams feed
        this sink); returns how many were taken, fewer than given once max_bytes is reached."""
        if self.limit_reached:
            return 0
        limit, total, taken = self.max_bytes, self.packet_bytes, len(records)
        if limit is not None:
            for index, record in enumerate(records):
                size = len(record.data)
                if total + size > limit:
                    self.limit_reached = True
                    taken = index
                    break
                total += size
        if taken < len(records):
            records = records[:taken]
        if not taken:
            return 0
        if limit is None:
            total += sum(len(record.data) for record in records)
        self.packet_bytes = total
        self._count(iface, taken, records[0].ts_ns, records[-1].ts_ns)
        blocks: list[bytes | memoryview] = [
            encode_epb(iface, r.ts_ns, r.data, r.origlen, r.comments) for r in records
        ]
        if not self.writes_through:
            stamps = [record.ts_ns for record in records]
            if self.tap is not None:
                self.tap.scan(iface, stamps, blocks)
            blocks = self._window.push(iface, stamps, blocks)
        self._write(blocks, len(blocks))
        return taken

    def write_batch(self, iface: int, batch: EpbBatch) -> int:
        """Write one stream's transcoded packets (straight through, or ordered in the window when several
        streams feed this sink: then the batch must carry keys); returns the number of packets."""
        if self._failed:
            raise self._failed
        self.packet_bytes += batch.bytes
        self.limit_reached = self.limit_reached or batch.limit_reached
        if not batch.packets or batch.first_ns is None or batch.last_ns is None:
            return 0
        self._count(iface, batch.packets, batch.first_ns, batch.last_ns)
        if self.writes_through:
            self._write(batch.parts, batch.packets)
        elif batch.stamps is None:
            raise ValueError("a sink of several streams takes batches transcoded with keys=True")
        else:
            blocks = batch.blocks()
            if self.tap is not None:
                self.tap.scan(iface, batch.stamps, blocks)
            blocks = self._window.push(iface, batch.stamps, blocks)
            self._write(blocks, len(blocks))
        return batch.packets

    def _count(self, iface: int, packets: int, first_ns: int, last_ns: int) -> None:
        counters = self._streams[iface]
        counters.received += packets
        if counters.first_ns is None:
            counters.first_ns = first_ns
        counters.last_ns = last_ns

    def set_dropped(self, iface: int, dropped: int | None) -> None:
        self._streams[iface].dropped = dropped

    def _write(self, parts: Sequence[bytes | memoryview], packets: int) -> None:
        """Append `packets` whole Enhanced Packet Blocks held in `parts`; the listener sees each."""
        if self._failed:
            raise self._failed
        if not parts:
            return

        def write() -> None:
            if self.tap is not None:
                self.tap.take(parts)
            self._writer.write_blocks(parts, packets)
            if self._listener is not None:
                names = [s.name for s in self._streams]
                try:
                    for record in epb_records([b"".join(parts)]):
                        self._listener(names[record.interface], record)
                except ReaderClosed:
                    self._listener, self.listener_gone = None, True
            if self._flush_each:
                self._file.flush()

        self._guard(write)

    def _guard(self, action: Callable[[], int | None]) -> int:
        try:
            result = action() or 0
            if self.part is not None and not isinstance(self._file, Ring):
                self._boundaries.append(self._file.tell())
            return result
        except BrokenPipeError as exc:
            self._failed = ReaderClosed("the reader closed the output stream", None)
            raise self._failed from exc
        except OSError as exc:
            where = self.path or (self.ring.folder if self.ring else "the output stream")
            error = DiskFull if exc.errno in DISK_FULL_ERRNOS else OutputError
            self._failed = error(
                f"cannot write {where}: {exc.strerror or exc}",
                "free some space or choose another place with -o; what was written so far is kept",
            )
            raise self._failed from exc

    def finish(self, end_ns: int) -> Path | None:
        """Write what the window still holds and per-stream statistics, close, give the `.part` its name
        (a numbered one if the name was taken meanwhile, unless forced) and return that name (a ring's
        base, its segments closed)."""
        try:
            if not self._failed:
                held = self._window.flush()
                self._write(held, len(held))
                for iface, s in enumerate(self._streams):
                    self._writer.write_statistics(
                        InterfaceStatistics(
                            interface=iface,
                            ts_ns=end_ns,
                            starttime_ns=s.first_ns,
                            endtime_ns=s.last_ns,
                            received=s.received,
                            dropped=s.dropped,
                        )
                    )
                self._file.flush()
        except (OSError, ReaderClosed):
            pass  # a failed write is kept in self._failed; a reader that left has read whole blocks
        finally:
            if self.ring is not None:
                self.ring.close()
            if self.part:
                with contextlib.suppress(OSError):
                    self._file.close()
                if self._failed:
                    cut_to_whole_blocks(self.part, self._boundaries)
                    self.written = _count_packets(self.part)
        if self.part and self.path:
            self.path = place(self.part, self.path, self._force)
        return self.ring.base if self.ring is not None else self.path


def _count_packets(path: Path) -> dict[int, tuple[int, int]]:
    """(packets, packet bytes) per interface of a capture file, as a reader sees it."""
    counts: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError, CaptureFormatError), path.open("rb") as handle:
        for record in CaptureFile(handle, path.name):
            packets, size = counts.get(record.interface, (0, 0))
            counts[record.interface] = (packets + 1, size + len(record.data))
    return counts
