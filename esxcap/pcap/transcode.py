"""Classic pcap to pcapng in one pass: the fast path of a stream written alone to its file.

`PcapngTranscoder` is a PcapStreamReader that can also turn each chunk straight into the Enhanced Packet
Blocks `PcapngWriter.write_records` would write for its records (the same bytes), without building a
Record per packet: one struct unpack, one struct pack and one slice per packet. The batch is a list of
parts (block heads and views into the chunk) that `PcapngWriter.write_blocks` gathers with one writev:
packet bytes are not copied on the way to the file.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field

from esxcap.pcap.classic import RECORD_HEADER_LEN, PcapStreamReader
from esxcap.pcap.pcapng import EPB_TYPE
from esxcap.pcap.records import CaptureFormatError, Record

_HEAD = struct.Struct("<IIIIIII")
"""EPB header: type, total length, interface, timestamp high and low words, caplen, origlen."""
_TAIL_HEAD = tuple(struct.Struct(f"<{pad}xIIIIIIII") for pad in range(4))
"""The previous block's padding and closing length, then the next block's header, in one pack."""
_TAIL = tuple(struct.Struct(f"<{pad}xI") for pad in range(4))


@dataclass(frozen=True)
class EpbBatch:
    """Enhanced Packet Blocks encoded from one chunk (in order, as parts to write), and what they hold."""

    parts: list[bytes | memoryview]
    packets: int
    bytes: int
    """Captured packet bytes (the sum of caplen)."""
    first_ns: int | None
    last_ns: int | None
    limit_reached: bool
    """A packet did not fit in the byte budget: it and every packet after it were left out."""


@dataclass
class _Job:
    interface: int
    room: int
    parts: list[bytes | memoryview] = field(default_factory=list)
    tail: int = -1
    """Padding of the last block encoded, whose closing length is still to be written (-1: none)."""
    total: int = 0
    packets: int = 0
    bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    limit_reached: bool = False

    def batch(self) -> EpbBatch:
        if self.tail >= 0:
            self.parts.append(_TAIL[self.tail].pack(self.total))
            self.tail = -1
        return EpbBatch(self.parts, self.packets, self.bytes, self.first_ns, self.last_ns, self.limit_reached)


class PcapngTranscoder(PcapStreamReader):
    """A PcapStreamReader whose `transcode()` returns pcapng blocks instead of records.

    `feed()` works as in PcapStreamReader (use it until `header` is known, e.g. to add the interface);
    both may be mixed on one stream. Format errors behave as in `feed()`: raised at once when the chunk
    completed no packet, else on the next call, after the packets before the bad spot were returned.
    """

    def __init__(self) -> None:
        super().__init__()
        self._job: _Job | None = None

    def transcode(
        self, chunk: bytes | bytearray | memoryview, interface: int, room: int | None = None
    ) -> EpbBatch:
        """Encode every record `chunk` completes as a packet of `interface`, while the sum of their caplen
        stays within `room` bytes (None: no budget; negative: none fits); the record that does not fit and
        every record after it are read and left out."""
        if self.header is None:
            raise ValueError("transcode() needs the stream's header: feed() the first bytes")
        if self._error is not None:
            raise self._error
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        job = self._job = _Job(interface, sys.maxsize if room is None else room)
        unused: list[Record] = []
        try:
            self._feed(data, unused)
        except CaptureFormatError as exc:
            if not job.parts:
                raise
            self._error = exc
        finally:
            self._job = None
        return job.batch()

    def _parse(self, data: bytes, pos: int, out: list[Record]) -> int:
        job = self._job
        if job is None:
            return super()._parse(data, pos, out)
        view = memoryview(data)
        unpack = self._rec.unpack_from
        pack_head, tail_head = _HEAD.pack, _TAIL_HEAD
        append = job.parts.append
        limit, scale, end = self._limit, self._scale, len(data)
        interface, room, tail, total = job.interface, job.room, job.tail, job.total
        first_ns, ts = job.first_ns, job.last_ns
        count = nbytes = 0
        try:
            while pos + RECORD_HEADER_LEN <= end:
                sec, frac, caplen, origlen = unpack(data, pos)
                if caplen > limit:
                    self._check_caplen(caplen, self._base + pos)
                start = pos + RECORD_HEADER_LEN
                stop = start + caplen
                if stop > end:
                    break
                pos = stop
                if caplen > room:
                    job.limit_reached = True
                    room = -1
                    continue
                room -= caplen
                ts = sec * 1_000_000_000 + frac * scale
                if first_ns is None:
                    first_ns = ts
                size = 32 + caplen + (-caplen & 3)
                if tail < 0:
                    append(pack_head(EPB_TYPE, size, interface, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen))
                else:
                    head = tail_head[tail].pack(
                        total, EPB_TYPE, size, interface, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen
                    )
                    append(head)
                append(view[start:stop])
                tail, total = -caplen & 3, size
                count += 1
                nbytes += caplen
        finally:
            job.room, job.tail, job.total = room, tail, total
            job.first_ns, job.last_ns = first_ns, ts
            job.packets += count
            job.bytes += nbytes
            self.packets += count
            self.bytes += nbytes
        return pos
