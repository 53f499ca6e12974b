"""`esxcap path` on a big file: peak RSS and wall time against `tshark -r FILE -T fields -e frame.number`
on the same file, in the same run.

The file: PACKETS packets (--quick: a tenth) of small UDP flows between FLOWS address pairs, each packet
seen at two capture points of one host (vNIC out, then uplink out, DELAY_NS later), as an esxcap capture
of one VM's traffic would hold them; written by esxcap's PcapngWriter. Targets: peak RSS <= 300 MB and
time <= 3x tshark's.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import MIB, Options, Row
from bench.throughput import wait_rusage

BENCH = "path"
PACKETS = 2_000_000
FLOWS = 64
DELAY_NS = 40_000
GAP_NS = 10_000
TARGET_RSS = 300 * 1000 * 1000
TARGET_TIME = 3.0
POINTS = ("esx01:web01:VnicTx:out", "esx01:vmnic0:UplinkSndKernel:out")


def _frame(n: int) -> bytes:
    """An Ethernet/IPv4/UDP frame of flow n % FLOWS with IP id and payload told apart by n."""
    flow = n % FLOWS
    payload = struct.pack("!I", n) * 4
    udp = struct.pack("!HHHH", 40000 + flow, 53, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                     bytes((10, 0, 0, 1 + flow)), bytes((10, 0, 1, 1)))  # fmt: skip
    return b"\x00\x50\x56\x00\x00\x02" + b"\x00\x50\x56\x00\x00\x01" + b"\x08\x00" + ip + udp


def write_file(path: Path, packets: int) -> None:
    """`packets` sightings: packets // 2 frames, each at both POINTS."""
    from esxcap.pcap import Interface, PcapngWriter

    base = time.time_ns()
    with path.open("wb") as handle:
        writer = PcapngWriter(handle, comments=("path benchmark",))
        for name in POINTS:
            writer.add_interface(Interface(name, snaplen=65535))
        held: list[tuple[int, int, bytes]] = []
        for n in range(packets // 2):
            ts = base + n * GAP_NS
            frame = _frame(n)
            writer.write_packet(0, ts, frame)
            held.append((ts + DELAY_NS, 1, frame))
            while held and held[0][0] <= ts + GAP_NS:
                at, iface, data = held.pop(0)
                writer.write_packet(iface, at, data)
        for at, iface, data in held:
            writer.write_packet(iface, at, data)


def _timed(argv: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, error or "") of one subprocess run."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    said = proc.stderr.read().decode(errors="replace").strip().splitlines()
    usage = wait_rusage(proc)
    wall = time.perf_counter() - start
    error = "" if proc.returncode == 0 else f"exit {proc.returncode}: {said[-1] if said else '?'}"
    return wall, usage.ru_maxrss * 1024, error


def run(options: Options) -> list[Row]:
    """The path rows: esxcap path and tshark on one file, then the RSS and time checks."""
    tshark = shutil.which("tshark")
    packets = PACKETS // 10 if options.quick else PACKETS
    with tempfile.TemporaryDirectory(prefix="esxcap-bench-path-", dir=options.workdir) as scratch:
        path = Path(scratch) / "path.pcapng"
        write_file(path, packets)
        case = f"{packets:,} packets, {path.stat().st_size / MIB:.0f} MiB"
        ours = _timed([sys.executable, "-m", "esxcap", "path", "--json", str(path)])
        if ours[2]:
            return [Row.skipped(BENCH, f"esxcap path: {case}", ours[2])]
        rows = [Row(BENCH, f"esxcap path: {case}", f"{ours[0]:.1f} s, {ours[1] / MIB:.0f} MiB peak RSS")]
        rss = ours[1] / TARGET_RSS
        rows.append(Row.at_most(BENCH, "esxcap path peak RSS / 300 MB", rss, 1.0))
        if tshark is None:
            return [*rows, Row.skipped(BENCH, "tshark -T fields", "tshark not installed")]
        theirs = _timed([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number"])
        if theirs[2]:
            return [*rows, Row.skipped(BENCH, "tshark -T fields", theirs[2])]
        rows.append(Row(BENCH, f"tshark -T fields -e frame.number: {case}", f"{theirs[0]:.1f} s"))
        rows.append(Row.at_most(BENCH, "esxcap path time / tshark's", ours[0] / theirs[0], TARGET_TIME))
        return rows


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
