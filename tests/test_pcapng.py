"""pcapng: what we write (labelled interfaces, section/interface/packet comments, direction flags, late
interfaces, statistics) is read back identically by our reader and by tshark/capinfos; the reader also
handles typical foreign files (big-endian, microsecond and binary time resolutions, Simple Packet Blocks,
unknown blocks, files written by Wireshark's editcap) and rejects corrupt ones with our errors only."""

from __future__ import annotations

import errno
import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import (
    BASE_NS,
    EDITCAP,
    block,
    capinfos,
    epb,
    epoch_text,
    idb,
    pcap_stream,
    requires_tools,
    run_tool,
    sample_records,
    shb,
    tshark_fields,
)

from esxcap.pcap import (
    EPB_INBOUND,
    EPB_OUTBOUND,
    USERAPPL,
    CaptureFormatError,
    CorruptCaptureError,
    Interface,
    InterfaceStatistics,
    NotPcapError,
    PcapngStreamReader,
    PcapngWriter,
    Record,
)
from esxcap.pcap.pcapng import TimestampRangeError, write_gathered

SETTINGS = settings(max_examples=120, deadline=None)
COMMANDS = (
    "esx01: pktcap-uw --switchport 33554437 --capture VnicTx -o -",
    "esx02: pktcap-uw --vmk vmk0 --dir 2 -o -   # ünïcode and 'quotes'",
)
IFACES = (
    Interface(
        "esx01:web01:VnicTx:out",
        description="VM web01 eth0, portgroup VM Network, ESXi 8.0.2 build 22380479",
        snaplen=65535,
        comments=("clock offset -0.8 ms +/- 0.2 ms at start",),
    ),
    Interface("esx02:vmk0:PortInput:in", description="vmk0 management, ESXi 6.7.0 build 8169922"),
    Interface("esx03:vmnic0:UplinkRcvKernel:in", snaplen=128, comments=("first", "second")),
)


def write_three_interfaces(out: io.BytesIO | None = None) -> tuple[bytes, list[tuple[int, Record]]]:
    """A section with 3 interfaces; the third is added after packets of the first two."""
    buf = out or io.BytesIO()
    writer = PcapngWriter(buf, comments=COMMANDS, os="Linux")
    written: list[tuple[int, Record]] = []
    ids = [writer.add_interface(IFACES[0]), writer.add_interface(IFACES[1])]
    for seq, record in enumerate(sample_records(9, step_ns=1_000_123)):
        if seq == 4:
            ids.append(writer.add_interface(IFACES[2]))
        iface = ids[seq % len(ids)]
        comments = (f"packet {seq} note",) if seq % 4 == 1 else ()
        flags = (0, EPB_INBOUND, EPB_OUTBOUND)[seq % 3]
        rec = Record(record.ts_ns, record.origlen, record.data, iface, comments, flags)
        writer.write_record(rec)
        written.append((iface, rec))
    writer.write_statistics(
        InterfaceStatistics(0, BASE_NS + 10**9, BASE_NS, BASE_NS + 10**9, 42, 3, ("end",))
    )
    assert writer.packets == 9
    return buf.getvalue(), written


def read(data: bytes, chunk: int | None = None) -> tuple[PcapngStreamReader, list[Record]]:
    reader = PcapngStreamReader()
    step = chunk or len(data) or 1
    records = [r for start in range(0, len(data), step) for r in reader.feed(data[start : start + step])]
    return reader, records


def test_our_reader_reads_back_everything_written() -> None:
    data, written = write_three_interfaces()
    reader, records = read(data)
    assert reader.finish() == 0
    assert reader.interfaces == list(IFACES)
    (section,) = reader.sections
    assert (section.comments, section.userappl, section.os) == (COMMANDS, USERAPPL, "Linux")
    assert [(r.interface, r.ts_ns, r.origlen, bytes(r.data), r.comments, r.flags) for r in records] == [
        (i, r.ts_ns, r.origlen, bytes(r.data), r.comments, r.flags) for i, r in written
    ]
    assert {r.flags for r in records} == {0, EPB_INBOUND, EPB_OUTBOUND}
    (stats,) = reader.statistics
    assert stats == InterfaceStatistics(0, BASE_NS + 10**9, BASE_NS, BASE_NS + 10**9, 42, 3, ("end",))
    assert (reader.packets, reader.bytes) == (9, sum(len(r.data) for _, r in written))


@SETTINGS
@given(cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_any_chunking_gives_the_same_blocks(cuts: list[int]) -> None:
    data, written = write_three_interfaces()
    reader = PcapngStreamReader()
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    records = [r for a, b in pairwise(bounds) for r in reader.feed(data[a:b])]
    assert [(r.interface, r.ts_ns, bytes(r.data), r.comments) for r in records] == [
        (i, r.ts_ns, bytes(r.data), r.comments) for i, r in written
    ]
    assert reader.interfaces == list(IFACES)
    assert reader.finish() == 0


def test_cut_pcapng_keeps_complete_packets() -> None:
    data, _ = write_three_interfaces()
    reader, records = read(data[:-50], chunk=64)
    assert len(records) == 9
    assert reader.statistics == []
    assert reader.finish() == len(data) - 50 - reader.offset > 0


@requires_tools
def test_tshark_sees_interfaces_descriptions_comments_and_order(tmp_path: Path) -> None:
    data, written = write_three_interfaces()
    path = tmp_path / "three.pcapng"
    path.write_bytes(data)
    info = capinfos(path)
    assert info.packets == 9
    assert info.general["Capture comment"] == list(COMMANDS)
    assert info.general["Capture application"] == [USERAPPL]
    assert info.general["Strict time order"] == ["True"]
    assert [iface["Name"] for iface in info.interfaces] == [[i.name] for i in IFACES]
    assert info.interfaces[0]["Description"] == [IFACES[0].description]
    assert info.interfaces[0]["Comment"] == list(IFACES[0].comments)
    assert info.interfaces[2]["Comment"][0] == "first"  # capinfos 4.0 lists only an interface's first comment
    assert info.interfaces[0]["Number of stat entries"] == ["1"]
    counts = [sum(1 for i, _ in written if i == n) for n in range(3)]
    assert [iface["Number of packets"] for iface in info.interfaces] == [[str(c)] for c in counts]
    rows = tshark_fields(
        path,
        "frame.interface_name",
        "frame.interface_description",
        "frame.comment",
        "frame.time_epoch",
        "frame.len",
        "frame.packet_flags_direction",
    )
    assert len(rows) == 9
    for row, (iface, record) in zip(rows, written, strict=True):
        assert row[0] == IFACES[iface].name
        assert row[1] == (IFACES[iface].description or "")
        assert row[2] == "|".join(record.comments)
        assert row[3] == epoch_text(record.ts_ns)
        assert row[4] == str(record.origlen)
        assert row[5] == (f"0x{record.flags:08x}" if record.flags else "")


def test_long_comment_is_split_into_options_that_join_back() -> None:
    text = "pktcap-uw é " * 9000
    buf = io.BytesIO()
    writer = PcapngWriter(buf, comments=[text])
    writer.add_interface(Interface("x"))
    writer.write_packet(0, BASE_NS, b"\0" * 60)
    reader, records = read(buf.getvalue())
    assert len(records) == 1
    pieces = reader.sections[0].comments
    assert len(pieces) == 2
    assert "".join(pieces) == text


def test_writer_refuses_unknown_interface_and_times_pcapng_cannot_hold() -> None:
    writer = PcapngWriter(io.BytesIO())
    with pytest.raises(ValueError, match="interface 0 was not added"):
        writer.write_packet(0, BASE_NS, b"")
    writer.add_interface(Interface("x"))
    for ts_ns in (-1, 1 << 64):
        with pytest.raises(TimestampRangeError, match="outside what pcapng can hold"):
            writer.write_packet(0, ts_ns, b"")
        with pytest.raises(TimestampRangeError):
            writer.write_records([(0, Record(ts_ns, 1, b"x"))])


@pytest.mark.parametrize("order", ["<", ">"])
def test_foreign_files_resolutions_simple_packets_unknown_blocks_and_sections(order: str) -> None:
    frame = bytes(sample_records(1)[0].data)
    other = ">" if order == "<" else "<"
    data = b"".join(
        [
            shb(order),
            idb(order, b"usec"),
            idb(order, b"binary", tsresol=0x80 | 20, tsoffset=100),
            block(order, 0x0BAD, b"unknown block body"),
            epb(order, 0, 1_700_000_000_123_456, frame),
            epb(order, 1, 3 << 20, frame),
            block(order, 3, struct.pack(order + "I", len(frame)) + frame),
            block(order, 2, struct.pack(order + "HHIIII", 1, 0, 0, 1 << 19, len(frame), len(frame)) + frame),
            shb(other),
            idb(other, b"next section", tsresol=9, snaplen=20),
            block(other, 3, struct.pack(other + "I", len(frame)) + frame[:20]),
        ]
    )
    reader, records = read(data, chunk=7)
    assert [i.name for i in reader.interfaces] == ["usec", "binary", "next section"]
    assert [s.userappl for s in reader.sections] == ["other tool", "other tool"]
    assert [(r.interface, r.ts_ns, r.caplen, r.origlen) for r in records] == [
        (0, 1_700_000_000_123_456_000, len(frame), len(frame)),
        (1, 3_000_000_000 + 100_000_000_000, len(frame), len(frame)),
        (0, 103_000_000_000, len(frame), len(frame)),
        (1, 100_500_000_000, len(frame), len(frame)),
        (2, 100_500_000_000, 20, len(frame)),
    ]
    assert bytes(records[4].data) == frame[:20]


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", NotPcapError, "ended after 0 bytes"),
        (pcap_stream([]), NotPcapError, "classic pcap, not pcapng"),
        (b"<html><body>bad gateway</body></html>", NotPcapError, "no pcapng header"),
        (b"\x0a\x0d\x0d\x0a" + bytes(20), NotPcapError, "byte-order magic"),
        (shb("<") + epb("<", 0, 1, b"x" * 20), CorruptCaptureError, "only 0 are described"),
        (shb("<")[:-4] + b"\x99\0\0\0", CorruptCaptureError, "trailer"),
        (shb("<") + struct.pack("<II", 6, 14) + bytes(8), CorruptCaptureError, "multiple of 4"),
        (shb("<") + struct.pack("<II", 6, 0x7FFFFFF0) + bytes(8), CorruptCaptureError, "block length"),
        (
            shb("<") + idb("<", b"a") + block("<", 3, struct.pack("<I", 99) + bytes(8)),
            CorruptCaptureError,
            "simple",
        ),
    ],
)
def test_bad_pcapng_raises_our_errors(data: bytes, error: type[CaptureFormatError], reason: str) -> None:
    with pytest.raises(error, match=reason):
        reader, _ = read(data, chunk=5)
        reader.finish()


def test_corrupt_offset_names_the_bad_block() -> None:
    good = shb("<") + idb("<", b"a")
    bad = struct.pack("<II", 6, 0x7FFFFFF0) + bytes(8)
    with pytest.raises(CorruptCaptureError) as caught:
        read(good + bad, chunk=9)
    assert caught.value.offset == len(good)


@SETTINGS
@given(
    flips=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 255)), min_size=1, max_size=6),
    chunk=st.integers(1, 700),
)
def test_corrupted_pcapng_raises_only_our_errors(flips: list[tuple[int, int]], chunk: int) -> None:
    data = bytearray(write_three_interfaces()[0])
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    try:
        reader, _ = read(bytes(data), chunk=chunk)
        reader.finish()
    except CaptureFormatError:
        pass


@SETTINGS
@given(junk=st.binary(max_size=300), chunk=st.integers(1, 64))
def test_random_bytes_after_a_section_header_raise_only_our_errors(junk: bytes, chunk: int) -> None:
    try:
        reader, _ = read(shb("<") + idb("<", b"a", tsresol=0xFF) + junk, chunk=chunk)
        reader.finish()
    except CaptureFormatError:
        pass


@requires_tools
@pytest.mark.skipif(EDITCAP is None, reason="editcap not installed (apt-get install tshark)")
def test_reads_a_file_written_by_wireshark(tmp_path: Path) -> None:
    records = sample_records(20, step_ns=1_234_567)
    source = tmp_path / "in.pcap"
    source.write_bytes(pcap_stream(records))
    converted = tmp_path / "out.pcapng"
    assert EDITCAP
    run_tool(EDITCAP, "-F", "pcapng", str(source), str(converted))
    reader, got = read(converted.read_bytes(), chunk=1000)
    assert reader.finish() == 0
    assert [(r.ts_ns, r.origlen, bytes(r.data)) for r in got] == [
        (r.ts_ns, r.origlen, r.data) for r in records
    ]
    assert len(reader.interfaces) == 1


def _parts(count: int) -> list[bytes | memoryview]:
    data = bytes(range(256)) * 8
    return [
        data[i % 97 : i % 97 + 1 + i % 13] if i % 2 else memoryview(data)[i % 89 : i % 89 + 7]
        for i in range(count)
    ]


def test_gathered_writes_keep_order_beyond_one_writev(tmp_path: Path) -> None:
    parts = _parts(2500)
    path = tmp_path / "gathered.bin"
    with path.open("wb") as handle:
        handle.write(b"head")
        write_gathered(handle, parts)
        handle.write(b"tail")
    assert path.read_bytes() == b"head" + b"".join(parts) + b"tail"
    memory = io.BytesIO()
    write_gathered(memory, parts)
    assert memory.getvalue() == b"".join(parts)


def test_gathered_write_cut_short_keeps_an_exact_prefix(tmp_path: Path) -> None:
    """A file size limit makes writev stop part-way (as a full disk does): what reached the file is the
    exact prefix, and the next write fails with the OS error."""
    parts = _parts(600)
    path = tmp_path / "limited.bin"
    limit = len(b"".join(parts)) // 2 + 3
    code = (
        "import resource, signal, sys\n"
        "sys.path[:0] = sys.argv[3:]\n"
        "from test_pcapng import _parts\n"
        "from esxcap.pcap.pcapng import write_gathered\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]),) * 2)\n"
        "with open(sys.argv[1], 'wb') as handle:\n"
        "    try:\n"
        "        write_gathered(handle, _parts(600))\n"
        "    except OSError as exc:\n"
        "        sys.exit(exc.errno)\n"
    )
    tests = str(Path(__file__).parent)
    argv = [sys.executable, "-c", code, str(path), str(limit), tests, str(Path(tests).parent)]
    done = subprocess.run(argv, check=False)
    assert done.returncode == errno.EFBIG
    assert path.read_bytes() == b"".join(parts)[:limit]


def test_gathered_writes_resume_after_a_signal_cuts_them_short() -> None:
    """A signal arriving while writev blocks on a full pipe returns a short count: the rest follows."""
    parts = _parts(3000) * 40
    read_end, write_end = os.pipe()
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=drain)
    reader.start()
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    try:
        with os.fdopen(write_end, "wb") as handle:
            write_gathered(handle, parts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        reader.join()
        os.close(read_end)
    assert bytes(received) == b"".join(parts)
