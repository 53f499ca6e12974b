"""`esxcap merge` at the block level (esxcap.pcap.filemerge): the same packets in the same order as the
record-by-record merge (one pending record per input, mergecap's algorithm) for any mix of inputs and
any chunking, packet-exact against mergecap through tshark, about one chunk held per input, and bad
inputs named; the output written by a thread of its own, in order, its errors named."""

from __future__ import annotations

import errno
import io
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import (
    BASE_NS,
    block,
    epb,
    idb,
    pcap_stream,
    requires_tools,
    sample_records,
    shb,
    tshark_fields,
)

from esxcap.capture.merging import BackgroundWrites
from esxcap.capture.sinks import OutputError
from esxcap.pcap import (
    CaptureFile,
    CaptureFormatError,
    Interface,
    InterfaceStatistics,
    PcapngStreamReader,
    PcapngWriter,
    Record,
    merge,
)
from esxcap.pcap.filemerge import merge_files

SETTINGS = settings(max_examples=120, deadline=None)
KINDS = ("pcap-usec", "pcap-nsec-be", "ours", "foreign-usec", "foreign-be", "simple")


def encode(kind: str, index: int, stamps: Sequence[int]) -> bytes:
    """One input of `kind` holding a packet per timestamp (microsecond multiples), packet i of input
    `index` carrying (index, i) in its UDP frame."""
    records = [
        Record(ts, len(r.data) + 2, r.data)
        for ts, r in zip(stamps, sample_records(len(stamps), stream=index), strict=True)
    ]
    if kind == "pcap-usec":
        return pcap_stream(records, nanos=False)
    if kind == "pcap-nsec-be":
        return pcap_stream(records, byteorder=">")
    if kind == "ours":
        out = io.BytesIO()
        writer = PcapngWriter(out, comments=[f"input {index}"])
        writer.add_interface(Interface(f"ours{index}", description="first"))
        for seq, record in enumerate(records):
            if seq == 3:
                writer.add_interface(Interface(f"ours{index}-late"))
            comments = (f"c{seq}",) if seq % 4 == 1 else ()
            writer.write_packet(int(seq > 3), record.ts_ns, record.data, record.origlen, comments, seq % 3)
        writer.write_statistics(InterfaceStatistics(0, BASE_NS, received=len(records), dropped=1))
        return out.getvalue()
    order = ">" if kind == "foreign-be" else "<"
    parts = [shb(order), idb(order, f"{kind}{index}".encode(), tsresol=None if kind != "simple" else 9)]
    for seq, record in enumerate(records):
        if kind == "simple" and seq % 2:
            parts.append(block(order, 3, struct.pack(order + "I", record.caplen) + bytes(record.data)))
        else:
            units = record.ts_ns if kind == "simple" else record.ts_ns // 1000
            parts.append(epb(order, 0, units, bytes(record.data)))
    return b"".join(parts)


def by_blocks(datas: Sequence[bytes], chunk_size: int) -> tuple[list[Record], list[str], PcapngStreamReader]:
    out = io.BytesIO()
    files = [(io.BytesIO(data), f"in{i}") for i, data in enumerate(datas)]
    merge_files(files, PcapngWriter(out), chunk_size=chunk_size)
    return read_back(out.getvalue())


def by_records(datas: Sequence[bytes]) -> tuple[list[Record], list[str], PcapngStreamReader]:
    out = io.BytesIO()
    merge([CaptureFile(io.BytesIO(data), f"in{i}") for i, data in enumerate(datas)], PcapngWriter(out))
    return read_back(out.getvalue())


def read_back(data: bytes) -> tuple[list[Record], list[str], PcapngStreamReader]:
    reader = PcapngStreamReader()
    records = reader.feed(data)
    assert reader.finish() == 0
    return records, [i.name for i in reader.interfaces], reader


def comparable(
    records: list[Record], names: list[str]
) -> list[tuple[int, str, int, bytes, tuple[str, ...], int]]:
    return [(r.ts_ns, names[r.interface], r.origlen, bytes(r.data), r.comments, r.flags) for r in records]


@SETTINGS
@given(
    inputs=st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.lists(st.integers(-3, 40), min_size=0, max_size=30),
        ),
        min_size=1,
        max_size=5,
    ),
    chunk_size=st.integers(1, 400),
)
def test_block_merge_writes_what_the_record_merge_writes(
    inputs: list[tuple[str, list[int]]], chunk_size: int
) -> None:
    """Any mix of pcap and pcapng inputs (ours with late interfaces, comments and statistics; foreign ones
    in microseconds, big-endian, with Simple Packet Blocks), timestamps that tie across inputs and go
    backwards within one, any chunking: packets, order, interfaces and statistics as merge() writes."""
    datas = []
    for index, (kind, steps) in enumerate(inputs):
        stamps, ts = [], BASE_NS
        for step in steps:
            ts += step * 1000
            stamps.append(ts)
        datas.append(encode("foreign-usec" if kind == "simple" and not stamps else kind, index, stamps))
    ours, our_names, our_reader = by_blocks(datas, chunk_size)
    theirs, their_names, their_reader = by_records(datas)
    assert comparable(ours, our_names) == comparable(theirs, their_names)
    assert sorted(our_names) == sorted(their_names)
    assert [(our_names[s.interface], s.received, s.dropped) for s in our_reader.statistics] == [
        (their_names[s.interface], s.received, s.dropped) for s in their_reader.statistics
    ]


def test_cut_inputs_keep_every_whole_packet_and_say_how_much_was_cut() -> None:
    stamps = [BASE_NS + i * 1000 for i in range(20)]
    pcap, ng = encode("pcap-usec", 0, stamps), encode("ours", 1, stamps)
    files = [(io.BytesIO(pcap[:-5]), "a"), (io.BytesIO(ng[:-7]), "b")]
    result = merge_files(files, PcapngWriter(io.BytesIO()), chunk_size=64)
    assert result.result.per_input == (19, 20)
    assert result.truncated_bytes[0] == 16 + len(sample_records(20)[-1].data) - 5
    assert 0 < result.truncated_bytes[1] < 100  # the statistics block, cut


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = super().readinto(buffer)
        self.read_bytes += size
        return size


class WatchedOutput(io.BytesIO):
    """Checks at each write that no input was read much further than what was written."""

    def __init__(self, inputs: list[CountingFile], slack: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.slack = slack
        self.most_ahead = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        ahead = sum(f.read_bytes for f in self.inputs) - self.tell()
        self.most_ahead = max(self.most_ahead, ahead)
        assert ahead <= self.slack
        return super().write(data)


def test_memory_holds_about_one_chunk_per_input() -> None:
    chunk = 4096
    datas = [
        encode("ours", i, [BASE_NS + (n * 3 + i) * 1000 for n in range(600)]) for i in range(3)
    ]  # interleaved: every chunk takes part
    inputs = [CountingFile(data) for data in datas]
    out = WatchedOutput(inputs, slack=2 * chunk * len(inputs))
    result = merge_files([(f, f"in{i}") for i, f in enumerate(inputs)], PcapngWriter(out), chunk)
    assert result.result.packets == 1800 and sum(len(d) for d in datas) > 20 * chunk
    assert out.most_ahead > chunk  # the check saw inputs read ahead, and bounded


BAD_CAPLEN = struct.pack("<IIIIIII", 6, 36, 0, 0, 0, 99, 99) + b"xxxx" + struct.pack("<I", 36)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "ended after 0 bytes"),
        (shb("<") + epb("<", 0, 1, b"x" * 20), "only 0 are described"),
        (shb("<") + idb("<", b"a") + epb("<", 0, 1, b"x" * 20)[:-4] + b"\x99\0\0\0", "trailer"),
        (shb("<") + idb("<", b"a") + BAD_CAPLEN, "claims 99"),
        (shb("<") + idb("<", b"a") + struct.pack("<II", 6, 0x7FFFFFF0) + bytes(40), "block length"),
        (shb("<") + idb("<", b"a", tsresol=0, tsoffset=-(10**10)) + epb("<", 0, 1, b"x"), "outside"),
    ],
)
def test_a_bad_input_is_named_in_the_error(data: bytes, reason: str) -> None:
    good = encode("ours", 0, [BASE_NS])
    files = [(io.BytesIO(good), "good.pcapng"), (io.BytesIO(data), "bad.pcapng")]
    with pytest.raises(CaptureFormatError, match=reason) as caught:
        merge_files(files, PcapngWriter(io.BytesIO()), chunk_size=16)
    assert str(caught.value).startswith("bad.pcapng: ") or "outside" in reason


@requires_tools
def test_unsorted_inputs_and_foreign_resolutions_merge_as_mergecap_merges_them(tmp_path: Path) -> None:
    """Packet-exact against mergecap: a pcap, a microsecond pcapng, a big-endian pcapng and one of ours
    whose timestamps go backwards, with ties between all of them."""
    steps = [[3, 0, 5, -2, 4, 1, 0], [1, 2, 2, 0, 3, 3], [2, -1, 4, 4, 0, 2], [0, 3, 3, 1, -3, 6, 1]]
    paths = []
    for index, (kind, gaps) in enumerate(
        zip(("pcap-usec", "foreign-usec", "foreign-be", "ours"), steps, strict=True)
    ):
        stamps, ts = [], BASE_NS
        for gap in gaps * 5:
            ts += gap * 1000
            stamps.append(ts)
        path = tmp_path / f"in{index}.{'pcap' if kind.startswith('pcap') else 'pcapng'}"
        path.write_bytes(encode(kind, index, stamps))
        paths.append(path)
    ours, theirs = tmp_path / "ours.pcapng", tmp_path / "theirs.pcapng"
    handles = [p.open("rb") for p in paths]
    with ours.open("wb") as out:
        merge_files([(h, p.name) for h, p in zip(handles, paths, strict=True)], PcapngWriter(out), 256)
    for handle in handles:
        handle.close()
    subprocess.run(["mergecap", "-I", "none", "-w", str(theirs), *map(str, paths)], check=True)
    fields = ("frame.time_epoch", "udp.srcport", "frame.len", "udp.payload", "frame.comment")
    rows = tshark_fields(ours, *fields)
    assert rows == tshark_fields(theirs, *fields) and len(rows) == 5 * sum(map(len, steps))
    assert [row[0] for row in rows] != sorted(row[0] for row in rows), "the inputs are not in order"


class FailingFile(io.BytesIO):
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_background_writes_keep_order_and_name_a_write_error() -> None:
    out = io.BytesIO()
    writes = BackgroundWrites(out, Path("m.pcapng"), depth=2)
    parts = [bytes([n]) * (n + 1) for n in range(200)]
    for start in range(0, 200, 7):
        writes.write_parts(parts[start : start + 7])
    writes.write(b"end")
    writes.finish()
    assert out.getvalue() == b"".join(parts) + b"end"
    failing = BackgroundWrites(FailingFile(room=1000), Path("m.pcapng"), depth=2)
    with pytest.raises(OutputError, match=r"cannot write the merged file m\.pcapng: No space left"):
        for part in parts:
            failing.write_parts([part])
        failing.finish()
    failing.finish()  # the error was told once; the thread has ended
