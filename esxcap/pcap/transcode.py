"""Classic pcap to pcapng in one pass: the fast path of a stream written alone to its file.

`PcapngTranscoder` is a PcapStreamReader that can also turn each chunk straight into the Enhanced Packet
Blocks `PcapngWriter.write_records` would write for its records (the same bytes), without building a
Record per packet: one struct unpack, one struct pack and one slice per packet. A stream's direction
(epb_flags) rides in the same pack, as options made once per batch. The batch is a list of parts (block
heads and views into the chunk) that `PcapngWriter.write_blocks` gathers with one writev: packet bytes
are not copied on the way to the file.

Asked for keys (a sink merging several streams), a batch also holds each packet's timestamp and block
size, so that `EpbBatch.blocks()` can cut the encoded chunk into whole blocks for a BlockWindow to order.
"""

from __future__ import annotations

import functools
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from esxcap.pcap.classic import RECORD_HEADER_LEN, PcapStreamReader
from esxcap.pcap.pcapng import EPB_TYPE, epb_options
from esxcap.pcap.records import CaptureFormatError, Record

Part = bytes | memoryview
_HEAD = struct.Struct("<IIIIIII")
"""EPB header: type, total length, interface, timestamp high and low words, caplen, origlen."""
_HEAD_TS = struct.Struct("<12xII")
"""The timestamp words of an EPB header (the last 28 bytes of a head part)."""


def _head_ns(head: bytes | memoryview) -> int:
    """The timestamp of the EPB whose header ends `head` (a part made by one of the _Packs)."""
    high, low = _HEAD_TS.unpack_from(head, len(head) - 28)
    return int(high) << 32 | int(low)


def _head_only(_options: bytes, _total: int, *fields: int) -> bytes:
    return _HEAD.pack(*fields)


@dataclass(frozen=True)
class _Packs:
    """How the blocks of one stream are joined: by the padding of the block before (index -1: none
    before), pack its padding, options and closing length and the next EPB header in one call; `tails`
    close the last block. The options (epb_flags, the same for every packet of a stream) are an argument
    of every pack: an empty one costs nothing."""

    joins: tuple[Callable[..., bytes], ...]
    tails: tuple[Callable[..., bytes], ...]


@functools.cache
def _packs(options_len: int) -> _Packs:
    joins = tuple(struct.Struct(f"<{pad}x{options_len}sIIIIIIII").pack for pad in range(4))
    tails = tuple(struct.Struct(f"<{pad}x{options_len}sI").pack for pad in range(4))
    return _Packs((*joins, _head_only), tails)


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
    stamps: list[int] | None = None
    """With keys: each packet's timestamp (ns), in stream order."""
    sizes: list[int] | None = None
    """With keys: each packet's block length in bytes."""

    def blocks(self) -> list[Part]:
        """The batch as one view per Enhanced Packet Block (needs keys): the parts joined once, then cut."""
        if self.sizes is None:
            raise ValueError("blocks() needs a batch transcoded with keys=True")
        joined = memoryview(b"".join(self.parts))
        ends = list(accumulate(self.sizes))
        return list(map(joined.__getitem__, map(slice, [0, *ends[:-1]], ends)))


_EPB_FIELDS = struct.Struct("<8xIIIII")
"""Interface, timestamp high and low words, caplen, origlen of an EPB at its start."""


def epb_records(blocks: Iterator[bytes | memoryview] | list[bytes | memoryview]) -> Iterator[Record]:
    """The packets of buffers that each hold whole Enhanced Packet Blocks (as transcode() writes them),
    with their interface ids; their options (epb_flags) are left out."""
    for buffer in blocks:
        pos, end = 0, len(buffer)
        while pos + 32 <= end:
            (total,) = struct.unpack_from("<I", buffer, pos + 4)
            iface, high, low, caplen, origlen = _EPB_FIELDS.unpack_from(buffer, pos)
            yield Record(high << 32 | low, origlen, buffer[pos + 28 : pos + 28 + caplen], iface)
            pos += total


@dataclass
class _Job:
    interface: int
    room: int
    shift_ns: int = 0
    options: bytes = b""
    """What every block ends with before its closing length (epb_options)."""
    stamps: list[int] | None = None
    sizes: list[int] | None = None
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
            self.parts.append(_packs(len(self.options)).tails[self.tail](self.options, self.total))
            self.tail = -1
        return EpbBatch(
            self.parts,
            self.packets,
            self.bytes,
            self.first_ns,
            self.last_ns,
            self.limit_reached,
            self.stamps,
            self.sizes,
        )


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
        self,
        chunk: bytes | bytearray | memoryview,
        interface: int,
        room: int | None = None,
        shift_ns: int = 0,
        keys: bool = False,
        flags: int = 0,
    ) -> EpbBatch:
        """Encode every record `chunk` completes as a packet of `interface`, while the sum of their caplen
        stays within `room` bytes (None: no budget; negative: none fits); the record that does not fit and
        every record after it are read and left out. `shift_ns` is added to every timestamp; `keys`
        fills the batch's stamps and sizes; `flags` (epb_flags: the stream's direction) is set on every
        packet."""
        if self.header is None:
            raise ValueError("transcode() needs the stream's header: feed() the first bytes")
        if self._error is not None:
            raise self._error
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        options = epb_options(flags)
        job = self._job = _Job(interface, sys.maxsize if room is None else room, shift_ns, options)
        if keys:
            job.stamps, job.sizes = [], []
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
        parts = job.parts
        append = parts.append
        options = job.options
        packs = _packs(len(options)).joins
        fixed = 32 + len(options)
        limit, scale, end = self._limit, self._scale, len(data)
        last = end - RECORD_HEADER_LEN
        iface, room, tail, total, shift = job.interface, job.room, job.tail, job.total, job.shift_ns
        keyed = job.stamps is not None
        stamps = job.stamps if job.stamps is not None else []
        sizes = job.sizes if job.sizes is not None else []
        parts_before, taken = len(parts), 0
        second = high = low_base = base = -1
        try:
            while pos <= last:
                sec, frac, caplen, origlen = unpack(data, pos)
                if caplen > limit:
                    self._check_caplen(caplen, self._base + pos)
                start = pos + RECORD_HEADER_LEN
                stop = start + caplen
                if stop > end:
                    break
                pos = stop
                taken += caplen
                if taken > room:
                    taken -= caplen
                    job.limit_reached = True
                    room = -1
                    continue
                if sec != second:
                    base = sec * 1_000_000_000 + shift
                    second, high, low_base = sec, base >> 32, base & 0xFFFFFFFF
                low = low_base + frac * scale
                if low > 0xFFFFFFFF:
                    ts = base + frac * scale
                    second, high, low_base = -1, ts >> 32, ts & 0xFFFFFFFF
                    low = low_base
                pad = -caplen & 3
                size = fixed + caplen + pad
                append(packs[tail](options, total, EPB_TYPE, size, iface, high, low, caplen, origlen))
                append(view[start:stop])
                if keyed:
                    stamps.append(high << 32 | low)
                    sizes.append(size)
                tail, total = pad, size
        finally:
            count = (len(parts) - parts_before) // 2
            if count:
                if job.first_ns is None:
                    job.first_ns = _head_ns(parts[parts_before])
                job.last_ns = _head_ns(parts[-2])
            job.room = room if room < 0 else room - taken
            job.tail, job.total = tail, total
            job.packets += count
            job.bytes += taken
            self.packets += count
            self.bytes += taken
        return pos
