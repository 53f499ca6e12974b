"""The classic pcap core: header validation, incremental reading under any chunking, cut streams that keep
every complete record, corrupt or foreign bytes that raise only our error types, and byte-exact
pass-through writing; written files are read back by capinfos/tshark too."""

from __future__ import annotations

import io
import struct
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import (
    BASE_NS,
    capinfos,
    epoch_text,
    pcap_stream,
    requires_tools,
    sample_records,
    tshark_fields,
)

from esxcap.errors import HostError
from esxcap.pcap import (
    CaptureFormatError,
    CorruptCaptureError,
    NotPcapError,
    PcapStreamReader,
    PcapWriter,
    Record,
    encode_record,
    parse_global_header,
    write_pcap_header,
)

SETTINGS = settings(max_examples=150, deadline=None)
FORMATS = [("<", True), ("<", False), (">", True), (">", False)]


def read_all(data: bytes, cuts: list[int] | None = None) -> tuple[PcapStreamReader, list[Record]]:
    reader = PcapStreamReader()
    records: list[Record] = []
    bounds = [0, *sorted(cuts or []), len(data)]
    for start, stop in pairwise(bounds):
        records += reader.feed(data[start:stop])
    return reader, records


def as_tuples(records: list[Record]) -> list[tuple[int, int, bytes]]:
    return [(r.ts_ns, r.origlen, bytes(r.data)) for r in records]


@pytest.mark.parametrize(("byteorder", "nanos"), FORMATS)
def test_header_in_both_byte_orders_and_resolutions(byteorder: str, nanos: bool) -> None:
    records = sample_records(5)
    data = pcap_stream(records, nanos=nanos, byteorder=byteorder, snaplen=1500, linktype=1)
    header = parse_global_header(data[:24])
    assert (header.byteorder, header.nanos, header.version) == (byteorder, nanos, (2, 4))
    assert (header.snaplen, header.linktype, header.raw) == (1500, 1, data[:24])
    reader, got = read_all(data)
    assert reader.header == header
    assert as_tuples(got) == as_tuples(records)
    assert (reader.packets, reader.bytes, reader.finish()) == (5, sum(len(r.data) for r in records), 0)


def test_microsecond_stream_keeps_microseconds() -> None:
    record = Record(BASE_NS + 123_456_789, 60, bytes(60))
    _, got = read_all(pcap_stream([record], nanos=False))
    assert got[0].ts_ns == BASE_NS + 123_456_000


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"pktcap-uw: Invalid option --bogus\n\x1b[31mhelp\x1b[0m follows and more text", "unknown magic"),
        (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng, not classic pcap"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1), "version 3.0"),
        (b"", "ended after 0 bytes"),
        (struct.pack("<IHH", 0xA1B2C3D4, 2, 4), "ended after 8 bytes"),
    ],
)
def test_not_pcap_is_reported_with_first_bytes_shown_safely(head: bytes, reason: str) -> None:
    reader = PcapStreamReader()
    with pytest.raises(NotPcapError) as caught:
        reader.feed(head)
        reader.finish()
    message = str(caught.value)
    assert reason in message
    assert isinstance(caught.value, HostError)
    assert caught.value.hint and "error output" in caught.value.hint
    assert "\n" not in message and "\x1b" not in message
    if head:
        assert repr(head[:8])[2:-1] in message


def test_foreign_stream_is_rejected_from_its_first_four_bytes() -> None:
    reader = PcapStreamReader()
    assert reader.feed(b"\xd4\xc3") == []
    with pytest.raises(NotPcapError):
        reader.feed(b"XY")


@SETTINGS
@given(
    fmt=st.sampled_from(FORMATS),
    count=st.integers(0, 30),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_chunking_gives_the_same_records(fmt: tuple[str, bool], count: int, cuts: list[int]) -> None:
    byteorder, nanos = fmt
    records = sample_records(count)
    data = pcap_stream(records, nanos=nanos, byteorder=byteorder)
    reader, got = read_all(data, [c % (len(data) + 1) for c in cuts])
    _, whole = read_all(data)
    assert as_tuples(got) == as_tuples(whole)
    assert len(got) == count
    assert reader.finish() == 0
    assert (reader.packets, reader.offset) == (count, len(data))


@SETTINGS
@given(count=st.integers(1, 20), cut=st.integers(0, 10_000), chunk=st.integers(1, 600))
def test_cut_stream_keeps_every_complete_record(count: int, cut: int, chunk: int) -> None:
    records = sample_records(count)
    data = pcap_stream(records)
    cut = 24 + cut % (len(data) - 24 + 1)
    reader, got = read_all(data[:cut], list(range(chunk, cut, chunk)))
    ends = [24]
    for record in records:
        ends.append(ends[-1] + 16 + len(record.data))
    complete = [end for end in ends if end <= cut]
    assert len(got) == len(complete) - 1
    assert as_tuples(got) == as_tuples(records[: len(got)])
    assert reader.finish() == reader.partial_bytes == cut - complete[-1]


@SETTINGS
@given(count=st.integers(0, 12), fmt=st.sampled_from(FORMATS), cut=st.integers(0, 10_000))
def test_pass_through_writer_is_byte_exact(count: int, fmt: tuple[str, bool], cut: int) -> None:
    data = pcap_stream(sample_records(count), nanos=fmt[1], byteorder=fmt[0])
    cut = 24 + cut % (len(data) - 23)
    reader = PcapStreamReader()
    out = io.BytesIO()
    first = reader.feed(data[:cut][:100])
    assert reader.header is not None
    writer = PcapWriter(out, reader.header)
    writer.write(first)
    writer.write(reader.feed(data[:cut][100:]))
    assert out.getvalue() == data[: cut - reader.partial_bytes]
    assert writer.packets == reader.packets


def test_records_view_into_the_chunk_without_copying() -> None:
    data = pcap_stream(sample_records(10))
    reader = PcapStreamReader()
    reader.feed(data[:24])
    chunk = data[24:]
    got = reader.feed(chunk)
    assert len(got) == 10
    assert all(isinstance(r.data, memoryview) and r.data.obj is chunk for r in got)


def test_oversized_record_is_corrupt_at_its_offset_before_anything_is_buffered() -> None:
    records = sample_records(3)
    data = bytearray(pcap_stream(records, snaplen=1500))
    bad = 24 + 16 + len(records[0].data)
    struct.pack_into("<I", data, bad + 8, 0x7FFFFFF0)
    reader = PcapStreamReader()
    assert as_tuples(reader.feed(bytes(data))) == as_tuples(records[:1])
    with pytest.raises(CorruptCaptureError) as caught:
        reader.finish()
    assert caught.value.offset == bad
    with pytest.raises(CorruptCaptureError):
        reader.feed(b"more")
    assert f"offset {bad}" in str(caught.value)
    reader = PcapStreamReader()
    assert len(reader.feed(bytes(data[: bad + 10]))) == 1
    with pytest.raises(CorruptCaptureError) as caught:
        reader.feed(bytes(data[bad + 10 : bad + 20]))
    assert caught.value.offset == bad
    assert reader.partial_bytes < 32


def test_caplen_limit_follows_snaplen_but_tolerates_a_small_header_snaplen() -> None:
    assert parse_global_header(write_pcap_header(snaplen=96)).caplen_limit == 65535 + 64
    assert parse_global_header(write_pcap_header(snaplen=200_000)).caplen_limit == 200_064
    assert parse_global_header(write_pcap_header(snaplen=0xFFFFFFFF)).caplen_limit == 256 * 1024
    big = Record(BASE_NS, 70_000, bytes(70_000))
    _, got = read_all(pcap_stream([big], snaplen=100_000))
    assert got[0].caplen == 70_000
    with pytest.raises(CorruptCaptureError):
        read_all(pcap_stream([big], snaplen=1500))


@SETTINGS
@given(
    junk=st.binary(max_size=400),
    keep_header=st.booleans(),
    cuts=st.lists(st.integers(0, 500), max_size=5),
)
def test_random_bytes_raise_only_our_errors(junk: bytes, keep_header: bool, cuts: list[int]) -> None:
    data = (write_pcap_header(snaplen=256) + junk) if keep_header else junk
    try:
        reader, _ = read_all(data, [c % (len(data) + 1) for c in cuts])
        reader.finish()
    except CaptureFormatError:
        pass


@SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=6))
def test_corrupted_valid_streams_raise_only_our_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(pcap_stream(sample_records(8), snaplen=1500))
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    try:
        reader, records = read_all(bytes(data), [300, 301, 700])
        reader.finish()
    except CaptureFormatError:
        return
    assert all(r.caplen <= 65535 + 64 for r in records)


def test_encode_record_and_default_header() -> None:
    header = parse_global_header(write_pcap_header(linktype=1, snaplen=262144, nanos=False))
    assert (header.byteorder, header.nanos, header.snaplen) == ("<", False, 262144)
    record = Record(BASE_NS + 5_000, 99, b"abc")
    assert encode_record(record, header) == struct.pack("<IIII", BASE_NS // 10**9, 5, 3, 99)


def write_cut_file(tmp_path: Path, cut_into_last: int) -> tuple[Path, int]:
    """A stream cut `cut_into_last` bytes into its last record, written through our reader and writer."""
    records = sample_records(7)
    data = pcap_stream(records)
    cut = len(data) - 16 - len(records[-1].data) + cut_into_last
    reader = PcapStreamReader()
    path = tmp_path / f"cut{cut_into_last}.pcap"
    with path.open("wb") as out:
        writer = None
        for start in range(0, cut, 50):
            got = reader.feed(data[start : min(start + 50, cut)])
            if writer is None and reader.header is not None:
                writer = PcapWriter(out, reader.header)
            if writer:
                writer.write(got)
    assert reader.finish() == cut_into_last
    _, back = read_all(path.read_bytes())
    assert as_tuples(back) == as_tuples(records[:6])
    return path, 6


@pytest.mark.parametrize("cut_into_last", [0, 5, 16, 20])
def test_cut_stream_file_reads_back(tmp_path: Path, cut_into_last: int) -> None:
    write_cut_file(tmp_path, cut_into_last)


@requires_tools
@pytest.mark.parametrize("cut_into_last", [0, 5, 16, 20])
def test_cut_stream_file_opens_in_capinfos_and_tshark(tmp_path: Path, cut_into_last: int) -> None:
    path, expected = write_cut_file(tmp_path, cut_into_last)
    assert capinfos(path).packets == expected
    rows = tshark_fields(path, "frame.time_epoch", "udp.dstport", "frame.cap_len")
    assert len(rows) == expected
    assert all(row[1] == "53" for row in rows)
    assert [row[0] for row in rows] == [epoch_text(BASE_NS + i * 1_000_000) for i in range(expected)]
