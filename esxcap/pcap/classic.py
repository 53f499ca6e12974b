"""Classic pcap (libpcap) streams: the 24-byte global header, the incremental record reader, and the
pass-through writer that puts records back byte for byte."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from esxcap.pcap.framing import FrameReader
from esxcap.pcap.records import (
    LINKTYPE_ETHERNET,
    MAX_CAPLEN,
    SNAPLEN_SLACK,
    CorruptCaptureError,
    NotPcapError,
    Record,
)

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAGICS = {
    MAGIC_MICRO.to_bytes(4, "little"): ("<", False),
    MAGIC_MICRO.to_bytes(4, "big"): (">", False),
    MAGIC_NANO.to_bytes(4, "little"): ("<", True),
    MAGIC_NANO.to_bytes(4, "big"): (">", True),
}
CAPTURE_MAGICS = (*_MAGICS, PCAPNG_MAGIC)
"""How a pcap (either byte order, micro- or nanoseconds) or pcapng file begins."""


def is_capture_start(head: bytes) -> bool:
    """Whether bytes read from a file's start begin a pcap or pcapng file."""
    return head[:4] in CAPTURE_MAGICS


_MIN_SNAPLEN_LIMIT = 65535
"""Bytes a record may hold whatever snaplen the header states; see PcapHeader.caplen_limit."""


@dataclass(frozen=True)
class PcapHeader:
    """The global header of a classic pcap stream."""

    byteorder: str
    """`<` (little-endian) or `>` (big-endian), as struct format prefixes."""
    nanos: bool
    """True when record timestamps carry nanoseconds rather than microseconds."""
    version: tuple[int, int]
    snaplen: int
    linktype: int
    raw: bytes
    """The 24 bytes as received, to be written through unchanged."""

    @property
    def caplen_limit(self) -> int:
        """Largest caplen accepted before the stream is called corrupt.

        snaplen plus some slack, but never less than 65535 (what a header's snaplen says is not always
        what the writer honours) and never more than MAX_CAPLEN.
        """
        return min(MAX_CAPLEN, max(self.snaplen, _MIN_SNAPLEN_LIMIT) + SNAPLEN_SLACK)


def parse_global_header(head: bytes) -> PcapHeader:
    """Validate and decode the first 24 bytes of a pcap stream; NotPcapError if they are not pcap."""
    if len(head) < GLOBAL_HEADER_LEN:
        raise NotPcapError(f"only {len(head)} bytes, a pcap header has {GLOBAL_HEADER_LEN}", head)
    order_nanos = _MAGICS.get(bytes(head[:4]))
    if order_nanos is None:
        reason = "this is pcapng, not classic pcap" if head[:4] == PCAPNG_MAGIC else "unknown magic number"
        raise NotPcapError(reason, head)
    order, nanos = order_nanos
    major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(order + "HHiIII", head, 4)
    if major != 2:
        raise NotPcapError(f"pcap version {major}.{minor}, only 2.x exists", head)
    return PcapHeader(
        order, nanos, (major, minor), snaplen, linktype & 0xFFFF, bytes(head[:GLOBAL_HEADER_LEN])
    )


def write_pcap_header(
    linktype: int = LINKTYPE_ETHERNET, snaplen: int = MAX_CAPLEN, nanos: bool = True
) -> bytes:
    """A little-endian pcap global header (version 2.4)."""
    magic = MAGIC_NANO if nanos else MAGIC_MICRO
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def encode_record(record: Record, header: PcapHeader) -> bytes:
    """The 16-byte record header for `record` in `header`'s byte order and time resolution.

    For a record read from a stream with that header this gives back exactly the bytes that were read,
    so `encode_record(r, h) + r.data` passes records through unchanged.
    """
    sec, rest = divmod(record.ts_ns, 1_000_000_000)
    frac = rest if header.nanos else rest // 1000
    return struct.pack(header.byteorder + "IIII", sec, frac, len(record.data), record.origlen)


class PcapStreamReader(FrameReader):
    """Incremental reader of one classic pcap stream (e.g. pktcap-uw's `-o -` output).

    `feed(chunk)` returns the records each chunk completes. The header is validated as soon as its bytes
    arrive (NotPcapError: show the host's error output instead); each record's caplen is checked against
    the header before its body is buffered (CorruptCaptureError naming the offset). A stream cut mid-record
    loses only that record: `partial_bytes` says how many bytes of it were held back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.header: PcapHeader | None = None
        self._rec = struct.Struct("<IIII")
        self._limit = MAX_CAPLEN
        self._scale = 1000

    def _check_head(self, head: bytearray) -> None:
        if self.header is None and len(head) >= 4 and bytes(head[:4]) not in _MAGICS:
            parse_global_header(bytes(head))

    def _frame_length(self, buf: bytes | bytearray) -> int:
        if self.header is None:
            return GLOBAL_HEADER_LEN
        if len(buf) < RECORD_HEADER_LEN:
            return RECORD_HEADER_LEN
        caplen: int = self._rec.unpack_from(buf, 0)[2]
        self._check_caplen(caplen, self._consumed)
        return RECORD_HEADER_LEN + caplen

    def _check_caplen(self, caplen: int, offset: int) -> None:
        if caplen > self._limit:
            raise CorruptCaptureError(
                offset, f"record claims {caplen} captured bytes, more than the limit of {self._limit}"
            )

    def _parse(self, data: bytes, pos: int, out: list[Record]) -> int:
        if self.header is None:
            header = parse_global_header(data[pos : pos + GLOBAL_HEADER_LEN])
            self.header = header
            self._head_seen = True
            self._rec = struct.Struct(header.byteorder + "IIII")
            self._limit = header.caplen_limit
            self._scale = 1 if header.nanos else 1000
            pos += GLOBAL_HEADER_LEN
        view = memoryview(data)
        unpack = self._rec.unpack_from
        limit, scale, end = self._limit, self._scale, len(data)
        count = nbytes = 0
        while pos + RECORD_HEADER_LEN <= end:
            sec, frac, caplen, origlen = unpack(data, pos)
            if caplen > limit:
                self._check_caplen(caplen, self._base + pos)
            start = pos + RECORD_HEADER_LEN
            stop = start + caplen
            if stop > end:
                break
            out.append(Record(sec * 1_000_000_000 + frac * scale, origlen, view[start:stop]))
            count += 1
            nbytes += caplen
            pos = stop
        self.packets += count
        self.bytes += nbytes
        return pos


class PcapWriter:
    """Writes one classic pcap stream: the header, then records re-encoded byte for byte as read."""

    def __init__(self, fileobj: BinaryIO, header: PcapHeader) -> None:
        self._file = fileobj
        self._header = header
        self.packets = 0
        fileobj.write(header.raw)

    def write(self, records: list[Record]) -> None:
        """Append records (e.g. one `feed()` result)."""
        header = self._header
        parts: list[bytes | memoryview] = []
        for record in records:
            parts.append(encode_record(record, header))
            parts.append(record.data)
        self._file.write(b"".join(parts))
        self.packets += len(records)
