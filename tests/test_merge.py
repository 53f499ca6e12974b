"""Combining finished captures: the k-way merge of files (time order, nothing lost, interfaces and
comments kept, one pending record per input, ties as mergecap orders them); merged files are checked
with tshark/capinfos and against mergecap too. Live streams: test_block_window.py."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import (
    BASE_NS,
    capinfos,
    frame_origin,
    pcap_stream,
    requires_tools,
    sample_records,
    tshark_fields,
)

from esxcap.pcap import (
    EPB_INBOUND,
    EPB_OUTBOUND,
    CaptureFile,
    CaptureFormatError,
    CorruptCaptureError,
    Interface,
    InterfaceStatistics,
    NotPcapError,
    PcapngStreamReader,
    PcapngWriter,
    Record,
    merge,
)

SETTINGS = settings(max_examples=150, deadline=None)


def write_inputs(tmp_path: Path) -> list[Path]:
    """Three inputs: a microsecond pcap, a big-endian nanosecond pcap cut mid-record, and a pcapng with
    two interfaces (the second described after the first's packets) and statistics."""
    a = tmp_path / "esx01-vnic.pcap"
    a.write_bytes(pcap_stream(sample_records(40, stream=0, step_ns=3_000_000), nanos=False))
    b = tmp_path / "esx02-vmk0.pcap"
    full = pcap_stream(
        sample_records(25, stream=1, start_ns=BASE_NS + 1_500_000, step_ns=5_000_000), byteorder=">"
    )
    b.write_bytes(full[:-7])
    c = tmp_path / "esx03.pcapng"
    buf = io.BytesIO()
    writer = PcapngWriter(buf, comments=["esx03: pktcap-uw --uplink vmnic0 -o -"])
    first = writer.add_interface(
        Interface("esx03:vmnic0:UplinkRcvKernel:in", description="uplink", comments=("c1",))
    )
    for record in sample_records(10, stream=2, start_ns=BASE_NS + 700_000, step_ns=2_000_000):
        writer.write_record(record._replace(flags=EPB_INBOUND), first)
    second = writer.add_interface(Interface("esx03:vmnic0:UplinkSndKernel:out", description="uplink out"))
    for seq, record in enumerate(
        sample_records(10, stream=3, start_ns=BASE_NS + 30_000_000, step_ns=7_000_000)
    ):
        writer.write_packet(
            second,
            record.ts_ns,
            record.data,
            record.origlen,
            (f"n{seq}",) if seq == 2 else (),
            EPB_OUTBOUND,
        )
    writer.write_statistics(
        InterfaceStatistics(second, BASE_NS + 10**9, dropped=5, comments=("offset at end",))
    )
    c.write_bytes(buf.getvalue())
    return [a, b, c]


def merge_files(paths: Sequence[Path], out: Path) -> tuple[list[CaptureFile], int]:
    handles = [p.open("rb") for p in paths]
    try:
        sources = [CaptureFile(h, p.name, chunk_size=1000) for h, p in zip(handles, paths, strict=True)]
        with out.open("wb") as sink:
            result = merge(sources, PcapngWriter(sink, comments=["merged"]))
    finally:
        for handle in handles:
            handle.close()
    assert result.per_input == (40, 24, 20)
    return sources, result.packets


EXPECTED_NAMES = {
    0: "esx01-vnic.pcap",
    1: "esx02-vmk0.pcap",
    2: "esx03:vmnic0:UplinkRcvKernel:in",
    3: "esx03:vmnic0:UplinkSndKernel:out",
}


def test_merge_of_pcap_and_pcapng_files_is_time_ordered_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "merged.pcapng"
    sources, packets = merge_files(write_inputs(tmp_path), out)
    assert packets == 84
    cut_record = 16 + len(sample_records(25, stream=1)[-1].data)
    assert [s.truncated_bytes for s in sources] == [0, cut_record - 7, 0]
    reader = PcapngStreamReader()
    records = reader.feed(out.read_bytes())
    assert reader.finish() == 0
    assert len(records) == 84
    stamps = [r.ts_ns for r in records]
    assert stamps == sorted(stamps)
    names = [i.name for i in reader.interfaces]
    assert sorted(names) == sorted(EXPECTED_NAMES.values())
    for record in records:
        stream, _ = frame_origin(record.data)
        assert names[record.interface] == EXPECTED_NAMES[stream]
    seqs = sorted(frame_origin(r.data) for r in records)
    expected = [(0, i) for i in range(40)] + [(1, i) for i in range(24)] + [(2, i) for i in range(10)]
    assert seqs == sorted(expected + [(3, i) for i in range(10)])
    by_name = {i.name: i for i in reader.interfaces}
    assert by_name["esx03:vmnic0:UplinkRcvKernel:in"].comments == ("c1",)
    assert by_name["esx03:vmnic0:UplinkSndKernel:out"].description == "uplink out"
    assert [r.comments for r in records if r.comments] == [("n2",)]
    (stats,) = reader.statistics
    assert (names[stats.interface], stats.dropped, stats.comments) == (
        EXPECTED_NAMES[3],
        5,
        ("offset at end",),
    )
    assert sources[2].sections[0].comments == ("esx03: pktcap-uw --uplink vmnic0 -o -",)


@requires_tools
def test_merged_file_is_read_in_order_by_tshark(tmp_path: Path) -> None:
    out = tmp_path / "merged.pcapng"
    merge_files(write_inputs(tmp_path), out)
    info = capinfos(out)
    assert info.packets == 84
    assert info.general["Strict time order"] == ["True"]
    rows = tshark_fields(
        out, "frame.time_epoch", "frame.interface_name", "udp.srcport", "frame.packet_flags_direction"
    )
    assert len(rows) == 84
    stamps = [row[0] for row in rows]
    assert stamps == sorted(stamps, key=lambda s: tuple(int(p) for p in s.split(".")))
    directions = {2: "0x00000001", 3: "0x00000002"}  # the pcapng input's flags are kept
    for _, name, sport, direction in rows:
        assert name == EXPECTED_NAMES[int(sport) - 40000]
        assert direction == directions.get(int(sport) - 40000, "")


class CountingSource:
    """A RecordSource that tracks how far ahead of the writer it has been read."""

    def __init__(self, records: list[Record], name: str) -> None:
        self.records = records
        self.interfaces = [Interface(name)]
        self.statistics: list[InterfaceStatistics] = []
        self.yielded = 0

    def __iter__(self) -> Iterator[Record]:
        for record in self.records:
            self.yielded += 1
            yield record


class WatchingWriter(PcapngWriter):
    """Checks at every packet that no input was read more than one record ahead."""

    def __init__(self, sources: list[CountingSource]) -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer)
        self.sources = sources
        self.written = [0] * len(sources)

    def write_record(self, record: Record, interface: int | None = None) -> None:
        assert interface is not None
        self.written[interface] += 1
        for source, written in zip(self.sources, self.written, strict=True):
            assert source.yielded - written <= 1
        super().write_record(record, interface)


@SETTINGS
@given(
    gaps=st.lists(st.lists(st.integers(0, 5_000), max_size=40), min_size=1, max_size=6),
)
def test_merge_holds_one_record_per_input_and_orders_ties_as_mergecap(gaps: list[list[int]]) -> None:
    sources = []
    for index, steps in enumerate(gaps):
        ts, records = BASE_NS, []
        for step in steps:
            ts += step
            records.append(Record(ts, 60, bytes([index]) * 60))
        sources.append(CountingSource(records, f"s{index}"))
    writer = WatchingWriter(sources)
    result = merge(sources, writer)
    assert result.per_input == tuple(len(g) for g in gaps)
    reader = PcapngStreamReader()
    out = reader.feed(writer.buffer.getvalue())
    keys = [(r.ts_ns, -r.interface) for r in out]
    assert keys == sorted(keys)
    assert all(bytes(r.data)[0] == r.interface for r in out)


def test_merge_of_empty_inputs_still_declares_their_interfaces(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(pcap_stream([]))
    out = io.BytesIO()
    with empty.open("rb") as handle:
        result = merge([CaptureFile(handle, "esx09:vmk1:PortOutput:out")], PcapngWriter(out))
    assert result.packets == 0
    reader = PcapngStreamReader()
    assert reader.feed(out.getvalue()) == []
    assert [i.name for i in reader.interfaces] == ["esx09:vmk1:PortOutput:out"]


@pytest.mark.parametrize(
    ("content", "error", "reason"),
    [
        (b"ERROR: no such switchport\n", NotPcapError, "unknown magic"),
        (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16) + b"\xff" * 16, CorruptCaptureError, "offset 24"),
    ],
)
def test_bad_input_file_is_named_in_the_error(
    tmp_path: Path, content: bytes, error: type[CaptureFormatError], reason: str
) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with path.open("rb") as handle, pytest.raises(error) as caught:
        merge([CaptureFile(handle, "bad.pcap")], PcapngWriter(io.BytesIO()))
    assert str(caught.value).startswith("bad.pcap: ")
    assert reason in str(caught.value)
    assert caught.value.hint == "check that the file is a pcap or pcapng capture"


@requires_tools
def test_merge_of_files_with_ties_matches_mergecap(tmp_path: Path) -> None:
    """Same packets, same order as mergecap (ties between inputs: the later input first), pcap and
    pcapng inputs alike."""
    paths = []
    for index in range(3):
        records = sample_records(
            60, stream=index, start_ns=BASE_NS + (index % 2) * 500_000, step_ns=1_000_000
        )
        path = tmp_path / f"in{index}.pcap"
        if index == 2:
            path = tmp_path / "in2.pcapng"
            with path.open("wb") as handle:
                writer = PcapngWriter(handle)
                writer.add_interface(Interface("in2"))
                writer.write_records([(0, r) for r in records])
        else:
            path.write_bytes(pcap_stream(records))
        paths.append(path)
    ours, theirs = tmp_path / "ours.pcapng", tmp_path / "theirs.pcapng"
    handles = [p.open("rb") for p in paths]
    with ours.open("wb") as out:
        merge([CaptureFile(h, p.name) for h, p in zip(handles, paths, strict=True)], PcapngWriter(out))
    for handle in handles:
        handle.close()
    subprocess.run(["mergecap", "-I", "none", "-w", str(theirs), *map(str, paths)], check=True)
    fields = ("frame.time_epoch", "frame.interface_id", "frame.len", "udp.payload")
    rows = tshark_fields(ours, *fields)
    assert rows == tshark_fields(theirs, *fields) and len(rows) == 180
    assert len({row[0] for row in rows}) == 120, "inputs 0 and 2 share every timestamp"
