"""Merge speed: `esxcap merge` against Wireshark's `mergecap -w` on the same inputs, in the same run.

Inputs: FILES pcapng files written by esxcap's PcapngWriter, TOTAL bytes together (--quick: 64 MiB),
frames of 64, 590 and 1514 bytes in turn, timestamps interleaved across the files so every record
takes part in the k-way merge. Both tools run as subprocesses, interleaved (start-up included: about
0.2 s for esxcap, which is why the inputs are large enough for the merge itself to count); MB/s =
input bytes / wall seconds and CPU s = the child's user + system time, medians of the runs. Both
outputs must hold every input packet in the same order (timestamp, interface, length of each).
Target: esxcap's MB/s >= mergecap's.
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
from bench.throughput import wait_rusage

BENCH = "merge"
FILES = 4
TOTAL = 512 * MIB
QUICK_TOTAL = 64 * MIB
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


def _timed(argv: list[str], log: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, error or "") of one subprocess run."""
    with log.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        usage = wait_rusage(proc)
        wall = time.perf_counter() - start
    said = log.read_text(errors="replace").strip().splitlines()
    error = "" if proc.returncode == 0 else f"exit {proc.returncode}: {said[-1] if said else '?'}"
    return wall, usage.ru_utime + usage.ru_stime, error


def _order(path: Path) -> list[tuple[int, int, int]]:
    """(timestamp, interface, captured length) of every packet, in file order."""
    from esxcap.pcap import CaptureFile

    with path.open("rb") as handle:
        return [(r.ts_ns, r.interface, len(r.data)) for r in CaptureFile(handle, path.name)]


def run(options: Options) -> list[Row]:
    """The merge rows: MB/s and CPU of each tool, then the target ratio."""
    mergecap = shutil.which("mergecap")
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-merge-", dir=options.workdir))
    try:
        inputs, packets = write_inputs(workdir, QUICK_TOTAL if options.quick else TOTAL)
        nbytes = sum(p.stat().st_size for p in inputs)
        case = f"{FILES} pcapng files, {nbytes / MIB:.0f} MiB, {packets:,} packets"
        outputs = {"esxcap merge": workdir / "esxcap.pcapng", "mergecap -w": workdir / "mergecap.pcapng"}
        cases = {
            "esxcap merge": [
                sys.executable, "-m", "esxcap", "merge", "--force", "-o", str(outputs["esxcap merge"])
            ]
        }  # fmt: skip
        if mergecap is not None:
            cases["mergecap -w"] = [mergecap, "-w", str(outputs["mergecap -w"])]
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(options.repeat):
            for name, argv in cases.items():
                wall, cpu, error = _timed([*argv, *map(str, inputs)], workdir / "merge.log")
                if error:
                    return [Row.skipped(BENCH, f"{name}: {case}", error)]
                walls[name].append(wall)
                cpus[name].append(cpu)
        rows, rates, orders = [], {}, {}
        for name in cases:
            orders[name] = _order(outputs[name])
            rates[name] = nbytes / 1e6 / statistics.median(walls[name])
            got = len(orders[name])
            check = "all packets" if got == packets else f"{got} of {packets} packets"
            cpu = statistics.median(cpus[name])
            rows.append(Row(BENCH, f"{name}: {case}", f"{rates[name]:7.1f} MB/s, CPU {cpu:.2f} s ({check})"))
            if got != packets:
                return [*rows, Row.skipped(BENCH, "esxcap / mergecap MB/s", f"{name} lost packets")]
        if mergecap is None:
            why = "mergecap not installed (wireshark-common)"
            return [*rows, Row.ratio(BENCH, "esxcap / mergecap MB/s", None, 1.0, why)]
        if orders["esxcap merge"] != orders["mergecap -w"]:
            why = "the packets are not in mergecap's order"
            return [*rows, Row.ratio(BENCH, "esxcap / mergecap MB/s", None, 1.0, why)]
        ratio = rates["esxcap merge"] / rates["mergecap -w"]
        return [*rows, Row.ratio(BENCH, "esxcap / mergecap MB/s (same order)", ratio, 1.0)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
