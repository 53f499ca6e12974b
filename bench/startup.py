"""CLI start-up: `esxcap --help` against `python -c pass` (the interpreter's own start-up), same run.

Both run RUNS times, interleaved, as `sys.executable ...` subprocesses (`-m esxcap --help`, so no
console-script shim is timed); the medians are compared. Target: esxcap --help <= 3x python -c pass.
The package is byte-compiled first, as pip does when it installs a wheel, so source compilation (an
editable checkout under PYTHONDONTWRITEBYTECODE) is not what gets timed. `esxcap capture --help`, which
imports typer and the capture modules, is shown for comparison (no target).
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import Options, Row

BENCH = "start-up"
RUNS = 10
QUICK_RUNS = 5
TARGET = 3.0


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, timeout=60)
    return time.perf_counter() - start


def run(options: Options) -> list[Row]:
    """Median wall time of each command, and the ratio checked against TARGET."""
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "esxcap --help": [sys.executable, "-m", "esxcap", "--help"],
        "esxcap capture --help": [sys.executable, "-m", "esxcap", "capture", "--help"],
    }
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "esxcap", quiet=1)
    walls: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for argv in cases.values():
            _wall(argv)
        for _ in range(QUICK_RUNS if options.quick else RUNS):
            for name, argv in cases.items():
                walls[name].append(_wall(argv))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return [Row.skipped(BENCH, "esxcap --help / python -c pass", str(exc))]
    medians = {name: statistics.median(w) for name, w in walls.items()}
    rows = [
        Row(BENCH, name, f"{m * 1000:.0f} ms (median of {len(walls[name])})") for name, m in medians.items()
    ]
    ratio = medians["esxcap --help"] / medians["python -c pass"]
    verdict = "PASS" if ratio <= TARGET else "MISS"
    return [*rows, Row(BENCH, "esxcap --help / python -c pass", f"{ratio:.1f}x", f"<= {TARGET:g}x", verdict)]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(quick="--quick" in sys.argv))))
