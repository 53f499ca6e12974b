"""Combining captures: the k-way merge of finished files (time order, nothing lost, interfaces and
comments kept, one pending record per input) and the live ReorderWindow (order within the window,
late records kept and counted, bounded size); merged files are checked with tshark/capinfos too."""

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
    epoch_text,
    frame_origin,
    pcap_stream,
    requires_tools,
    sample_records,
    tshark_fields,
)

from esxcap.pcap import (
    CaptureFile,
    CaptureFormatError,
    CorruptCaptureError,
    Interface,
    InterfaceStatistics,
    NotPcapError,
    PcapngStreamReader,
    PcapngWriter,
    Record,
    ReorderWindow,
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
        writer.write_record(record, first)
    second = writer.add_interface(Interface("esx03:vmnic0:UplinkSndKernel:out", description="uplink out"))
    for seq, record in enumerate(
        sample_records(10, stream=3, start_ns=BASE_NS + 30_000_000, step_ns=7_000_000)
    ):
        writer.write_packet(
            second, record.ts_ns, record.data, record.origlen, (f"n{seq}",) if seq == 2 else ()
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
    rows = tshark_fields(out, "frame.time_epoch", "frame.interface_name", "udp.srcport")
    assert len(rows) == 84
    stamps = [row[0] for row in rows]
    assert stamps == sorted(stamps, key=lambda s: tuple(int(p) for p in s.split(".")))
    for _, name, sport in rows:
        assert name == EXPECTED_NAMES[int(sport) - 40000]


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


Item = tuple[int, int, int]
"""(timestamp, stream, sequence number within the stream)."""


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


def arrivals(streams: list[list[int]], order: list[int]) -> list[Item]:
    """Interleave the streams (each sorted) in the arrival order given by stream picks; leftovers last."""
    positions = [0] * len(streams)
    out: list[Item] = []
    for pick in [*order, *list(range(len(streams))) * 40]:
        index = pick % len(streams)
        if positions[index] < len(streams[index]):
            out.append((streams[index][positions[index]], index, positions[index]))
            positions[index] += 1
    return out


@SETTINGS
@given(
    streams=st.lists(st.lists(st.integers(0, 10_000), max_size=30).map(sorted), min_size=1, max_size=5),
    order=st.lists(st.integers(0, 4), max_size=150),
    window_ns=st.integers(0, 3_000),
)
def test_reorder_window_orders_within_the_window_and_counts_late(
    streams: list[list[int]], order: list[int], window_ns: int
) -> None:
    window = ReorderWindow[Item](window_ns=window_ns)
    released: list[Item] = []
    late: list[Item] = []
    held: list[Item] = []
    newest = -1
    for pushed, item in enumerate(arrivals(streams, order), start=1):
        ts = item[0]
        lag = newest - ts
        newest = max(newest, ts)
        out = window.push(ts, item)
        if released and ts < max(r[0] for r in released):
            assert out == [item]
            assert lag > window_ns
            late.append(item)
            continue
        assert all(r[0] <= newest - window_ns for r in out)
        released += out
        held.append(item)
        held = [h for h in held if h not in out]
        assert len(window) == len(held) == pushed - len(released) - len(late)
        assert all(h[0] > newest - window_ns for h in held)
    released += window.flush()
    assert len(window) == 0
    assert (window.late, window.forced) == (len(late), 0)
    assert [r[0] for r in released] == sorted(r[0] for r in released)
    assert sorted(released + late) == sorted(arrivals(streams, []))
    for index in range(len(streams)):
        seqs = [r[2] for r in released if r[1] == index]
        assert seqs == sorted(seqs)


def test_reorder_window_with_a_lagging_stream_and_a_very_late_record() -> None:
    second = 1_000_000_000
    window = ReorderWindow[str]()
    out = window.push(BASE_NS, "a0")
    out += window.push(BASE_NS + second, "a1")
    out += window.push(BASE_NS + second // 2, "b0")
    assert out == ["a0"]
    out += window.push(BASE_NS + 2 * second, "a2")
    assert out == ["a0", "b0", "a1"]
    assert window.push(BASE_NS + second // 4, "b-late") == ["b-late"]
    assert window.late == 1
    assert window.flush() == ["a2"]
    assert window.push(BASE_NS, "after flush") == ["after flush"]
    assert window.late == 2


def test_reorder_window_size_is_bounded() -> None:
    window = ReorderWindow[int](window_ns=10**12, max_pending=3)
    released = []
    for ts in [5, 4, 3, 2, 1, 9, 8, 7]:
        released += window.push(ts, ts)
        assert len(window) <= 3
    released += window.flush()
    assert window.forced == 4
    assert released == [2, 1, 3, 4, 5, 7, 8, 9]
    assert window.late == 1  # 1 arrived after 2 had to leave early
    with pytest.raises(ValueError, match="max_pending"):
        ReorderWindow[int](max_pending=0)


def live_merge(
    streams: list[list[Record]], arrival: list[int], out: io.BytesIO
) -> ReorderWindow[tuple[int, Record]]:
    """Records of several streams pushed as they arrive, written as released (as the capture layer does)."""
    writer = PcapngWriter(out, comments=["live"])
    ids = [writer.add_interface(Interface(f"esx0{n}:vm:VnicRx:in")) for n in range(len(streams))]
    window = ReorderWindow[tuple[int, Record]](window_ns=50_000_000)
    positions = [0] * len(streams)
    for pick in arrival:
        stream = streams[pick]
        if positions[pick] < len(stream):
            record = stream[positions[pick]]
            positions[pick] += 1
            for iface, released in window.push(record.ts_ns, (ids[pick], record)):
                writer.write_record(released, iface)
    for iface, released in window.flush():
        writer.write_record(released, iface)
    return window


def test_live_merge_through_the_window_is_time_ordered() -> None:
    streams = [
        sample_records(30, stream=n, start_ns=BASE_NS + n * 333_333, step_ns=1_000_000) for n in range(3)
    ]
    arrival = [0] * 20 + [1] * 5 + [2] * 30 + [1] * 25 + [0] * 10
    out = io.BytesIO()
    window = live_merge(streams, arrival, out)
    assert window.late == 0
    reader = PcapngStreamReader()
    records = reader.feed(out.getvalue())
    assert len(records) == 90
    assert [r.ts_ns for r in records] == sorted(r.ts_ns for r in records)
    assert all(frame_origin(r.data)[0] == r.interface for r in records)


@requires_tools
def test_live_merge_output_reads_in_order_in_tshark(tmp_path: Path) -> None:
    streams = [
        sample_records(30, stream=n, start_ns=BASE_NS + n * 333_333, step_ns=1_000_000) for n in range(3)
    ]
    out = io.BytesIO()
    live_merge(streams, [2] * 30 + [0, 1] * 30, out)
    path = tmp_path / "live.pcapng"
    path.write_bytes(out.getvalue())
    assert capinfos(path).general["Strict time order"] == ["True"]
    rows = tshark_fields(path, "frame.time_epoch", "frame.interface_name")
    expected = sorted((r.ts_ns, n) for n, s in enumerate(streams) for r in s)
    assert rows == [[epoch_text(ts), f"esx0{n}:vm:VnicRx:in"] for ts, n in expected]


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
