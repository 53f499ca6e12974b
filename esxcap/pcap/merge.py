"""Putting several captures into one timeline: `merge()` for finished files (k-way by timestamp, one
pending record per input) and `BlockWindow` for the encoded blocks of live streams (bounded delay and
memory)."""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import BinaryIO, Protocol

from esxcap.pcap.classic import PcapStreamReader
from esxcap.pcap.ngreader import PcapngStreamReader
from esxcap.pcap.pcapng import SHB_TYPE, PcapngWriter
from esxcap.pcap.records import CaptureFormatError, Interface, InterfaceStatistics, Record, Section

CHUNK_SIZE = 256 * 1024
_SHB_MAGIC = SHB_TYPE.to_bytes(4, "little")
Buffer = bytes | memoryview
"""An encoded block as BlockWindow holds it (a view into its batch, or bytes)."""


class RecordSource(Protocol):
    """A capture read once, front to back. `interfaces` may grow while it is iterated (an interface is
    always known before its first record); records refer to it by index."""

    @property
    def interfaces(self) -> Sequence[Interface]: ...

    @property
    def statistics(self) -> Sequence[InterfaceStatistics]: ...

    def __iter__(self) -> Iterator[Record]: ...


class CaptureFile:
    """A pcap or pcapng file (told apart by its first bytes) as a RecordSource.

    A plain pcap becomes one interface called `name` (e.g. the file's name). A file cut mid-record
    yields every complete record; `truncated_bytes` then tells how many bytes were left over.
    """

    def __init__(self, fileobj: BinaryIO, name: str, chunk_size: int = CHUNK_SIZE) -> None:
        self.name = name
        self._file = fileobj
        self._chunk_size = chunk_size
        self._first = fileobj.read(chunk_size)
        self._reader: PcapStreamReader | PcapngStreamReader = (
            PcapngStreamReader() if self._first[:4] == _SHB_MAGIC else PcapStreamReader()
        )
        self.truncated_bytes = 0

    @property
    def interfaces(self) -> Sequence[Interface]:
        reader = self._reader
        if isinstance(reader, PcapngStreamReader):
            return reader.interfaces
        if reader.header is None:
            return []
        return [Interface(self.name, reader.header.linktype, reader.header.snaplen)]

    @property
    def statistics(self) -> Sequence[InterfaceStatistics]:
        return self._reader.statistics if isinstance(self._reader, PcapngStreamReader) else []

    @property
    def sections(self) -> Sequence[Section]:
        return self._reader.sections if isinstance(self._reader, PcapngStreamReader) else []

    def __iter__(self) -> Iterator[Record]:
        """The file's records; a format error names the file and keeps its type and offset."""
        chunk = self._first
        self._first = b""
        try:
            while chunk:
                yield from self._reader.feed(chunk)
                chunk = self._file.read(self._chunk_size)
            self.truncated_bytes = self._reader.finish()
        except CaptureFormatError as exc:
            exc.message = f"{self.name}: {exc.message}"
            exc.hint = "check that the file is a pcap or pcapng capture"
            raise


@dataclass(frozen=True)
class MergeResult:
    packets: int
    per_input: tuple[int, ...]
    interface_map: dict[tuple[int, int], int]
    """(input index, interface index in that input) -> interface id in the output."""


class _Interfaces:
    """Adds the inputs' interfaces to the writer on first need, keeping names, descriptions, comments."""

    def __init__(self, inputs: Sequence[RecordSource], writer: PcapngWriter) -> None:
        self.inputs = inputs
        self.writer = writer
        self.map: dict[tuple[int, int], int] = {}

    def add_known(self, source: int) -> None:
        for local, iface in enumerate(self.inputs[source].interfaces):
            if (source, local) not in self.map:
                self.map[source, local] = self.writer.add_interface(iface)

    def out(self, source: int, local: int) -> int:
        if (source, local) not in self.map:
            self.add_known(source)
        return self.map[source, local]


def merge(inputs: Sequence[RecordSource], writer: PcapngWriter) -> MergeResult:
    """Write every record of `inputs` to `writer` in timestamp order (ties: the later input first, as
    mergecap orders them, then file order).

    Memory holds one pending record per input, whatever the inputs' sizes. Each input interface becomes
    an output interface (inputs in order, interfaces in their order of appearance); the inputs' interface
    statistics follow the packets. Each input must itself be in timestamp order for the output to be.
    """
    interfaces = _Interfaces(inputs, writer)
    iterators = [iter(source) for source in inputs]
    heap: list[tuple[int, int, Record]] = []
    """(timestamp, -input index, record): one pending record per input."""
    for index, iterator in enumerate(iterators):
        first = next(iterator, None)
        interfaces.add_known(index)
        if first is not None:
            heap.append((first.ts_ns, -index, first))
    heapq.heapify(heap)
    counts = [0] * len(inputs)
    while heap:
        _, negative, record = heap[0]
        index = -negative
        writer.write_record(record, interfaces.out(index, record.interface))
        counts[index] += 1
        following = next(iterators[index], None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following.ts_ns, negative, following))
    for index, source in enumerate(inputs):
        interfaces.add_known(index)
        for stats in source.statistics:
            out = interfaces.map[index, stats.interface]
            writer.write_statistics(replace(stats, interface=out))
    return MergeResult(sum(counts), tuple(counts), dict(interfaces.map))


class BlockWindow:
    """Timestamp order for the encoded packets of several live streams, without an object per packet
    beyond the ones the stream's batch already holds.

    Each stream pushes its packets as (timestamps, blocks) in the stream's own order; the window keeps
    them per stream, sorted. A push releases every held packet whose timestamp is at least `window_ns`
    older than the newest pushed so far; when the held bytes (blocks plus `overhead` per packet) pass
    `max_bytes`, the oldest are released early (counted in `forced`) until at most half of `max_bytes`
    is held, so the cost of ordering is spread over many packets. Released packets are ordered by one
    stable sort of their timestamps (Timsort merges the streams' sorted runs in C): ties keep stream
    order, then arrival order, as mergecap orders ties by input. A packet older than one already
    released is released at once (never dropped) and counted in `late`.
    """

    def __init__(self, window_ns: int, max_bytes: int, overhead: int = 0) -> None:
        if window_ns < 0 or max_bytes < 0 or overhead < 0:
            raise ValueError("window_ns, max_bytes and overhead must be >= 0")
        self.window_ns = window_ns
        self.max_bytes = max_bytes
        self.overhead = overhead
        self.held_bytes = 0
        self.late = 0
        self.forced = 0
        self._stamps: list[list[int]] = []
        self._blocks: list[list[Buffer]] = []
        self._newest: int | None = None
        self._released: int | None = None
        self._heads: list[tuple[int, int]] = []
        """Heap of (oldest held timestamp, stream): a release looks only at streams that have something
        to release, whatever the number of streams (an entry whose stream's head moved is skipped)."""

    def __len__(self) -> int:
        return sum(map(len, self._stamps))

    def push(self, stream: int, stamps: list[int], blocks: list[Buffer]) -> list[Buffer]:
        """Add one stream's packets (timestamps and blocks, index for index); return the blocks this
        releases, in timestamp order."""
        if len(stamps) != len(blocks):
            raise ValueError("push() needs one timestamp per block")
        while len(self._stamps) <= stream:
            self._stamps.append([])
            self._blocks.append([])
        if not stamps:
            return []
        if stamps != sorted(stamps):
            order = sorted(range(len(stamps)), key=stamps.__getitem__)
            stamps, blocks = [stamps[i] for i in order], [blocks[i] for i in order]
        out: list[Buffer] = []
        released = self._released
        if released is not None and stamps[0] < released:
            late = bisect_left(stamps, released)
            out += blocks[:late]
            self.late += late
            stamps, blocks = stamps[late:], blocks[late:]
            if not stamps:
                return out
        held_stamps, held_blocks = self._stamps[stream], self._blocks[stream]
        head = held_stamps[0] if held_stamps else None
        unordered = bool(held_stamps) and held_stamps[-1] > stamps[0]
        held_stamps += stamps
        held_blocks += blocks
        if unordered:
            order = sorted(range(len(held_stamps)), key=held_stamps.__getitem__)
            held_stamps[:] = [held_stamps[i] for i in order]
            held_blocks[:] = [held_blocks[i] for i in order]
        if held_stamps[0] != head:
            heapq.heappush(self._heads, (held_stamps[0], stream))
        self.held_bytes += sum(map(len, blocks)) + self.overhead * len(blocks)
        if self._newest is None or stamps[-1] > self._newest:
            self._newest = stamps[-1]
        out += self._release(self._newest - self.window_ns)
        if self.held_bytes > self.max_bytes:
            before = len(out)
            out += self._release(self._oldest_within(self.held_bytes - self.max_bytes // 2))
            self.forced += len(out) - before
        return out

    def flush(self) -> list[Buffer]:
        """Release every held packet, oldest first."""
        if self._newest is None:
            return []
        return self._release(self._newest)

    def _gather(self, counts: dict[int, int]) -> tuple[list[int], list[Buffer]]:
        """The first counts[s] held packets of each stream s, the last stream first (not yet sorted)."""
        stamps: list[int] = []
        blocks: list[Buffer] = []
        for stream in sorted(counts, reverse=True):
            count = counts[stream]
            stamps += self._stamps[stream][:count]
            blocks += self._blocks[stream][:count]
        return stamps, blocks

    def _oldest_within(self, nbytes: int) -> int:
        """The timestamp up to which the oldest held packets add up to at least `nbytes`."""
        stamps, blocks = self._gather({stream: len(held) for stream, held in enumerate(self._stamps)})
        order = sorted(range(len(stamps)), key=stamps.__getitem__)
        sizes = accumulate(map(len, map(blocks.__getitem__, order)))
        overhead = self.overhead
        for count, size in enumerate(sizes, 1):
            if size + overhead * count >= nbytes:
                return stamps[order[count - 1]]
        return stamps[order[-1]]

    def _release(self, horizon: int) -> list[Buffer]:
        heads, held = self._heads, self._stamps
        counts: dict[int, int] = {}
        while heads and heads[0][0] <= horizon:
            oldest, stream = heapq.heappop(heads)
            if stream not in counts and held[stream] and held[stream][0] == oldest:
                counts[stream] = bisect_right(held[stream], horizon)
        if not counts:
            return []
        stamps, blocks = self._gather(counts)
        for stream, count in counts.items():
            del held[stream][:count]
            del self._blocks[stream][:count]
            if held[stream]:
                heapq.heappush(heads, (held[stream][0], stream))
        self.held_bytes -= sum(map(len, blocks)) + self.overhead * len(blocks)
        if len(counts) > 1:
            blocks = list(map(blocks.__getitem__, sorted(range(len(stamps)), key=stamps.__getitem__)))
        self._released = max(stamps)
        return blocks
