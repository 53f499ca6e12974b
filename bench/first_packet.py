"""Time to first packet on a slow host: `esxcap capture --vm VM -c 1 -o -` against a raw
`ssh host 'pktcap-uw --switchport N -c 1 -o -'` on the same simulated host.

The simulator (in this process, `SimulatorThread`) serves one ESXi 8.0 host with VMS running VMs whose
every `esxcli` call takes LATENCY_MS, as on real hosts. Both commands run as subprocesses, interleaved,
and are timed from their start until the first packet record is on their stdout (the CLI's start-up,
connection and discovery included; the raw command uses OpenSSH's client, the port found beforehand).
The package is byte-compiled first, as an installed wheel is (see bench/startup.py).
Target: the median of esxcap <= 3x the median of the raw command. For comparison (no target), the same
capture on a second simulator whose esxcli answers at once: equal times mean no esxcli call is waited
for before the first packet; and the floor of any Python client on asyncssh, timed the same way: the
interpreter starting and importing asyncssh (as esxcap imports it) and yaml, then writing one byte.
"""

from __future__ import annotations

import compileall
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import IO, Any

import yaml

from bench import Options, Row

BENCH = "first packet"
HOST, VM, PEER = "esx03", "web02", "データベース01"
VMS = 30
LATENCY_MS = 700
RUNS, QUICK_RUNS = 5, 1
TARGET = 3.0
TIMEOUT_S = 120.0
PCAP_HEADER, PCAP_RECORD_HEADER = 24, 16
PCAPNG_PACKET_BLOCK = 6


def topology_data(latency_ms: int = LATENCY_MS) -> dict[str, Any]:
    """The demo topology's TEMPLATE host with VMS running VMs, esxcli taking `latency_ms` per call and
    a busy flow to VM."""
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    host = yaml.safe_load(text)["hosts"][HOST]
    running = [vm for vm in host["vms"] if vm.get("running", True)]
    extra = [
        {"name": f"filler{i:02d}", "vnics": [{"mac": f"00:50:56:a2:31:{i:02x}", "portgroup": "VM Network"}]}
        for i in range(VMS - len(running))
    ]
    host = {**host, "vms": [*host["vms"], *extra], "esxcli_latency_ms": latency_ms}
    flow = {"name": "busy", "from": VM, "to": PEER, "kind": "icmp", "rate_pps": 200}
    return {"hosts": {HOST: host}, "flows": [flow]}


def _first_pcap_record(stream: IO[bytes]) -> bool:
    """Read classic pcap until the first record header is complete."""
    return len(stream.read(PCAP_HEADER + PCAP_RECORD_HEADER)) == PCAP_HEADER + PCAP_RECORD_HEADER


def _first_pcapng_packet(stream: IO[bytes]) -> bool:
    """Read pcapng blocks until an Enhanced Packet Block starts."""
    while True:
        head = stream.read(8)
        if len(head) < 8:
            return False
        kind, length = int.from_bytes(head[:4], "little"), int.from_bytes(head[4:], "little")
        if kind == PCAPNG_PACKET_BLOCK:
            return True
        if len(stream.read(length - 8)) < length - 8:
            return False


def _timed(argv: list[str], first_packet: Any) -> tuple[float, str]:
    """(seconds until the first packet came out, error or "")."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    got = first_packet(proc.stdout)
    seconds = time.perf_counter() - start
    _, err = proc.communicate(timeout=TIMEOUT_S)
    if not got:
        said = err.decode(errors="replace").strip().splitlines()
        return seconds, f"exit {proc.returncode}: {said[-1] if said else 'no packet'}"
    return seconds, ""


FLOOR = """
from esxcap.ssh.transport.liboqs_lookup import liboqs_lookup_without_subprocess
with liboqs_lookup_without_subprocess():
    import asyncssh
import sys, yaml
sys.stdout.buffer.write(b"x")
"""
"""What every esxcap capture imports before it can connect, and nothing else."""


def _one_byte(stream: IO[bytes]) -> bool:
    return len(stream.read(1)) == 1


def _esxcap(inventory: Path) -> list[str]:
    capture = ["capture", "--host", HOST, "--vm", VM, "-c", "1", "-o", "-"]
    return [sys.executable, "-m", "esxcap", "-i", str(inventory), *capture]


def run(options: Options) -> list[Row]:
    """The time-to-first-packet rows: each command's median and their ratio checked against TARGET."""
    from esxcap.sim import SimulatorThread, topology_from_data

    case = f"capture --vm -c 1 / raw ssh pktcap-uw ({VMS} VMs, {LATENCY_MS} ms per esxcli)"
    ssh = shutil.which("ssh")
    if ssh is None:
        return [Row.skipped(BENCH, case, "OpenSSH's ssh client is not installed")]
    slow = topology_from_data(topology_data(), f"{HOST} with {VMS} VMs")
    instant = topology_from_data(topology_data(0), f"{HOST} with {VMS} VMs, esxcli at once")
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "esxcap", quiet=1)
    with (
        tempfile.TemporaryDirectory(prefix="esxcap-bench-first-", dir=options.workdir) as work,
        SimulatorThread(slow, Path(work) / "slow") as thread,
        SimulatorThread(instant, Path(work) / "instant") as instant_thread,
    ):
        sim = thread.sim
        sim_host = sim.hosts[HOST]
        vm = next(v for v in sim_host.topology.vms if v.name == VM)
        port = sim_host.topology.vnic_ports(vm)[0].port_id
        raw = [ssh, "-q", "-p", str(sim_host.port), "-i", str(sim.client_key_path)]
        raw += ["-o", f"UserKnownHostsFile={sim.known_hosts_path}", "-o", "BatchMode=yes"]
        raw += ["root@127.0.0.1", f"pktcap-uw --switchport {port} -c 1 -o -"]
        cases = {
            "raw ssh pktcap-uw": (raw, _first_pcap_record),
            "esxcap capture": (_esxcap(sim.inventory_path), _first_pcapng_packet),
            "esxcap capture, esxcli at once": (
                _esxcap(instant_thread.sim.inventory_path),
                _first_pcapng_packet,
            ),
            "floor: python + import asyncssh, yaml": ([sys.executable, "-c", FLOOR], _one_byte),
        }
        walls: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(QUICK_RUNS if options.quick else RUNS):
            for name, (argv, first) in cases.items():
                seconds, error = _timed(argv, first)
                if error:
                    return [Row.skipped(BENCH, name, error)]
                walls[name].append(seconds)
    medians = {name: statistics.median(w) for name, w in walls.items()}
    rows = [Row(BENCH, name, f"{m:.2f} s (median of {len(walls[name])})") for name, m in medians.items()]
    raw_s = medians["raw ssh pktcap-uw"]
    ratio = medians["esxcap capture"] / raw_s
    verdict = "PASS" if ratio <= TARGET else "MISS"
    floor = medians["floor: python + import asyncssh, yaml"] / raw_s
    return [
        *rows,
        Row(BENCH, case, f"{ratio:.1f}x", f"<= {TARGET:g}x", verdict),
        Row(BENCH, "floor / raw ssh pktcap-uw (no target)", f"{floor:.1f}x"),
    ]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(quick="--quick" in sys.argv))))
