"""Long run with triggers: the real `esxcap capture --trigger` against three simulated hosts (served by
the benchmark's process; the CLI runs in its own) at a steady rate, an intermittent TCP reset between
VMs on two of them every ~PERIOD_S seconds, kept as one event file per reset until EVENTS were kept,
while a ring of RING_FILES x RING_SIZE rolls beside them.

Checked, each a verdict: every event file opens in capinfos; each holds packets of all three hosts and
its trigger packet (the one with the comment) inside its window; the CLI's RSS stays flat (sampled each
second: the last sample against the first after the first event); the before-window spilled to its file
(--before-bytes is set below the window's size) and left no file behind; the ring's segments never
exceeded its bound (K x SIZE plus the open one, sampled each second), rotated, and each kept one opens in
capinfos; the event files outlived the rotation. Real time, not compressed: the
simulator's clocks are the host's, and clock offsets are measured against them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import MIB, Options, Row

BENCH = "long run"
HOSTS = 3
RATE_PPS = 1500
TCP_CYCLE = 53
"""Packets per cycle of the simulator's TCP flow: four closed connections (11 each) and a reset one (9)."""
PERIOD_S = 8.0
EVENTS, QUICK_EVENTS = 6, 2
BEFORE_S, AFTER_S = 2.0, 1.0
BEFORE_BYTES = 1 * MIB
RSS_GROWTH = 1.25
RING_FILES, RING_SIZE = 5, 2 * MIB
"""The ring beside the triggers (rolls several times over the run at these rates)."""


def topology() -> dict[str, Any]:
    """Three ESXi 8.0.2 hosts, VM v<i> on each; v<i> pings v<i+1> at RATE_PPS, v0 talks TCP to v1."""
    data: dict[str, Any] = {"hosts": {}, "flows": []}
    for i in range(HOSTS):
        data["hosts"][f"esx{i}"] = {
            "version": "8.0.2", "build": "22380479", "clock_skew_ms": 40 * i - 40,
            "uplinks": [{"name": "vmnic0", "pci": "0000:03:00.0", "driver": "ixgben",
                         "mac": f"a4:bf:01:00:00:{i:02x}", "description": "NIC"}],
            "vswitches": [{"name": "vSwitch0", "uplinks": ["vmnic0"], "portgroups": [{"name": "VMs"}]}],
            "vms": [{"name": f"v{i}", "vnics": [{"mac": f"00:50:56:00:01:{i:02x}", "ip": f"10.0.0.{i + 1}",
                                                 "portgroup": "VMs"}]}],
        }  # fmt: skip
        peer = f"v{(i + 1) % HOSTS}"
        data["flows"].append({"name": f"ping{i}", "from": f"v{i}", "to": peer, "kind": "icmp",
                              "rate_pps": RATE_PPS})  # fmt: skip
    data["flows"].append({"name": "app", "from": "v0", "to": "v1", "kind": "tcp", "port": 8443,
                          "rate_pps": TCP_CYCLE / PERIOD_S})  # fmt: skip
    return data


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _segments(out: Path, parts: bool = False) -> list[Path]:
    """The ring's segments in `out` (with `parts`: the one being written too)."""
    from esxcap.capture.ring import SEGMENT_NAME

    if not out.is_dir():
        return []
    found = []
    for path in out.iterdir():
        name = path.name.split(".pcapng.")[0] + ".pcapng" if parts and path.suffix == ".part" else path.name
        if SEGMENT_NAME.match(name) and (parts or path.suffix == ".pcapng"):
            found.append(path)
    return sorted(found)


def _events(doc: Any, out: Path) -> list[str]:
    """What is wrong with each event file (empty: nothing)."""
    from esxcap.pcap import CaptureFile

    problems = []
    capinfos = shutil.which("capinfos")
    for event in doc["triggers"]:
        path = out / event["file"]
        if capinfos and subprocess.run([capinfos, str(path)], capture_output=True, check=False).returncode:
            problems.append(f"{path.name}: capinfos cannot read it")
        with path.open("rb") as handle:
            source = CaptureFile(handle, path.name)
            records = list(source)
            names = [i.name for i in source.interfaces]
        hosts = {names[r.interface].split(":")[0] for r in records}
        marked = [r.ts_ns for r in records if r.comments]
        stamps = [r.ts_ns for r in records]
        if len(hosts) != HOSTS:
            problems.append(f"{path.name}: packets of {sorted(hosts)} only")
        if not marked or not min(stamps) < marked[0] < max(stamps):
            problems.append(f"{path.name}: no trigger packet inside the window")
    return problems


def measure(events: int, workdir: Path) -> list[Row]:
    """Serve the three hosts (in this process) and run the capture against them."""
    from esxcap.sim import SimulatorThread, topology_from_data

    with SimulatorThread(topology_from_data(topology(), "<long run>"), workdir / "state") as sim:
        return _capture(sim.sim.inventory_path, events, workdir)


def _capture(inventory: Path, events: int, workdir: Path) -> list[Row]:
    case = f"{HOSTS} hosts (a VM each), {RATE_PPS} pps pings, a reset every {PERIOD_S:g} s, {events} events"
    out = workdir / "out"
    argv = [sys.executable, "-m", "esxcap", "-i", str(inventory), "capture",
            *(a for i in range(HOSTS) for a in ("--vm", f"v{i}")), "--trigger", "tcp-rst",
            "--before", str(BEFORE_S), "--after", str(AFTER_S), "--before-bytes", str(BEFORE_BYTES),
            "--trigger-count", str(events), "-d", str(events * PERIOD_S * 3), "-o", f"{out}/",
            "--ring", f"files:{RING_FILES},filesize:{RING_SIZE}", "--json"]  # fmt: skip
    start = time.monotonic()
    with (workdir / "cli.log").open("wb") as err:
        cli = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        samples: list[int] = []
        disk = 0
        while cli.poll() is None:
            disk = max(disk, sum(p.stat().st_size for p in _segments(out, parts=True)))
            first_event = next(out.glob("*_trigger001_*"), None) if out.is_dir() else None
            rss = _rss(cli.pid)
            if rss is not None and first_event is not None:
                samples.append(rss)
            time.sleep(1.0)
        stdout = cli.communicate()[0]
    wall = time.monotonic() - start
    try:
        doc = json.loads(stdout or b"null")
    except json.JSONDecodeError:
        doc = None
    if cli.returncode != 0 or doc is None:
        said = (workdir / "cli.log").read_text(errors="replace").strip().splitlines()
        return [Row.skipped(BENCH, case, f"capture exit {cli.returncode}: {said[-1] if said else '?'}")]
    problems = _events(doc, out)
    if disk > (RING_FILES + 1) * RING_SIZE:
        problems.append(
            f"the ring held {disk / MIB:.1f} MiB, above {RING_FILES + 1} x {RING_SIZE / MIB:g} MiB"
        )
    capinfos = shutil.which("capinfos")
    segments = _segments(out)
    if len(segments) != RING_FILES or "older rotated out" not in (workdir / "cli.log").read_text():
        problems.append(f"the ring kept {len(segments)} segments and did not rotate")
    for segment in segments:
        if capinfos and subprocess.run([capinfos, str(segment)], capture_output=True, check=False).returncode:
            problems.append(f"{segment.name}: capinfos cannot read it")
    if not any(e["before_window_spilled_bytes"] for e in doc["triggers"]):
        problems.append(f"the before-window never spilled beyond --before-bytes {BEFORE_BYTES}")
    kept = len(doc["triggers"])
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".part"]
    flat = len(samples) >= 2 and samples[-1] <= samples[0] * RSS_GROWTH
    memory = "RSS not sampled"
    if samples:
        memory = f"RSS {samples[0] / MIB:.0f} -> {samples[-1] / MIB:.0f} MiB"
    result = (
        f"{kept}/{events} events in {wall:.0f} s, {memory}, ring at most {disk / MIB:.1f} MiB, "
        f"{'every window on all hosts' if not problems else '; '.join(problems[:2])}"
        f"{', files left: ' + ', '.join(leftovers) if leftovers else ''}"
    )
    ok = kept == events and not problems and flat and not leftovers
    target = "all events, all hosts, RSS flat, ring bound"
    return [Row(BENCH, case, result, target, "PASS" if ok else "MISS")]


def run(options: Options) -> list[Row]:
    """The long-run row (--quick: QUICK_EVENTS events)."""
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-longrun-", dir=options.workdir))
    try:
        return measure(QUICK_EVENTS if options.quick else EVENTS, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(quick="--quick" in sys.argv))))
