"""Watch and keep: a live viewer that gets the packets of a capture being written to a file
(`--live -o FILE`).

`ViewerTee` stands in for the sink's writer: every interface, packet batch and statistics block goes
first to the file's writer (whose errors, a full disk, are the sink's), then, encoded the same way, to
the viewer's own pcapng stream: one section, the same comments, interfaces and packets. That stream is a
`ViewerFeed`: a queue that one thread drains into the viewer's stdin, so a slow viewer never holds up
the file. When the viewer goes away (its window closed, tshark ended) or falls more than MAX_BEHIND
bytes behind, it gets nothing more and `notice` says so once; the file capture goes on to its normal stop.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol, cast

from esxcap.pcap import Interface, InterfaceStatistics, PcapngWriter

MAX_BEHIND = 64 << 20
"""Bytes the viewer may have still to read before it is left behind (the file capture is not slowed)."""
CLOSE_WAIT_S = 5.0
"""How long closing waits for the viewer to read what it was sent, before leaving it."""


class ViewerFeed(io.RawIOBase):
    """A write-only stream into a viewer's stdin (closed here once the viewer has read everything) that
    never blocks and never fails: what the viewer cannot take is left out, and `notice` is told once."""

    def __init__(
        self, viewer: IO[bytes], notice: Callable[[str], None], max_behind: int = MAX_BEHIND
    ) -> None:
        super().__init__()
        self._viewer, self._notice, self._max_behind = viewer, notice, max_behind
        self._pending: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._behind = 0
        self._lock = threading.Lock()
        self.feeding = True
        """False once the viewer gets no more (it went away or fell behind, or the feed was closed)."""
        self.gone: str | None = None
        """Why the viewer gets no more packets; None while it gets them."""
        self._told = False
        self._thread = threading.Thread(target=self._feed_viewer, name="viewer-feed", daemon=True)
        self._thread.start()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.feeding:
            copy = bytes(data)
            with self._lock:
                if self.gone is None and self._behind + len(copy) > self._max_behind:
                    self.gone = f"the viewer fell more than {self._max_behind >> 20} MiB behind"
                if self.gone is None:
                    self._behind += len(copy)
                    self._pending.put(copy)
                else:
                    self._stop()
            if not self.feeding:
                self._tell("it gets no more packets; the capture goes on into the file")
        return len(data)

    def _stop(self) -> None:
        self.feeding = False
        self._pending.put(None)

    def _tell(self, what_now: str) -> None:
        if self.gone is not None and not self._told:
            self._told = True
            self._notice(f"{self.gone}: {what_now}")

    def close(self) -> None:
        """Let the viewer read what it was sent (up to CLOSE_WAIT_S), then end its input."""
        if self.closed:
            return
        super().close()
        with self._lock:
            if self.feeding:
                self._stop()
        self._thread.join(CLOSE_WAIT_S)
        if self._thread.is_alive() and self.gone is None:
            self.gone = f"the viewer did not read the end of the capture within {CLOSE_WAIT_S:.0f} s"
        self._tell("the file holds every packet")

    def _feed_viewer(self) -> None:
        fd = self._viewer.fileno()
        try:
            while (chunk := self._pending.get()) is not None:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                with self._lock:
                    self._behind -= len(chunk)
        except OSError:
            with self._lock:
                self.gone = self.gone or "the viewer closed"
        finally:
            with contextlib.suppress(OSError):
                self._viewer.close()


class BlockWriter(Protocol):
    """What a sink writes its file through: a PcapngWriter, or anything that writes the same blocks."""

    def add_interface(self, interface: Interface) -> int: ...

    def write_blocks(self, parts: Sequence[bytes | memoryview], packets: int) -> None: ...

    def write_statistics(self, stats: InterfaceStatistics) -> None: ...


class ViewerTee(PcapngWriter):
    """The writer of a capture file (`primary`) that also writes everything to a viewer (`feed`): the
    file first, then the viewer's copy, written by this writer into the feed."""

    def __init__(self, primary: BlockWriter, feed: ViewerFeed, comments: Sequence[str]) -> None:
        super().__init__(cast(IO[bytes], feed), comments=comments)
        self._primary, self.feed = primary, feed

    def add_interface(self, interface: Interface) -> int:
        index = self._primary.add_interface(interface)
        super().add_interface(interface)
        return index

    def write_blocks(self, parts: Sequence[bytes | memoryview], packets: int) -> None:
        self._primary.write_blocks(parts, packets)
        if self.feed.feeding:
            super().write_blocks(parts, packets)

    def write_statistics(self, stats: InterfaceStatistics) -> None:
        self._primary.write_statistics(stats)
        super().write_statistics(stats)
