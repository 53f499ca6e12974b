"""Cutting a chunked byte stream into whole frames (pcap records, pcapng blocks) without copying chunks.

Chunks arrive as `bytes` (e.g. 256 KiB from an SSH channel). Frames lying wholly inside a chunk are parsed
in place and handed out as memoryviews of that chunk. Only a frame that straddles two chunks is copied,
into a small buffer, until it is complete; that buffer never holds more than one frame, and a frame's
length is checked (by the format) before any of its body is buffered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from esxcap.pcap.records import CaptureFormatError, NotPcapError, Record


class FrameReader(ABC):
    """Base of the incremental readers: `feed()` chunks, get back every record completed by them."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._consumed = 0
        """Stream offset of the first byte not yet parsed (the start of `_pending`)."""
        self._head_seen = False
        self._base = 0
        self._error: CaptureFormatError | None = None
        """Stream offset of index 0 of the buffer being parsed (for error offsets)."""
        self.packets = 0
        """Records returned so far."""
        self.bytes = 0
        """Captured packet bytes returned so far (the sum of the records' caplen)."""

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete frame kept back: what a stream cut now would lose."""
        return len(self._pending)

    @property
    def offset(self) -> int:
        """Stream offset just past the last complete frame."""
        return self._consumed

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Record]:
        """Parse another piece of the stream and return the records it completes, in stream order.

        A `bytes` chunk is not copied: returned records view into it. Other buffer types are copied once
        (the caller may reuse them). Raises NotPcapError or CorruptCaptureError at the first bad byte;
        when this chunk completed records before it, they are returned first and the error is raised by
        the next `feed()` or `finish()`, so every record before the bad spot reaches the caller.
        """
        if self._error is not None:
            raise self._error
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        out: list[Record] = []
        try:
            self._feed(data, out)
        except CaptureFormatError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def _feed(self, data: bytes, out: list[Record]) -> None:
        pos = 0
        if self._pending or not self._head_seen:
            pos = self._fill_pending(data, out)
            if self._pending or pos == len(data):
                return
        self._base = self._consumed - pos
        end = self._parse(data, pos, out)
        self._consumed += end - pos
        if end < len(data):
            self._pending += data[end:]

    def finish(self) -> int:
        """Declare the end of the stream; return the number of trailing bytes of a cut frame.

        Raises NotPcapError if the stream ended before its file header was complete (an empty stream
        included): such output is not a capture, whatever it is.
        """
        if self._error is not None:
            raise self._error
        if not self._head_seen:
            raise NotPcapError(f"the stream ended after {len(self._pending)} bytes", bytes(self._pending))
        return len(self._pending)

    def _fill_pending(self, data: bytes, out: list[Record]) -> int:
        """Complete the buffered frame from the head of `data`; parse it if whole. Returns bytes taken."""
        taken = 0
        while True:
            need = self._frame_length(self._pending)
            have = len(self._pending)
            if have >= need:
                break
            take = min(need - have, len(data) - taken)
            self._pending += data[taken : taken + take]
            taken += take
            if len(self._pending) < need:
                self._check_head(self._pending)
                return taken
        frame = bytes(self._pending)
        self._pending.clear()
        self._base = self._consumed
        end = self._parse(frame, 0, out)
        assert end == len(frame), "a complete frame must parse whole"
        self._consumed += end
        return taken

    @abstractmethod
    def _check_head(self, head: bytearray) -> None:
        """Reject a stream as early as its first bytes allow (before a whole header arrived)."""

    @abstractmethod
    def _frame_length(self, buf: bytes | bytearray) -> int:
        """Total length of the frame starting at buf[0], or the bytes needed to know it if buf is shorter.

        Validates what it reads (raising with the stream offset `self._consumed`).
        """

    @abstractmethod
    def _parse(self, data: bytes, pos: int, out: list[Record]) -> int:
        """Parse every complete frame of data[pos:]; append records; return the end of the last one."""
