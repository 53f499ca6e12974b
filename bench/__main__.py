"""`python -m bench` (= `make bench`): run every benchmark and print one table.

python -m bench               1 GiB per streaming case, median of 3 interleaved runs
python -m bench --gib 4       4 GiB per case
python -m bench --quick       64 MiB per case, one run (smoke test; scale: 10 hosts only,
                              discovery: 1 and 10 hosts, merge: 64 MiB, start-up: 5 runs,
                              first packet: 1 run, long run: 2 trigger events)
python -m bench --only throughput --quick   one benchmark's rows (names: the modules listed below)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import (
    GIB,
    QUICK_BYTES,
    Options,
    Row,
    analyze_speed,
    command,
    discovery_scale,
    first_packet,
    format_table,
    long_run,
    merge_speed,
    path_speed,
    ring_speed,
    scale,
    sim_throughput,
    startup,
    throughput,
    trigger_cost,
)

BENCHMARKS: tuple[Callable[[Options], list[Row]], ...] = (
    throughput.run,
    command.run,
    sim_throughput.run,
    discovery_scale.run,
    first_packet.run,
    scale.run,
    merge_speed.run,
    path_speed.run,
    analyze_speed.run,
    ring_speed.run,
    trigger_cost.run,
    long_run.run,
    startup.run,
)
NAMES = {bench.__module__.rsplit(".", 1)[-1]: bench for bench in BENCHMARKS}


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description="esxcap benchmarks")
    parser.add_argument("--gib", type=float, default=1.0, help="GiB streamed per case (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is shown")
    parser.add_argument("--quick", action="store_true", help="64 MiB per case, one run")
    parser.add_argument("--dir", type=Path, help="where captures are written (default: the temp dir)")
    parser.add_argument("--only", choices=sorted(NAMES), action="append", help="run only this benchmark")
    args = parser.parse_args(argv)
    only = tuple(args.only or ())
    if args.quick:
        return Options(nbytes=QUICK_BYTES, repeat=1, quick=True, workdir=args.dir, only=only)
    if args.gib <= 0 or args.repeat < 1:
        parser.error("--gib must be positive and --repeat at least 1")
    return Options(nbytes=int(args.gib * GIB), repeat=args.repeat, workdir=args.dir, only=only)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    start = time.perf_counter()
    rows: list[Row] = []
    for name, bench in NAMES.items():
        if not options.only or name in options.only:
            rows += bench(options)
    print(format_table(rows))
    size = f"{options.nbytes / GIB:g} GiB" if options.nbytes >= GIB else f"{options.nbytes >> 20} MiB"
    took = time.perf_counter() - start
    print(f"\n{size} per streaming case, median of {options.repeat} run(s); {took:.0f} s")
    return 1 if any(r.verdict == "MISS" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
