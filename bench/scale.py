"""Scale: 10, 50, 200 and 500 simulated hosts streaming at once into one merged pcapng, from one process.

Each simulated host (ESXi 8.0.2) has two VMs pinging each other at RATE_PPS; one `esxcap capture`
takes `--vm` of one VM per host, `--dir out -c COUNT`, every host in parallel, into one file. The
simulator (its own process) stops each pktcap-uw after exactly COUNT packets, so the file must hold
hosts x COUNT packets: lost = that - packets in the file (and pktcap-uw's own drop counters, summed).
Shown: aggregate packets/s over the streaming part (first to last packet), the CLI's CPU seconds, its
peak RSS per stream (whole process / streams) and the same above a `--dry-run` of the same command
(connections and discovery without streams). Targets (500 hosts): 0 lost, peak RSS < 1 MiB per stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import MIB, Options, Row
from bench.throughput import wait_rusage

BENCH = "scale"
SIZES = (10, 50, 200, 500)
QUICK_SIZES = (10,)
RATE_PPS = 100
COUNT = 100
START_TIMEOUT_S = 900.0
"""The simulator generates an RSA and an ECDSA key per new host: 500 hosts took over 120 s on a busy
2-core machine (the sizes share one state dir, so each host's keys are made once)."""
RSS_TARGET = MIB


def topology(hosts: int) -> dict[str, Any]:
    """`hosts` ESXi 8.0.2 hosts, each with VMs a<i> and b<i> pinging at RATE_PPS (both ways)."""
    data: dict[str, Any] = {"hosts": {}, "flows": []}
    for i in range(hosts):
        mac = f"00:50:56:{i >> 8:02x}:{i & 0xFF:02x}"
        data["hosts"][f"h{i:03d}"] = {
            "version": "8.0.2",
            "build": "22380479",
            "uplinks": [
                {"name": "vmnic0", "pci": "0000:03:00.0", "driver": "ixgben", "mac": f"{mac}:10",
                 "description": "NIC"}
            ],
            "vswitches": [{"name": "vSwitch0", "uplinks": ["vmnic0"], "portgroups": [{"name": "VMs"}]}],
            "vms": [
                {"name": f"a{i}", "vnics": [{"mac": f"{mac}:01", "ip": f"10.{i >> 8}.{i & 0xFF}.1",
                                               "portgroup": "VMs"}]},
                {"name": f"b{i}", "vnics": [{"mac": f"{mac}:02", "ip": f"10.{i >> 8}.{i & 0xFF}.2",
                                               "portgroup": "VMs"}]},
            ],
        }  # fmt: skip
        data["flows"].append({"name": f"ping{i}", "from": f"a{i}", "to": f"b{i}", "kind": "icmp",
                              "rate_pps": RATE_PPS})  # fmt: skip
    return data


def _run_cli(argv: list[str], log: Path) -> tuple[int, Any, float, float, int]:
    """(exit code, JSON document or None, wall s, CPU s, peak RSS bytes) of one CLI run."""
    start = time.perf_counter()
    with log.open("wb") as err, log.with_suffix(".json").open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        usage = wait_rusage(proc)
    wall = time.perf_counter() - start
    try:
        doc = json.loads(log.with_suffix(".json").read_text() or "null")
    except json.JSONDecodeError:
        doc = None
    return proc.returncode, doc, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def _file_packets(path: Path) -> tuple[int, int]:
    """(packets, span ns first..last) of a pcapng, by esxcap's own reader."""
    from esxcap.pcap import CaptureFile

    with path.open("rb") as handle:
        stamps = [r.ts_ns for r in CaptureFile(handle, path.name)]
    return len(stamps), (max(stamps) - min(stamps)) if stamps else 0


def measure(hosts: int, workdir: Path) -> list[Row]:
    """One size: start the simulator, a --dry-run baseline, then the capture."""
    case = f"{hosts} hosts x 1 stream, {RATE_PPS} pps each"
    state, topo = workdir / "state", workdir / f"topology{hosts}.yaml"
    topo.write_text(yaml.safe_dump(topology(hosts)))
    (state / "inventory.yaml").unlink(missing_ok=True)  # the previous size's: wait for this one's
    sim_log = workdir / f"sim{hosts}.log"
    sim = subprocess.Popen(
        [sys.executable, "-m", "esxcap", "sim", "--topology", str(topo), "--state-dir", str(state)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sim_log.open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (state / "inventory.yaml").exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                return [Row.skipped(BENCH, case, "the simulator did not start")]
            time.sleep(0.2)
        time.sleep(0.5)
        out = workdir / f"merged{hosts}.pcapng"
        argv = [sys.executable, "-m", "esxcap", "-i", str(state / "inventory.yaml"), "capture"]
        for i in range(hosts):
            argv += ["--vm", f"a{i}"]
        argv += ["--dir", "out", "-c", str(COUNT), "--parallel", str(hosts), "--json"]
        _code, _doc, _wall, _cpu, base_rss = _run_cli([*argv, "--dry-run"], workdir / "dry.log")
        code, doc, wall, cpu, rss = _run_cli([*argv, "-o", str(out)], workdir / "cap.log")
        if doc is None or not out.exists():
            said = (workdir / "cap.log").read_text(errors="replace").strip().splitlines()
            return [Row.skipped(BENCH, case, f"capture exit {code}: {said[-1] if said else 'no output'}")]
        packets, span_ns = _file_packets(out)
        lost = hosts * COUNT - packets
        dropped = sum(s["dropped"] or 0 for s in doc["streams"])
        failed = sum(1 for s in doc["streams"] if s["error"]) + len(doc["errors"])
        rate = packets / (span_ns / 1e9) if span_ns else 0.0
        per_stream, above = rss / hosts, max(0, rss - base_rss) / hosts
        result = (
            f"{rate:,.0f} pkt/s aggregate, lost {lost} (+{dropped} dropped at pktcap-uw, {failed} failed), "
            f"CPU {cpu:.1f} s over {wall:.1f} s, "
            f"peak RSS {rss / MIB:.0f} MiB = {per_stream / MIB:.2f} MiB/stream "
            f"({above / MIB:.2f} MiB/stream above the --dry-run's {base_rss / MIB:.0f} MiB)"
        )
        ok = lost == 0 and dropped == 0 and failed == 0 and per_stream < RSS_TARGET
        target = "0 lost, < 1 MiB RSS/stream" if hosts == max(SIZES) else ""
        verdict = ("PASS" if ok else "MISS") if target else ""
        return [Row(BENCH, case, result, target, verdict)]
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def run(options: Options) -> list[Row]:
    """The scale rows of the benchmark table (--quick: 10 hosts only)."""
    with tempfile.TemporaryDirectory(
        prefix="esxcap-bench-scale-", dir=options.workdir, ignore_cleanup_errors=True
    ) as workdir:
        return [
            row
            for hosts in (QUICK_SIZES if options.quick else SIZES)
            for row in measure(hosts, Path(workdir))
        ]


if __name__ == "__main__":
    print("\n".join(r.result for r in run(Options(quick="--quick" in sys.argv))))
