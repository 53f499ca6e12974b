"""What `--trigger` costs per packet: the sink of three merged streams fed the same transcoded batches
with and without a trigger recorder tapping it (the condition scanned on every packet, every packet kept
in the before-window, one event written), CPU seconds per GiB, in one process, in the same run; and
once more with a --before-bytes the window far exceeds (every packet also written to the spill file).

Packets: TCP segments of 64, 590 and 1514 bytes in turn (the scan reads Ethernet, IPv4 and TCP headers
of each), in 256 KiB pcap chunks, 60 us apart in each stream; one RST in the middle stream fires the event,
whose window (1 s before, 0.5 s after) holds about half the packets: they are written twice. Target: the
recorder with its window in memory costs at most 2x the merging sink alone (cost ratio, median of the
runs); the spilling case is shown without a target.
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from bench import MIB, Options, Row

BENCH = "trigger"
STREAMS = 3
TOTAL = 96 * MIB
CHUNK = 256 * 1024
SIZES = (64, 590, 1514)
TARGET = 2.0
HELD = 512 * MIB
"""--before-bytes that holds the whole before-window in memory: the per-packet cost alone."""
SPILLING = 8 * MIB
"""--before-bytes well below the before-window (~1.1 GiB/s for 3 s kept here): everything older spills."""


def _frames() -> list[bytes]:
    from esxcap.sim import frames

    out = []
    for size in SIZES:
        body = bytes(max(0, size - 54))
        segment = frames.tcp("10.0.0.1", "10.0.0.2", 50000, 443, 1, 1, frames.TCP_ACK, body)
        out.append(
            frames.ipv4("00:50:56:00:00:01", "00:50:56:00:00:02", "10.0.0.1", "10.0.0.2", 6, segment, 1)
        )
    return out


def _stream(index: int, nbytes: int, reset_at: int | None) -> tuple[bytes, list[bytes]]:
    """A classic pcap stream (header, chunks) of about `nbytes`; packet `reset_at` carries RST."""
    from esxcap.sim import frames

    packets = _frames()
    rst = frames.tcp("10.0.0.2", "10.0.0.1", 443, 50000, 1, 1, frames.TCP_RST, b"")
    reset = frames.ipv4("00:50:56:00:00:02", "00:50:56:00:00:01", "10.0.0.2", "10.0.0.1", 6, rst, 2)
    header = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    base = time.time_ns() - 60_000_000_000
    records, size, n = [], 0, 0
    while size < nbytes:
        frame = reset if n == reset_at else packets[n % len(packets)]
        ts = base + (n * STREAMS + index) * 20_000
        records.append(struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000, len(frame), len(frame)))
        records.append(frame)
        size += 16 + len(frame)
        n += 1
    data = b"".join(records)
    return header, [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _feed(
    streams: list[tuple[bytes, list[bytes]]], workdir: Path, trigger: str | None, before_bytes: int
) -> tuple[float, int]:
    """CPU seconds to push every stream through one sink (and a recorder with `trigger`); events kept."""
    from esxcap.capture.sinks import CaptureSink
    from esxcap.capture.triggered import TriggerRecorder
    from esxcap.pcap import Interface, PcapngTranscoder
    from esxcap.pcap.triggers import TriggerPlan, parse_trigger

    recorder = None
    if trigger is not None:
        plan = TriggerPlan(parse_trigger(trigger), 1.0, 0.5, before_bytes)
        recorder = TriggerRecorder(plan, workdir / "bench.pcapng", (), lambda _m: None)
    with open(os.devnull, "wb", buffering=0) as nowhere:
        start = time.process_time()
        sink = CaptureSink(nowhere, (), tap=recorder)
        readers = []
        for index, (header, _chunks) in enumerate(streams):
            sink.expect_stream()
            reader = PcapngTranscoder()
            reader.feed(header)
            readers.append((reader, sink.add_stream(Interface(f"h{index}:t:VnicTx:out"))))
        for chunks in zip(*(c for _h, c in streams), strict=False):
            for (reader, iface), chunk in zip(readers, chunks, strict=True):
                sink.write_batch(iface, reader.transcode(chunk, iface, None, 0, keys=True))
        sink.finish(time.time_ns())
        events = recorder.finish() if recorder is not None else []
        return time.process_time() - start, len(events)


def run(options: Options) -> list[Row]:
    """CPU s/GiB without and with each trigger, and the cost ratio against the target."""
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-trigger-", dir=options.workdir))
    try:
        each = (TOTAL // 4 if options.quick else TOTAL) // STREAMS
        streams = [_stream(i, each, 10_000 if i == 1 else None) for i in range(STREAMS)]
        nbytes = sum(len(c) for _h, chunks in streams for c in chunks)
        cases: dict[str, tuple[str | None, int]] = {
            "merging sink alone": (None, 0),
            "--trigger tcp-rst": ("tcp-rst", HELD),
            "--trigger bytes:deadbeef@40": ("bytes:deadbeef@40", HELD),
            f"--trigger tcp-rst --before-bytes {SPILLING // MIB} MiB (spilling)": ("tcp-rst", SPILLING),
        }
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        events: dict[str, int] = {}
        for _ in range(options.repeat):
            for name, (trigger, before_bytes) in cases.items():
                seconds, events[name] = _feed(streams, workdir, trigger, before_bytes)
                cpu[name].append(seconds / (nbytes / (1 << 30)))
        case = f"{STREAMS} streams, {nbytes / MIB:.0f} MiB"
        base = statistics.median(cpu["merging sink alone"])
        rows = [Row(BENCH, f"merging sink alone: {case}", f"{base:.2f} CPU s/GiB")]
        for name, (trigger, before_bytes) in cases.items():
            if trigger is None:
                continue
            seconds = statistics.median(cpu[name])
            rows.append(Row(BENCH, f"{name}: {case}", f"{seconds:.2f} CPU s/GiB ({events[name]} event)"))
            if before_bytes == HELD:
                rows.append(Row.at_most(BENCH, f"{name} / sink alone", seconds / base, TARGET))
            else:
                rows.append(Row(BENCH, f"{name} / sink alone", f"{seconds / base:.2f}"))
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
