"""Discovery at scale: round trips per host and hosts per second of the real `esxcap discover --json`.

The simulator (in this process, `SimulatorThread`) serves N copies of the default topology's ESXi 8.0
host (no flows), for N = 1, 10, 50 and 200. The CLI runs as a subprocess, once with its default
`--parallel` and once with `--parallel 50`; wall time includes its start-up. Round trips are counted
on the simulator's side: SSH connections and exec requests per host, summed over a run (target <= 2
exec requests per host; one connection per host).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench import Options, Row

BENCH = "discovery"
SIZES = (1, 10, 50, 200)
QUICK_SIZES = (1, 10)
TEMPLATE_HOST = "esx03"
PARALLEL = (None, 50)
"""None: the CLI's default --parallel."""
ROUND_TRIP_TARGET = 2


def topology_data(hosts: int) -> dict[str, Any]:
    """`hosts` copies (h000, h001, ...) of the default topology's TEMPLATE_HOST, without flows."""
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    template = yaml.safe_load(text)["hosts"][TEMPLATE_HOST]
    return {"hosts": {f"h{i:03d}": template for i in range(hosts)}, "flows": []}


def _counts(sim: Any) -> tuple[int, int]:
    """(SSH connections, exec requests) the simulator has served so far, over all hosts."""
    hosts = sim.hosts.values()
    return sum(h.connections for h in hosts), sum(h.exec_requests for h in hosts)


def _discover(inventory: Path, hosts: int, parallel: int | None) -> tuple[float, str]:
    """(wall seconds, error or "") of one `esxcap discover --json` run that must find every host."""
    argv = [sys.executable, "-m", "esxcap", "-i", str(inventory), "discover", "--json"]
    if parallel is not None:
        argv += ["--parallel", str(parallel)]
    start = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
    wall = time.perf_counter() - start
    try:
        doc = json.loads(done.stdout or b"null")
    except json.JSONDecodeError:
        doc = None
    if done.returncode != 0 or not isinstance(doc, dict) or len(doc["hosts"]) != hosts:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return wall, f"exit {done.returncode}: {said[-1] if said else 'no output'}"
    return wall, ""


def measure(hosts: int, state_dir: Path) -> list[Row]:
    """Rows of one size: hosts/s per --parallel setting, then the round-trip check."""
    from esxcap.sim import SimulatorThread, topology_from_data

    topology = topology_from_data(topology_data(hosts), f"{hosts} copies of {TEMPLATE_HOST}")
    rows: list[Row] = []
    conns = execs = runs = 0
    with SimulatorThread(topology, state_dir) as thread:
        for parallel in PARALLEL:
            case = f"{hosts} hosts, --parallel {parallel or 'default'}"
            before = _counts(thread.sim)
            wall, error = _discover(thread.sim.inventory_path, hosts, parallel)
            after = _counts(thread.sim)
            if error:
                rows.append(Row.skipped(BENCH, case, error))
                continue
            runs += 1
            conns, execs = conns + after[0] - before[0], execs + after[1] - before[1]
            rows.append(Row(BENCH, case, f"{hosts / wall:6.1f} hosts/s ({wall:.2f} s incl. CLI start-up)"))
    case = f"{hosts} hosts, round trips per host"
    if not runs:
        return [*rows, Row.skipped(BENCH, case, "no run found every host")]
    per_host = execs / (runs * hosts)
    result = f"{per_host:.2f} exec requests/host over {conns / (runs * hosts):.2f} connections/host"
    verdict = "PASS" if per_host <= ROUND_TRIP_TARGET else "MISS"
    return [*rows, Row(BENCH, case, result, f"<= {ROUND_TRIP_TARGET}", verdict)]


def run(options: Options) -> list[Row]:
    """The discovery rows of the benchmark table (--quick: 1 and 10 hosts). One state dir serves every
    size, so each copy's host keys are generated once."""
    with tempfile.TemporaryDirectory(
        prefix="esxcap-bench-discovery-", dir=options.workdir, ignore_cleanup_errors=True
    ) as state_dir:
        return [row for n in (QUICK_SIZES if options.quick else SIZES) for row in measure(n, Path(state_dir))]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(quick="--quick" in sys.argv))))
