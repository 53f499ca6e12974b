"""Ring speed: what `--ring` costs beside writing one file, in the same run.

The same batches of Enhanced Packet Blocks (2 interfaces, frames of 64, 590 and 1514 bytes in turn, 2000
packets a batch, as a capture's sink hands them on) go to one PcapngWriter file and to a Ring of 5
segments x 8 MiB. MB/s = block bytes / wall seconds, median of the runs. Checks: the ring kept at most
5 segments, no segment is larger than 8 MiB, and the kept segments hold the newest packets, none lost
or doubled at a rotation. Target: the ring writes at least 0.1x the plain file's MB/s (its per-packet
work is one struct read; at that ratio it still takes well over 100 MB/s here, above what one SSH
stream delivers).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import MIB, Options, Row

BENCH = "ring"
TOTAL = 256 * MIB
FRAMES = (64, 590, 1514)
BATCH = 2000
SEGMENTS, SEGMENT_SIZE = 5, 8 * MIB
MINIMUM = 0.1


def batches(total: int) -> list[bytes]:
    """Joined EPB batches of about `total` bytes; packet n carries n in its first 4 bytes."""
    from esxcap.pcap import encode_epb

    payloads = [bytes(size) for size in FRAMES]
    base, made, n, size = time.time_ns(), [], 0, 0
    while size < total:
        blocks = []
        for _ in range(BATCH):
            frame = n.to_bytes(4, "big") + payloads[n % len(FRAMES)][4:]
            blocks.append(encode_epb(n % 2, base + n * 1000, frame))
            n += 1
        made.append(b"".join(blocks))
        size += len(made[-1])
    return made


def _plain(workdir: Path, data: list[bytes]) -> float:
    from esxcap.pcap import Interface, PcapngWriter

    start = time.perf_counter()
    with (workdir / "plain.pcapng").open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("a", snaplen=65535))
        writer.add_interface(Interface("b", snaplen=65535))
        for batch in data:
            writer.write_blocks([batch], BATCH)
    return time.perf_counter() - start


def _ring(workdir: Path, data: list[bytes]) -> tuple[float, str]:
    """(wall seconds, "" or what the checks found wrong)."""
    from esxcap.capture.ring import Ring, RingSpec
    from esxcap.pcap import CaptureFile, Interface

    folder = workdir / "ring"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    ring = Ring(folder / "bench", RingSpec(files=SEGMENTS, filesize=SEGMENT_SIZE), ["ring benchmark"])
    ring.add_interface(Interface("a", snaplen=65535))
    ring.add_interface(Interface("b", snaplen=65535))
    start = time.perf_counter()
    for batch in data:
        ring.write_blocks([batch], BATCH)
    ring.flush()
    wall = time.perf_counter() - start
    kept = sorted(folder.glob("*.pcapng"))
    if len(kept) > SEGMENTS or any(p.stat().st_size > SEGMENT_SIZE for p in kept):
        return wall, f"{len(kept)} segments, largest {max(p.stat().st_size for p in kept)} bytes"
    numbers: list[int] = []
    for path in kept:
        with path.open("rb") as handle:
            numbers += [int.from_bytes(bytes(r.data[:4]), "big") for r in CaptureFile(handle, path.name)]
    last = len(data) * BATCH - 1
    if numbers != list(range(last - len(numbers) + 1, last + 1)):
        return wall, "the kept segments do not hold the newest packets in order"
    return wall, ""


def run(options: Options) -> list[Row]:
    """The ring rows: MB/s of the plain file and of the ring, then the ratio."""
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-ring-", dir=options.workdir))
    try:
        data = batches(TOTAL // 4 if options.quick else TOTAL)
        nbytes = sum(map(len, data))
        case = f"{nbytes / MIB:.0f} MiB, {len(data) * BATCH:,} packets"
        plain, ring = [], []
        for _ in range(options.repeat):
            plain.append(_plain(workdir, data))
            wall, wrong = _ring(workdir, data)
            if wrong:
                return [Row.skipped(BENCH, f"ring {SEGMENTS} x 8 MiB: {case}", wrong)]
            ring.append(wall)
        rates = [nbytes / 1e6 / statistics.median(walls) for walls in (plain, ring)]
        return [
            Row(BENCH, f"one file: {case}", f"{rates[0]:7.1f} MB/s"),
            Row(BENCH, f"ring {SEGMENTS} x 8 MiB: {case}", f"{rates[1]:7.1f} MB/s (bound kept, no loss)"),
            Row.ratio(BENCH, "ring / one file", rates[1] / rates[0], MINIMUM),
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
