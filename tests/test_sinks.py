"""The capture sink and its fast path: a pcap stream transcoded chunk by chunk gives the bytes the record
writer gives, a sink of one stream writes straight through, a sink of several holds copies (never the read
chunks) in a window bounded by bytes, and every file opens in tshark with the same packets."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import BASE_NS, capinfos, pcap_stream, requires_tools, sample_records, tshark_fields

from esxcap.capture import sinks
from esxcap.capture.sinks import CaptureSink
from esxcap.pcap import (
    EPB_INBOUND,
    EPB_OUTBOUND,
    CorruptCaptureError,
    EpbBatch,
    Interface,
    PcapngStreamReader,
    PcapngTranscoder,
    PcapngWriter,
    PcapStreamReader,
    Record,
)


def _records() -> st.SearchStrategy[list[Record]]:
    """Packets of 0-90 bytes; timestamps from anywhere in pcap's range, 0 to 3 s apart (so runs cross
    seconds and the 2**32 ns steps of the block's high timestamp word)."""
    packets = st.lists(st.tuples(st.integers(0, 90), st.integers(0, 3_000_000_000)), max_size=60)
    return st.tuples(st.integers(BASE_NS, 4_000_000_000 * 10**9), packets).map(
        lambda drawn: [
            Record(
                drawn[0] + sum(gap for _, gap in drawn[1][: i + 1]),
                n + i % 3,
                bytes((i + k) % 256 for k in range(n)),
            )
            for i, (n, _) in enumerate(drawn[1])
        ]
    )


@settings(max_examples=150, deadline=None)
@given(
    records=_records(),
    nanos=st.booleans(),
    cuts=st.lists(st.integers(1, 400), max_size=20),
    room=st.one_of(st.none(), st.integers(0, 3000)),
    flags=st.sampled_from([0, EPB_INBOUND, EPB_OUTBOUND]),
)
def test_transcoded_chunks_are_the_blocks_the_record_writer_writes(
    records: list[Record], nanos: bool, cuts: list[int], room: int | None, flags: int
) -> None:
    if not nanos:
        records = [r._replace(ts_ns=r.ts_ns // 1000 * 1000) for r in records]
    stream = pcap_stream(records, nanos=nanos)
    reader = PcapngTranscoder()
    assert reader.feed(stream[:24]) == []
    pos, blocks, packets, nbytes, limited = 24, [], 0, 0, False
    stamps: list[tuple[int, int | None, int | None]] = []
    for cut in [*cuts, len(stream)]:
        left = None if room is None else -1 if limited else room - nbytes
        batch = reader.transcode(stream[pos : pos + cut], interface=1, room=left, flags=flags)
        blocks.append(b"".join(batch.parts))
        stamps.append((batch.packets, batch.first_ns, batch.last_ns))
        packets, nbytes, limited = (
            packets + batch.packets,
            nbytes + batch.bytes,
            limited or batch.limit_reached,
        )
        pos += cut
    assert reader.finish() == 0

    kept, total = [], 0
    for record in records:
        if room is not None and total + len(record.data) > room:
            break
        kept.append(record)
        total += len(record.data)
    expected = io.BytesIO()
    writer = PcapngWriter(expected)
    start = expected.tell()
    writer.add_interface(Interface("a"))
    writer.add_interface(Interface("b"))
    idbs = expected.getvalue()[start:]
    writer.write_records([(1, record._replace(flags=flags)) for record in kept])
    assert b"".join(blocks) == expected.getvalue()[start + len(idbs) :]
    assert (packets, nbytes, limited) == (len(kept), total, len(kept) < len(records))
    done = 0
    for count, first_ns, last_ns in stamps:
        if count:
            assert (first_ns, last_ns) == (kept[done].ts_ns, kept[done + count - 1].ts_ns)
        done += count


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_transcoded_timestamps_of_odd_records_are_the_record_writers(byteorder: str, nanos: bool) -> None:
    """Fractions a well-behaved writer never sends (a microsecond field of a million and more, nanoseconds
    of a second and more) and seconds at the end of pcap's range still give the record writer's blocks."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    fractions = [0, 999_999, 1_000_000, 4_294_967_295] + ([999_999_999, 1_000_000_000] if nanos else [])
    seconds = [0, 1, 1_700_000_000, 4_294_967_294, 4_294_967_295]
    stream = struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for sec in seconds:
        for frac in fractions:
            stream += struct.pack(byteorder + "IIII", sec, frac, 3, 3) + b"abc"
    reader = PcapngTranscoder()
    reader.feed(stream[:24])
    batch = reader.transcode(stream[24:], interface=0)
    records = PcapStreamReader().feed(stream)
    expected = io.BytesIO()
    writer = PcapngWriter(expected)
    writer.add_interface(Interface("a"))
    after_idb = expected.tell()
    writer.write_records([(0, record) for record in records])
    assert b"".join(batch.parts) == expected.getvalue()[after_idb:]
    assert (batch.first_ns, batch.last_ns) == (records[0].ts_ns, records[-1].ts_ns)


def test_transcode_keeps_the_packets_before_a_corrupt_record() -> None:
    good = sample_records(3)
    stream = bytearray(pcap_stream(good))
    stream += struct.pack("<IIII", 1, 0, 10_000_000, 60)
    reader = PcapngTranscoder()
    reader.feed(stream[:24])
    batch = reader.transcode(bytes(stream[24:]), 0)
    assert batch.packets == 3
    assert (batch.first_ns, batch.last_ns) == (good[0].ts_ns, good[-1].ts_ns)
    with pytest.raises(CorruptCaptureError, match="10000000 captured bytes"):
        reader.transcode(b"more", 0)


def test_transcode_needs_the_stream_header_first() -> None:
    with pytest.raises(ValueError, match="header"):
        PcapngTranscoder().transcode(pcap_stream(sample_records(1)), 0)


def _read(data: bytes) -> list[tuple[int, int, bytes]]:
    return [(r.interface, r.ts_ns, bytes(r.data)) for r in PcapngStreamReader().feed(data)]


def test_a_sink_of_one_stream_writes_each_chunk_at_once() -> None:
    out = io.BytesIO()
    sink = CaptureSink(out, comments=["one stream"])
    sink.expect_stream()
    iface = sink.add_stream(Interface("esx01:vm:VnicTx:out"))
    assert sink.writes_through and not sink.wants_keys
    records = sample_records(50)
    stream = pcap_stream(records)
    reader = PcapngTranscoder()
    sink.push(iface, reader.feed(stream[:1000]))
    sink.write_batch(iface, reader.transcode(stream[1000:], iface))
    assert _read(out.getvalue()) == [(0, r.ts_ns, bytes(r.data)) for r in records]
    assert (sink.late, sink.packet_bytes) == (0, sum(len(r.data) for r in records))


def test_a_sink_of_several_streams_holds_copies_within_its_byte_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sinks, "REORDER_MAX_BYTES", 8_000)
    monkeypatch.setattr(sinks, "REORDER_BYTES_PER_STREAM", 3_000)
    out = io.BytesIO()
    sink = CaptureSink(out, comments=["two streams"])
    sink.expect_stream()
    sink.expect_stream()
    ids = [sink.add_stream(Interface(f"esx0{n}:vm:VnicRx:in")) for n in (1, 2)]
    assert sink.wants_keys
    with pytest.raises(ValueError, match="keys"):
        sink.write_batch(ids[0], _one_packet_batch(keys=False))
    streams = [sample_records(40, stream=n, start_ns=BASE_NS + n * 1000) for n in (0, 1)]
    for first, second in zip(*streams, strict=True):
        for iface, record in ((ids[1], second), (ids[0], first)):
            chunk = bytearray(record.data)
            view = memoryview(chunk)
            sink.push(iface, [record._replace(data=view)])
            view.release()
            chunk.extend(b"-")  # raises BufferError if the sink still held a view of the chunk
            assert sink.held_bytes <= 8_000
    assert len(out.getvalue()) > 0, "the byte bound released packets before the end"
    sink.finish(BASE_NS + 10**9)
    written = _read(out.getvalue())
    assert [ts for _, ts, _ in written] == sorted(r.ts_ns for s in streams for r in s)
    assert sorted(data for _, _, data in written) == sorted(bytes(r.data) for s in streams for r in s)


def _one_packet_batch(keys: bool) -> EpbBatch:
    reader = PcapngTranscoder()
    stream = pcap_stream(sample_records(1))
    reader.feed(stream[:24])
    return reader.transcode(stream[24:], 0, keys=keys)


@requires_tools
def test_files_of_one_and_of_two_streams_open_in_tshark(tmp_path: Path) -> None:
    streams = [sample_records(30, stream=n, start_ns=BASE_NS + n * 500_000) for n in (0, 1)]
    for count in (1, 2):
        path = tmp_path / f"{count}.pcapng"
        sink = CaptureSink(path, comments=[f"{count} streams"])
        for _ in range(count):
            sink.expect_stream()
        for n in range(count):
            stream, iface = pcap_stream(streams[n]), sink.add_stream(Interface(f"esx0{n}:vm:VnicRx:in"))
            reader = PcapngTranscoder()
            sink.push(iface, reader.feed(stream[:300]))
            sink.write_batch(iface, reader.transcode(stream[300:], iface, keys=sink.wants_keys))
        sink.finish(BASE_NS + 10**9)
        expected = sorted(r.ts_ns for s in streams[:count] for r in s)
        assert capinfos(path).packets == len(expected)
        rows = tshark_fields(path, "frame.time_epoch", "udp.length")
        assert [int(row[0].replace(".", "")) for row in rows] == expected
