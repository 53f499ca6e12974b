"""Streaming throughput from the simulator: `esxcap capture` (the real CLI: connect, discovery, wrapper,
pcapng sink) of a VM whose `bulk` flow sends maximum-size frames as fast as the capture reads them.

The simulator runs as its own process (`esxcap sim`) so the CLI's CPU time and peak RSS are its own; the
simulator's CPU time is shown beside them, since its pktcap-uw and SSH server share the same two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

from bench import GIB, Options, Row
from bench.throughput import BENCH, Measurement, wait_rusage

CASE = "esxcap capture from the simulator"
HOST, VM, PEER = "esx03", "web02", "データベース01"
FRAME, RECORD_HEADER, GLOBAL_HEADER = 1514, 16, 24
START_TIMEOUT_S = 30.0


def _topology(workdir: Path) -> Path:
    """The packaged demo topology plus one bulk flow from VM to PEER."""
    packaged = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text()
    data = yaml.safe_load(packaged)
    data.setdefault("flows", []).append({"name": "bench-bulk", "from": VM, "to": PEER, "kind": "bulk"})
    path = workdir / "topology.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (Linux /proc), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _capture(workdir: Path, state: Path, sim_pid: int, count: int) -> tuple[Measurement | None, str]:
    """One `esxcap capture --count COUNT` of the bulk flow, measured from the outside."""
    out = workdir / "sim.pcapng"
    argv = [sys.executable, "-m", "esxcap", "-i", str(state / "inventory.yaml"), "capture"]
    argv += ["--host", HOST, "--vm", VM, "--dir", "out", "--count", str(count), "-o", str(out)]
    sim_cpu = cpu_seconds(sim_pid)
    start = time.perf_counter()
    with (workdir / "cli.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        usage = wait_rusage(proc)
    seconds = time.perf_counter() - start
    sim_cpu = cpu_seconds(sim_pid) - sim_cpu
    said = (workdir / "cli.log").read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not out.exists():
        return None, f"esxcap capture exit {proc.returncode}: {' / '.join(said[-3:]) or 'no output'}"
    nbytes = GLOBAL_HEADER + count * (FRAME + RECORD_HEADER)
    size = out.stat().st_size
    out.unlink()
    if size < nbytes:
        return None, f"the capture file holds {size} bytes, less than {nbytes}"
    cpu = usage.ru_utime + usage.ru_stime
    note = f"simulator {sim_cpu * GIB / nbytes:.2f} CPU s/GiB"
    return Measurement(nbytes, seconds, cpu, usage.ru_maxrss, "esxcap's cipher choice", note=note), ""


def _measure(options: Options, workdir: Path) -> tuple[list[Measurement], str]:
    state = workdir / "state"
    serve = [sys.executable, "-m", "esxcap", "sim", "--topology", str(_topology(workdir))]
    sim = subprocess.Popen(
        [*serve, "--state-dir", str(state)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "sim.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (state / "inventory.yaml").exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                said = (workdir / "sim.log").read_text(errors="replace").strip().splitlines()
                return [], f"the simulator did not start: {said[-1] if said else 'no output'}"
            time.sleep(0.1)
        time.sleep(0.5)
        count = max(1, (options.nbytes - GLOBAL_HEADER) // (FRAME + RECORD_HEADER))
        results: list[Measurement] = []
        for _ in range(options.repeat):
            result, why = _capture(workdir, state, sim.pid, count)
            if result is None:
                return results, why
            results.append(result)
        return results, ""
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def run(options: Options) -> list[Row]:
    """The simulator row of the benchmark table (the whole CLI run, start-up and discovery included)."""
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-sim-", dir=options.workdir))
    try:
        results, why = _measure(options, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if why:
        return [Row.skipped(BENCH, CASE, why)]
    median = sorted(results, key=lambda m: m.seconds)[len(results) // 2]
    return [Row(BENCH, CASE, median.describe())]
