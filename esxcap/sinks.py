"""Where captured packets go: a pcapng file (written as `NAME.part`, mode 0600, renamed when done) or a
byte stream (stdout, a viewer's stdin), with one interface per stream and packets in time order.

Streams arrive interleaved; a reorder window (REORDER_WINDOW_NS, 1 s) releases packets in timestamp order
with memory bounded by what one second of traffic holds. A packet later than the window is still written
(never dropped) and counted as late.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from esxcap.errors import HostError
from esxcap.pcap import Interface, InterfaceStatistics, PcapngWriter, Record, ReorderWindow

REORDER_WINDOW_NS = 1_000_000_000
FILE_MODE = 0o600
WRITE_BUFFER = 1 << 20

PacketListener = Callable[[str, Record], None]
"""Called with (interface name, record) for every packet written, in file order (console output)."""


class OutputError(HostError):
    """Writing a capture file failed (disk full, permissions); what was written stays readable."""


@dataclass
class _StreamCounters:
    name: str
    received: int = 0
    dropped: int | None = None
    first_ns: int | None = None
    last_ns: int | None = None


def create_private(path: Path) -> IO[bytes]:
    """Open `path` for writing, created 0600 (captures hold other people's traffic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb", buffering=WRITE_BUFFER)


class CaptureSink:
    """One pcapng output shared by several streams."""

    def __init__(
        self,
        target: Path | IO[bytes],
        comments: Sequence[str],
        max_bytes: int | None = None,
        listener: PacketListener | None = None,
        flush_each: bool = False,
    ) -> None:
        self.path: Path | None = None
        self.part: Path | None = None
        if isinstance(target, Path):
            self.path, self.part = target, target.with_name(target.name + ".part")
            self._file = create_private(self.part)
        else:
            self._file = target
        self._writer = PcapngWriter(self._file, comments=tuple(comments))
        self._window: ReorderWindow[tuple[int, Record]] = ReorderWindow(REORDER_WINDOW_NS)
        self._streams: list[_StreamCounters] = []
        self.max_bytes = max_bytes
        self.packet_bytes = 0
        self.limit_reached = False
        self._listener = listener
        self._flush_each = flush_each
        self._failed: OutputError | None = None

    @property
    def late(self) -> int:
        return self._window.late

    def add_stream(self, interface: Interface) -> int:
        """Register one stream's interface; returns its interface id."""
        self._streams.append(_StreamCounters(interface.name))
        return self._guard(lambda: self._writer.add_interface(interface))

    def push(self, iface: int, records: Sequence[Record]) -> int:
        """Queue a stream's records (what the window releases is written); returns how many were taken,
        fewer than given once max_bytes is reached."""
        counters = self._streams[iface]
        released: list[tuple[int, Record]] = []
        window_push = self._window.push
        limit, total, taken = self.max_bytes, self.packet_bytes, 0
        for record in records:
            size = len(record.data)
            if limit is not None and total + size > limit:
                self.limit_reached = True
                break
            total += size
            taken += 1
            released += window_push(record.ts_ns, (iface, record))
        self.packet_bytes = total
        if taken:
            counters.received += taken
            if counters.first_ns is None:
                counters.first_ns = records[0].ts_ns
            counters.last_ns = records[taken - 1].ts_ns
        self._write(released)
        return taken

    def set_dropped(self, iface: int, dropped: int | None) -> None:
        self._streams[iface].dropped = dropped

    def _write(self, items: Sequence[tuple[int, Record]]) -> None:
        if not items or self._failed:
            return

        def write() -> None:
            listener = self._listener
            if listener is None:
                self._writer.write_records(items)
            else:
                for iface, record in items:
                    self._writer.write_record(record, iface)
                    listener(self._streams[iface].name, record)
            if self._flush_each:
                self._file.flush()

        self._guard(write)

    def _guard(self, action: Callable[[], int | None]) -> int:
        try:
            return action() or 0
        except OSError as exc:
            where = self.part or "the output stream"
            self._failed = OutputError(
                f"cannot write {where}: {exc.strerror or exc}",
                "free some space or choose another place with -o; what was written so far is kept",
            )
            raise self._failed from exc

    def finish(self, end_ns: int) -> Path | None:
        """Write what the window still holds and per-stream statistics, close, rename `.part` to the name."""
        try:
            if not self._failed:
                self._write(self._window.flush())
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
        except OSError:
            pass
        finally:
            if self.part:
                with contextlib.suppress(OSError):
                    self._file.close()
        if self.part and self.path:
            self.part.replace(self.path)
        return self.path
