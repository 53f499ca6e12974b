"""Merge speed: `esxcap merge` against Wireshark's `mergecap -w` on the same inputs, in the same run.

Inputs: FILES pcapng files written by esxcap's PcapngWriter, TOTAL bytes together (--quick: a quarter),
frames of 64, 590 and 1514 bytes in turn, timestamps interleaved across the files so every record
takes part in the k-way merge. Both tools run as subprocesses (start-up included); MB/s = input bytes
/ wall seconds, median of the runs; both outputs must hold every input packet. No target: the row
shows the ratio esxcap / mergecap.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import MIB, Options, Row

BENCH = "merge"
FILES = 4
TOTAL = 64 * MIB
FRAMES = (64, 590, 1514)
STEP_NS = 1000


def write_inputs(workdir: Path, total: int) -> tuple[list[Path], int]:
    """FILES pcapng files of about total / FILES bytes each; (paths, packets in all)."""
    from esxcap.pcap import Interface, PcapngWriter

    payloads = [bytes(range(256)) * (size // 256) + bytes(size % 256) for size in FRAMES]
    paths, packets = [], 0
    base = time.time_ns()
    for i in range(FILES):
        path = workdir / f"in{i}.pcapng"
        with path.open("wb") as handle:
            writer = PcapngWriter(handle, comments=(f"merge benchmark input {i}",))
            writer.add_interface(Interface(f"bench{i}", snaplen=65535))
            n = 0
            while handle.tell() < total // FILES:
                writer.write_packet(0, base + (n * FILES + i) * STEP_NS, payloads[n % len(FRAMES)])
                n += 1
        paths.append(path)
        packets += n
    return paths, packets


def _timed(argv: list[str]) -> tuple[float, str]:
    """(wall seconds, error or "") of one subprocess run."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
    wall = time.perf_counter() - start
    said = done.stderr.decode(errors="replace").strip().splitlines()
    return wall, "" if done.returncode == 0 else f"exit {done.returncode}: {said[-1] if said else '?'}"


def _packets(path: Path) -> int:
    from esxcap.pcap import CaptureFile

    with path.open("rb") as handle:
        return sum(1 for _ in CaptureFile(handle, path.name))


def run(options: Options) -> list[Row]:
    """The merge rows: MB/s of each tool, then the ratio."""
    mergecap = shutil.which("mergecap")
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-merge-", dir=options.workdir))
    try:
        total = TOTAL // 4 if options.quick else TOTAL
        inputs, packets = write_inputs(workdir, total)
        nbytes = sum(p.stat().st_size for p in inputs)
        case = f"{FILES} pcapng files, {nbytes / MIB:.0f} MiB, {packets:,} packets"
        cases = {
            "esxcap merge": [
                sys.executable,
                "-m",
                "esxcap",
                "merge",
                "--force",
                "-o",
                str(workdir / "esxcap.pcapng"),
            ]
        }
        if mergecap is not None:
            cases["mergecap -w"] = [mergecap, "-w", str(workdir / "mergecap.pcapng")]
        walls: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(options.repeat):
            for name, argv in cases.items():
                wall, error = _timed([*argv, *map(str, inputs)])
                if error:
                    return [Row.skipped(BENCH, f"{name}: {case}", error)]
                walls[name].append(wall)
        rows, rates = [], {}
        for name in cases:
            out = workdir / f"{name.split()[0]}.pcapng"
            got = _packets(out)
            rates[name] = nbytes / 1e6 / statistics.median(walls[name])
            check = "all packets" if got == packets else f"{got} of {packets} packets"
            rows.append(Row(BENCH, f"{name}: {case}", f"{rates[name]:7.1f} MB/s ({check})"))
            if got != packets:
                return [*rows, Row.skipped(BENCH, "esxcap / mergecap", f"{name} lost packets")]
        if mergecap is None:
            return [
                *rows,
                Row.skipped(BENCH, "esxcap / mergecap", "mergecap not installed (wireshark-common)"),
            ]
        ratio = rates["esxcap merge"] / rates["mergecap -w"]
        return [*rows, Row(BENCH, "esxcap / mergecap", f"{ratio:.2f}x mergecap's MB/s")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
