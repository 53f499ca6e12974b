"""Reading finished captures as whole Enhanced Packet Blocks ready to write, with one sort key per packet
and no Record per packet: what `esxcap merge` needs to order and copy packets.

`PcapngBlockScanner` scans a little-endian pcapng chunk block by block: each Enhanced Packet Block has its
interface id (and, for interfaces that do not count nanoseconds, its timestamp) rewritten in place to
what the output declares, and is handed out as a view into the chunk, so its bytes (options included)
reach the output as they were read. Anything else (big-endian sections, Simple and obsolete Packet
Blocks) goes through PcapngStreamReader's own parsing and is encoded anew. `PcapBlockScanner` does the
same for classic pcap through PcapngTranscoder.

A packet's key is the largest timestamp of its file up to and including it: ordering by (key, later
input first, file order) gives exactly the order of a merge that always takes the oldest of the inputs'
next packets (mergecap's), even where a file is not itself in time order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import accumulate

from esxcap.pcap.classic import GLOBAL_HEADER_LEN
from esxcap.pcap.ngreader import PcapngStreamReader
from esxcap.pcap.pcapng import (
    EPB_TYPE,
    TIMESTAMP_LIMIT,
    TimestampRangeError,
    encode_epb,
)
from esxcap.pcap.records import MAX_CAPLEN, Interface, InterfaceStatistics, Record
from esxcap.pcap.transcode import PcapngTranscoder

Buffer = bytes | memoryview
Register = Callable[[Interface], int]
"""Declares an interface in the output when the scanner meets it; returns its id there."""
_EPB_START = struct.Struct("<IIIIII")
"""Block type, total length, interface, timestamp high and low words, caplen."""
_LENGTH = struct.Struct("<I")
_INTERFACE = struct.Struct("<I")
_INTERFACE_TS = struct.Struct("<III")
_NANOS = (1, 0, 1, 0)
"""The clock of an interface whose timestamps count nanoseconds from 1970 (see ngreader._clock)."""


class PcapngBlockScanner(PcapngStreamReader):
    """A PcapngStreamReader whose `scan()` returns (keys, blocks) in file order instead of records.
    Of its counters, `packets` is kept (`bytes` is not)."""

    def __init__(self, register: Register) -> None:
        super().__init__()
        self._register = register
        self._route: list[tuple[int, bool]] = []
        """Per interface read (global index): its id in the output, whether its timestamps are ns."""
        self._keys: list[int] = []
        self._blocks: list[Buffer] = []
        self.top = -1
        """The largest timestamp scanned so far (-1: none): the key of the last packet."""

    def output_interface(self, index: int) -> int:
        """The output id of this file's interface `index` (in the order they were read)."""
        return self._route[index][0]

    def scan(self, chunk: bytearray) -> tuple[list[int], list[Buffer]]:
        """The packets `chunk` completes: their keys and their blocks (views into `chunk`, which is
        patched in place). A format error is raised at once."""
        keys: list[int] = []
        blocks: list[Buffer] = []
        self._keys, self._blocks = keys, blocks
        counted = self.packets
        self._feed(chunk, [])  # type: ignore[arg-type]  # a bytearray: its blocks are patched in place
        self.packets = counted + len(keys)
        return keys, blocks

    def _interface(self, view: memoryview, pos: int, length: int) -> None:
        super()._interface(view, pos, length)
        self._route.append((self._register(self.interfaces[-1]), self._clocks[-1] == _NANOS))

    def _parse(self, data: bytes, pos: int, out: list[Record]) -> int:
        buffer = data if isinstance(data, bytearray) else bytearray(data)
        view = memoryview(buffer)
        end = len(buffer)
        last = end - 28
        """The last offset where an Enhanced Packet Block's fixed part fits."""
        keys, blocks = self._keys, self._blocks
        add_key, add_block = keys.append, blocks.append
        head, length_at, set_interface = _EPB_START.unpack_from, _LENGTH.unpack_from, _INTERFACE.pack_into
        epb_type, max_caplen = EPB_TYPE, MAX_CAPLEN
        top, ts, routes = self.top, self._last_ts, self._section_routes()
        interfaces, little = len(routes), self._order == "<"
        try:
            while True:
                while little and pos <= last:  # the fast path: little-endian packets
                    block_type, length, iface, high, low, caplen = head(buffer, pos)
                    if block_type != epb_type:
                        break
                    stop = pos + length
                    if (
                        stop > end
                        or length & 3
                        or caplen + 32 > length
                        or caplen > max_caplen
                        or iface >= interfaces
                        or length_at(buffer, stop - 4)[0] != length
                    ):
                        if stop > end:
                            self._block_length(buffer, pos, self._base + pos)  # a bad length: named now
                            return pos  # the rest of the block arrives with the next chunk
                        self._check_packet(buffer, view, pos, length)
                    out_id, nanos = routes[iface]
                    if nanos:
                        ts = high << 32 | low
                        if out_id != iface:
                            set_interface(buffer, pos + 8, out_id)
                    else:
                        ts = self._to_nanos(self._local[iface], high << 32 | low)
                        _INTERFACE_TS.pack_into(buffer, pos + 8, out_id, ts >> 32, ts & 0xFFFFFFFF)
                    if ts > top:  # noqa: PLR1730  # (max() is a call per packet)
                        top = ts
                    add_key(top)
                    add_block(view[pos:stop])
                    pos = stop
                if pos + 12 > end:
                    return pos
                self.top, self._last_ts = top, ts  # a Simple Packet Block takes the last timestamp
                stop = self._other_block(buffer, view, pos, end)
                if stop < 0:
                    return pos
                pos, top, ts, routes = stop, self.top, self._last_ts, self._section_routes()
                interfaces, little = len(routes), self._order == "<"
        finally:
            self.top, self._last_ts = top, ts

    def _section_routes(self) -> list[tuple[int, bool]]:
        """(output id, counts ns) of each interface of the current section, by its id in the section."""
        return [self._route[index] for index in self._local]

    def _to_nanos(self, interface: int, units: int) -> int:
        mul, shift, div, offset = self._clocks[interface]
        ts = ((units * mul) >> shift) // div + offset
        if not 0 <= ts < TIMESTAMP_LIMIT:
            raise TimestampRangeError(ts)
        return ts

    def _check_packet(self, buffer: bytearray, view: memoryview, pos: int, length: int) -> None:
        """Raise the reader's own error for a bad Enhanced Packet Block."""
        self._block_length(buffer, pos, self._base + pos)
        (trailer,) = _LENGTH.unpack_from(buffer, pos + length - 4)
        if trailer != length:
            raise self._fail(pos, f"block length {length} but trailer says {trailer}")
        self._packet(view, pos, length, EPB_TYPE)
        raise AssertionError("a packet block failed a check the reader passed")  # pragma: no cover

    def _other_block(self, buffer: bytearray, view: memoryview, pos: int, end: int) -> int:
        """Handle one block the fast path does not (section, interface, statistics, packets to encode
        anew, blocks to skip); return its end, or -1 when it is not complete in `buffer`."""
        stop, record = self._next_block(buffer, view, pos, end)
        if record is not None:
            self.top = max(self.top, record.ts_ns)
            self._keys.append(self.top)
            out_id = self._route[record.interface][0]
            self._blocks.append(
                encode_epb(out_id, record.ts_ns, record.data, record.origlen, record.comments, record.flags)
            )
        return stop


class PcapBlockScanner(PcapngTranscoder):
    """A classic pcap file scanned into (keys, blocks): one output interface named after the file."""

    def __init__(self, name: str, register: Register) -> None:
        super().__init__()
        self._name = name
        self._register = register
        self._out_id = -1
        self.top = -1

    @property
    def statistics(self) -> list[InterfaceStatistics]:
        return []

    def output_interface(self, index: int) -> int:
        return self._out_id

    def scan(self, chunk: bytearray) -> tuple[list[int], list[Buffer]]:
        if self.header is None:
            need = GLOBAL_HEADER_LEN - self.partial_bytes
            self.feed(chunk[:need])
            chunk = chunk[need:]
            if self.header is None:
                return [], []
            self._out_id = self._register(Interface(self._name, self.header.linktype, self.header.snaplen))
        batch = self.transcode(bytes(chunk), self._out_id, keys=True)
        if not batch.packets:
            return [], []
        keys = list(accumulate(batch.stamps or (), max, initial=self.top))[1:]
        self.top = keys[-1]
        return keys, batch.blocks()
