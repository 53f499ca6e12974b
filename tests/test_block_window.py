"""Merging live streams without a Python object per packet: PcapngTranscoder batches with keys, the
BlockWindow that orders their blocks, and a CaptureSink of several streams against mergecap."""

from __future__ import annotations

import heapq
import io
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import BASE_NS, pcap_stream, requires_tools, sample_records

from esxcap.capture.sinks import CaptureSink
from esxcap.pcap import (
    BlockWindow,
    Interface,
    PcapngStreamReader,
    PcapngTranscoder,
    PcapngWriter,
    Record,
    encode_epb,
    epb_records,
)

SETTINGS = settings(max_examples=150, deadline=None)
Packet = tuple[int, int, int]
"""(timestamp, stream, sequence in its stream): what a test block stands for."""


def block(packet: Packet) -> bytes:
    return struct.pack("<QII", *packet)


def unblock(data: bytes | memoryview) -> Packet:
    ts, stream, seq = struct.unpack("<QII", data)
    return int(ts), int(stream), int(seq)


class PerPacketWindow:
    """The reorder window one packet at a time on a heap (as the capture path did before BlockWindow),
    ties ordered by stream (the later first, as mergecap does), then arrival: what BlockWindow must
    release when its byte bound is not hit."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.heap: list[tuple[int, int, int, Packet]] = []
        self.arrival = 0
        self.newest: int | None = None
        self.released: int | None = None
        self.late = 0

    def push(self, packets: list[Packet]) -> list[Packet]:
        out: list[Packet] = []
        for packet in sorted(packets, key=lambda p: p[0]):
            if self.released is not None and packet[0] < self.released:
                self.late += 1
                out.append(packet)
                continue
            heapq.heappush(self.heap, (packet[0], -packet[1], self.arrival, packet))
            self.arrival += 1
        if packets:
            newest = max(p[0] for p in packets)
            self.newest = newest if self.newest is None else max(self.newest, newest)
        assert self.newest is not None or not self.heap
        while self.heap and self.newest is not None and self.heap[0][0] <= self.newest - self.window_ns:
            out.append(heapq.heappop(self.heap)[3])
            self.released = out[-1][0]
        return out


chunks_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.lists(st.integers(0, 40), min_size=0, max_size=12),
        st.booleans(),
    ),
    max_size=40,
)
"""(stream, gaps between its next packets (0: a tie), whether this chunk arrives shuffled)."""


def chunked(spec: list[tuple[int, list[int], bool]]) -> list[tuple[int, list[Packet]]]:
    clocks, seqs = [0] * 4, [0] * 4
    chunks = []
    for stream, gaps, shuffled in spec:
        packets = []
        for gap in gaps:
            clocks[stream] += gap
            packets.append((clocks[stream], stream, seqs[stream]))
            seqs[stream] += 1
        if shuffled:
            packets.reverse()
        chunks.append((stream, packets))
    return chunks


@SETTINGS
@given(spec=chunks_strategy, window_ns=st.integers(0, 60))
def test_block_window_releases_what_a_per_packet_heap_releases(
    spec: list[tuple[int, list[int], bool]], window_ns: int
) -> None:
    window, model = BlockWindow(window_ns, max_bytes=1 << 40), PerPacketWindow(window_ns)
    for stream, packets in chunked(spec):
        out = window.push(stream, [p[0] for p in packets], [block(p) for p in packets])
        assert list(map(unblock, out)) == model.push(packets)
        assert len(window) == len(model.heap)
    assert list(map(unblock, window.flush())) == [
        heapq.heappop(model.heap)[3] for _ in range(len(model.heap))
    ]
    assert window.late == model.late and window.held_bytes == 0 and len(window) == 0


@SETTINGS
@given(spec=chunks_strategy, max_bytes=st.integers(0, 400), overhead=st.integers(0, 20))
def test_block_window_keeps_its_byte_bound_and_loses_nothing(
    spec: list[tuple[int, list[int], bool]], max_bytes: int, overhead: int
) -> None:
    window = BlockWindow(10**9, max_bytes=max_bytes, overhead=overhead)
    chunks = chunked(spec)
    released: list[Packet] = []
    for stream, packets in chunks:
        released += map(unblock, window.push(stream, [p[0] for p in packets], [block(p) for p in packets]))
        assert window.held_bytes <= max_bytes
        assert window.held_bytes == len(window) * (16 + overhead)
    released += map(unblock, window.flush())
    assert sorted(released) == sorted(p for _, packets in chunks for p in packets)
    in_order = [ts for ts, _, _ in released]
    assert window.late or in_order == sorted(in_order)
    for stream in range(4):
        own = [ts for ts, of, _ in released if of == stream]
        assert window.late or own == sorted(own)


def test_block_window_counts_late_and_forced_packets() -> None:
    window = BlockWindow(window_ns=100, max_bytes=2 * 16)
    assert window.push(0, [10, 20], [block((10, 0, 0)), block((20, 0, 1))]) == []
    assert window.push(1, [30], [block((30, 1, 0))]) == [block((10, 0, 0)), block((20, 0, 1))]
    assert window.forced == 2 and window.held_bytes == 16
    assert window.push(1, [15], [block((15, 1, 1))]) == [block((15, 1, 1))]
    assert window.late == 1
    with pytest.raises(ValueError, match="one timestamp per block"):
        window.push(0, [1, 2], [block((1, 0, 2))])
    with pytest.raises(ValueError, match=">= 0"):
        BlockWindow(-1, 0)


@given(
    shift_ns=st.integers(-(10**9), 10**12),
    cut=st.integers(24, 2000),
)
@settings(max_examples=60, deadline=None)
def test_keyed_batches_cut_into_the_blocks_the_writer_writes(shift_ns: int, cut: int) -> None:
    records = sample_records(25, start_ns=BASE_NS + 999_000_000, step_ns=37_000_000)
    stream = pcap_stream(records)
    reader = PcapngTranscoder()
    reader.feed(stream[:24])
    batches = [
        reader.transcode(part, 3, shift_ns=shift_ns, keys=True) for part in (stream[24:cut], stream[cut:])
    ]
    stamps = [ts for batch in batches for ts in batch.stamps or []]
    blocks = [bytes(b) for batch in batches for b in batch.blocks()]
    shifted = [r.ts_ns + shift_ns for r in records]
    assert stamps == shifted
    assert blocks == [encode_epb(3, ts, r.data, r.origlen) for ts, r in zip(shifted, records, strict=True)]
    assert [(r.interface, r.ts_ns, bytes(r.data)) for r in epb_records(blocks)] == [
        (3, ts, r.data) for ts, r in zip(shifted, records, strict=True)
    ]
    with pytest.raises(ValueError, match="keys=True"):
        reader.transcode(b"", 3).blocks()


def _old_per_packet_file(streams: list[list[Record]], names: list[str]) -> bytes:
    """What the capture path wrote before: every record copied, ordered one by one, written by the writer."""
    out = io.BytesIO()
    writer = PcapngWriter(out, comments=("merged",))
    for name in names:
        writer.add_interface(Interface(name))
    items = sorted(((r.ts_ns, -i, n, r) for i, s in enumerate(streams) for n, r in enumerate(s)))
    writer.write_records([(-i, r) for _, i, _, r in items])
    return out.getvalue()


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 60), min_size=2, max_size=4),
    step=st.sampled_from([0, 1_000, 333_000, 5_000_000]),
    cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=8),
)
def test_sink_of_several_streams_writes_the_old_per_packet_merges_bytes(
    sizes: list[int], step: int, cuts: list[int]
) -> None:
    streams = [
        sample_records(n, stream=i, start_ns=BASE_NS + i * 500, step_ns=step) for i, n in enumerate(sizes)
    ]
    names = [f"esx0{i}:vm:VnicRx:in" for i in range(len(streams))]
    out = io.BytesIO()
    sink = CaptureSink(out, comments=["merged"])
    for _ in streams:
        sink.expect_stream()
    pending = []
    for i, records in enumerate(streams):
        data = pcap_stream(records)
        reader = PcapngTranscoder()
        reader.feed(data[:24])
        iface = sink.add_stream(Interface(names[i]))
        pieces, pos = [], 24
        for cut in cuts:
            pieces.append(data[pos : pos + cut])
            pos += cut
        pieces.append(data[pos:])
        pending.append((iface, reader, pieces))
    while any(pieces for _, _, pieces in pending):
        for iface, reader, pieces in pending:
            if pieces:
                sink.write_batch(iface, reader.transcode(pieces.pop(0), iface, keys=sink.wants_keys))
    sink.finish(BASE_NS)
    expected = _old_per_packet_file(streams, names)
    written = out.getvalue()
    assert written[: len(expected)] == expected
    stats = PcapngStreamReader()
    stats.feed(written)
    assert [s.received for s in stats.statistics] == sizes
    assert sink.late == 0


@requires_tools
def test_live_merge_of_three_streams_equals_mergecap(tmp_path: Path) -> None:
    streams = [
        sample_records(400, stream=i, start_ns=BASE_NS + i * 250_000, step_ns=(i + 1) * 300_000)
        for i in range(3)
    ]
    streams[2] = [r._replace(ts_ns=streams[0][n].ts_ns) for n, r in enumerate(streams[2])]  # ties
    inputs = []
    for i, records in enumerate(streams):
        path = tmp_path / f"in{i}.pcap"
        path.write_bytes(pcap_stream(records))
        inputs.append(path)
    ours = tmp_path / "ours.pcapng"
    sink = CaptureSink(ours, comments=["merged"])
    for _ in streams:
        sink.expect_stream()
    feeds = []
    for path in inputs:
        data = path.read_bytes()
        reader = PcapngTranscoder()
        reader.feed(data[:24])
        feeds.append((sink.add_stream(Interface(path.name)), reader, data[24:]))
    for start in range(0, max(len(d) for _, _, d in feeds), 1500):
        for iface, reader, data in reversed(feeds):
            sink.write_batch(iface, reader.transcode(data[start : start + 1500], iface, keys=True))
    sink.finish(BASE_NS)
    theirs = tmp_path / "mergecap.pcapng"
    subprocess.run(["mergecap", "-I", "none", "-w", str(theirs), *map(str, inputs)], check=True)
    fields = ["-T", "fields", "-e", "frame.time_epoch", "-e", "frame.interface_id", "-e", "udp.payload"]
    read = [
        subprocess.run(["tshark", "-r", str(p), *fields], capture_output=True, check=True).stdout
        for p in (ours, theirs)
    ]
    assert read[0] == read[1]
    assert read[0].count(b"\n") == 1200
