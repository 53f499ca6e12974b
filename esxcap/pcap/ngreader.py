"""Incremental pcapng reading: enough for our own files and typical ones from Wireshark/tcpdump/pktcap-uw.

Understands Section Header, Interface Description, Enhanced Packet, Simple Packet, (obsolete) Packet and
Interface Statistics Blocks with their text options, if_tsresol, if_tsoffset and epb_flags; skips every
other block.
Interfaces of all sections are numbered in one list, in the order they were read; records refer to it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from esxcap.pcap.classic import MAGIC_MICRO, MAGIC_NANO
from esxcap.pcap.framing import FrameReader
from esxcap.pcap.pcapng import (
    EPB_FLAGS,
    EPB_TYPE,
    IDB_TYPE,
    IF_DESCRIPTION,
    IF_NAME,
    IF_TSOFFSET,
    IF_TSRESOL,
    ISB_ENDTIME,
    ISB_IFDROP,
    ISB_IFRECV,
    ISB_STARTTIME,
    ISB_TYPE,
    OPT_COMMENT,
    OPT_END,
    SHB_HARDWARE,
    SHB_OS,
    SHB_TYPE,
    SHB_USERAPPL,
    SPB_TYPE,
)
from esxcap.pcap.records import (
    MAX_BLOCK_LEN,
    MAX_CAPLEN,
    CorruptCaptureError,
    Interface,
    InterfaceStatistics,
    NotPcapError,
    Record,
    Section,
)

PACKET_BLOCK_TYPE = 2
_SHB_MAGIC = SHB_TYPE.to_bytes(4, "little")
_BOM = {bytes.fromhex("4d3c2b1a"): "<", bytes.fromhex("1a2b3c4d"): ">"}
_PCAP_MAGICS = {m.to_bytes(4, order) for m in (MAGIC_MICRO, MAGIC_NANO) for order in ("little", "big")}
_Clock = tuple[int, int, int, int]
"""(multiplier, right shift, divisor, offset ns): ns = ((units * mul) >> shift) // div + offset."""


def _clock(tsresol: int, tsoffset_s: int) -> _Clock:
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        return (1_000_000_000, exp, 1, tsoffset_s * 1_000_000_000)
    if exp <= 9:
        return (10 ** (9 - exp), 0, 1, tsoffset_s * 1_000_000_000)
    return (1, 0, 10 ** (exp - 9), tsoffset_s * 1_000_000_000)


def _to_ns(clock: _Clock, units: int) -> int:
    mul, shift, div, offset = clock
    return ((units * mul) >> shift) // div + offset


class PcapngStreamReader(FrameReader):
    """Incremental pcapng reader with the same contract as PcapStreamReader (`feed`, `finish`,
    `partial_bytes`, counters); interfaces, sections and statistics accumulate as they are read.

    A Simple Packet Block has no timestamp: its record gets the previous packet's timestamp.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interfaces: list[Interface] = []
        self.sections: list[Section] = []
        self.statistics: list[InterfaceStatistics] = []
        self._order = "<"
        self._local: list[int] = []
        """Global interface index of each interface of the current section."""
        self._clocks: list[_Clock] = []
        self._last_ts = 0

    def _check_head(self, head: bytearray) -> None:
        if not self._head_seen and len(head) >= 4 and bytes(head[:4]) != _SHB_MAGIC:
            kind = (
                "this is classic pcap, not pcapng" if bytes(head[:4]) in _PCAP_MAGICS else "no pcapng header"
            )
            raise NotPcapError(kind, bytes(head))

    def _frame_length(self, buf: bytes | bytearray) -> int:
        if len(buf) < 12:
            self._check_head(bytearray(buf))
            return 12
        return self._block_length(buf, 0, self._consumed)

    def _block_length(self, buf: bytes | bytearray, pos: int, offset: int) -> int:
        if buf[pos : pos + 4] == _SHB_MAGIC:
            order = _BOM.get(bytes(buf[pos + 8 : pos + 12]))
            if order is None:
                if not self._head_seen:
                    raise NotPcapError("bad pcapng byte-order magic", bytes(buf[pos : pos + 32]))
                raise CorruptCaptureError(offset, "section header with a bad byte-order magic")
            self._order = order
        elif not self._head_seen:
            self._check_head(bytearray(buf[pos : pos + 4]))
        (length,) = struct.unpack_from(self._order + "I", buf, pos + 4)
        if length % 4 or not 12 <= length <= MAX_BLOCK_LEN:
            raise CorruptCaptureError(
                offset, f"block length {length} is not a multiple of 4 in 12..{MAX_BLOCK_LEN}"
            )
        return int(length)

    def _parse(self, data: bytes, pos: int, out: list[Record]) -> int:
        view = memoryview(data)
        end = len(data)
        while pos + 12 <= end:
            stop, record = self._next_block(data, view, pos, end)
            if stop < 0:
                break
            if record is not None:
                out.append(record)
            pos = stop
        return pos

    def _next_block(
        self, data: bytes | bytearray, view: memoryview, pos: int, end: int
    ) -> tuple[int, Record | None]:
        """Read the block at `pos`: (its end, its packet when it is one), or (-1, None) when it does not
        end before `end`. Sections, interfaces and statistics are taken in; other blocks are skipped."""
        length = self._block_length(data, pos, self._base + pos)
        if pos + length > end:
            return -1, None
        order = self._order
        block_type, _ = struct.unpack_from(order + "II", data, pos)
        (trailer,) = struct.unpack_from(order + "I", data, pos + length - 4)
        if trailer != length:
            raise CorruptCaptureError(self._base + pos, f"block length {length} but trailer says {trailer}")
        record = None
        if block_type in (EPB_TYPE, PACKET_BLOCK_TYPE):
            record = self._packet(view, pos, length, block_type)
        elif block_type == SPB_TYPE:
            record = self._simple_packet(view, pos, length)
        elif block_type == SHB_TYPE:
            self._section(view, pos, length)
        elif block_type == IDB_TYPE:
            self._interface(view, pos, length)
        elif block_type == ISB_TYPE:
            self._statistics(view, pos, length)
        return pos + length, record

    def _fail(self, pos: int, reason: str) -> CorruptCaptureError:
        return CorruptCaptureError(self._base + pos, reason)

    def _options(self, view: memoryview, pos: int, start: int, stop: int) -> Iterator[tuple[int, memoryview]]:
        while start + 4 <= stop:
            code, size = struct.unpack_from(self._order + "HH", view, start)
            if code == OPT_END:
                return
            value_end = start + 4 + size
            if value_end > stop:
                raise self._fail(pos, f"option {code} runs past the end of its block")
            yield code, view[start + 4 : value_end]
            start = value_end + (-size % 4)

    def _texts(self, view: memoryview, pos: int, start: int, stop: int) -> dict[int, list[str]]:
        texts: dict[int, list[str]] = {}
        for code, value in self._options(view, pos, start, stop):
            texts.setdefault(code, []).append(bytes(value).decode("utf-8", "replace"))
        return texts

    def _section(self, view: memoryview, pos: int, length: int) -> None:
        if length < 28:
            raise self._fail(pos, "section header block too short")
        (major,) = struct.unpack_from(self._order + "H", view, pos + 12)
        if major != 1:
            raise self._fail(pos, f"pcapng version {major}, only 1.x exists")
        texts = self._texts(view, pos, pos + 24, pos + length - 4)
        first = {code: values[0] for code, values in texts.items()}
        comments = tuple(texts.get(OPT_COMMENT, ()))
        section = Section(comments, first.get(SHB_USERAPPL), first.get(SHB_HARDWARE), first.get(SHB_OS))
        self.sections.append(section)
        self._local = []
        self._head_seen = True

    def _interface(self, view: memoryview, pos: int, length: int) -> None:
        if length < 20:
            raise self._fail(pos, "interface description block too short")
        linktype, _, snaplen = struct.unpack_from(self._order + "HHI", view, pos + 8)
        names: dict[int, str] = {}
        comments: list[str] = []
        tsresol, tsoffset = 6, 0
        for code, value in self._options(view, pos, pos + 16, pos + length - 4):
            if code == IF_TSRESOL and len(value) >= 1:
                tsresol = value[0]
            elif code == IF_TSOFFSET and len(value) == 8:
                (tsoffset,) = struct.unpack_from(self._order + "q", value)
            elif code == OPT_COMMENT:
                comments.append(bytes(value).decode("utf-8", "replace"))
            elif code in (IF_NAME, IF_DESCRIPTION):
                names[code] = bytes(value).decode("utf-8", "replace")
        name = names.get(IF_NAME, f"interface {len(self.interfaces)}")
        iface = Interface(name, linktype, snaplen, names.get(IF_DESCRIPTION), tuple(comments))
        self._local.append(len(self.interfaces))
        self.interfaces.append(iface)
        self._clocks.append(_clock(tsresol, tsoffset))

    def _global_interface(self, pos: int, local: int) -> int:
        if local >= len(self._local):
            raise self._fail(pos, f"packet of interface {local}, but only {len(self._local)} are described")
        return self._local[local]

    def _packet(self, view: memoryview, pos: int, length: int, block_type: int) -> Record:
        if length < 32:
            raise self._fail(pos, "packet block too short")
        order = self._order
        if block_type == EPB_TYPE:
            local, high, low, caplen, origlen = struct.unpack_from(order + "IIIII", view, pos + 8)
        else:
            local, _drops, high, low, caplen, origlen = struct.unpack_from(order + "HHIIII", view, pos + 8)
        if caplen > min(MAX_CAPLEN, length - 32):
            raise self._fail(pos, f"packet claims {caplen} captured bytes in a block of {length}")
        iface = self._global_interface(pos, local)
        ts_ns = _to_ns(self._clocks[iface], (high << 32) | low)
        self._last_ts = ts_ns
        data_end = pos + 28 + caplen
        comments: list[str] = []
        flags = 0
        opt_start = data_end + (-caplen % 4)
        if opt_start < pos + length - 4:
            for code, value in self._options(view, pos, opt_start, pos + length - 4):
                if code == OPT_COMMENT:
                    comments.append(bytes(value).decode("utf-8", "replace"))
                elif code == EPB_FLAGS and len(value) == 4 and block_type == EPB_TYPE:
                    (flags,) = struct.unpack_from(order + "I", value)
        self.packets += 1
        self.bytes += caplen
        return Record(ts_ns, origlen, view[pos + 28 : data_end], iface, tuple(comments), flags)

    def _simple_packet(self, view: memoryview, pos: int, length: int) -> Record:
        if length < 16:
            raise self._fail(pos, "simple packet block too short")
        iface = self._global_interface(pos, 0)
        (origlen,) = struct.unpack_from(self._order + "I", view, pos + 8)
        snaplen = self.interfaces[iface].snaplen
        caplen = min(origlen, snaplen) if snaplen else origlen
        if caplen > min(MAX_CAPLEN, length - 16):
            raise self._fail(pos, f"simple packet of {caplen} bytes in a block of {length}")
        self.packets += 1
        self.bytes += caplen
        return Record(self._last_ts, origlen, view[pos + 12 : pos + 12 + caplen], iface)

    def _statistics(self, view: memoryview, pos: int, length: int) -> None:
        if length < 24:
            raise self._fail(pos, "interface statistics block too short")
        local, high, low = struct.unpack_from(self._order + "III", view, pos + 8)
        iface = self._global_interface(pos, local)
        clock = self._clocks[iface]
        values: dict[int, int] = {}
        comments: list[str] = []
        for code, value in self._options(view, pos, pos + 20, pos + length - 4):
            if code in (ISB_STARTTIME, ISB_ENDTIME) and len(value) == 8:
                hi, lo = struct.unpack_from(self._order + "II", value)
                values[code] = _to_ns(clock, (hi << 32) | lo)
            elif code in (ISB_IFRECV, ISB_IFDROP) and len(value) == 8:
                values[code] = struct.unpack_from(self._order + "Q", value)[0]
            elif code == OPT_COMMENT:
                comments.append(bytes(value).decode("utf-8", "replace"))
        stats = InterfaceStatistics(
            iface,
            _to_ns(clock, (high << 32) | low),
            values.get(ISB_STARTTIME),
            values.get(ISB_ENDTIME),
            values.get(ISB_IFRECV),
            values.get(ISB_IFDROP),
            tuple(comments),
        )
        self.statistics.append(stats)
