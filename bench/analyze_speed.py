"""`esxcap analyze` on a big file against tshark's own statistics pass over the same file
(`tshark -q -z io,phs -z conv,tcp -r FILE`), in the same run: wall time and peak RSS.

The file: `nbytes` (1 GiB; --quick 64 MiB) of FLOWS TCP connections carrying full-size segments, one in
RETRANSMIT_EVERY sent twice and a reset closing each connection's share, as a capture of a busy VM would
hold them; written by esxcap's PcapngWriter. Target: esxcap's time <= 1.5x tshark's, the two run back to back
once each (a 1 GiB pass takes minutes each; --repeat does not multiply them).
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from bench import MIB, Options, Row
from bench.path_speed import _timed

BENCH = "analyze"
FLOWS = 32
SEGMENT = 1400
RETRANSMIT_EVERY = 997
GAP_NS = 5_000
TARGET = 1.5
ACK, PSH, RST = 0x10, 0x08, 0x04
PAYLOAD = bytes(range(256)) * (SEGMENT // 256) + bytes(SEGMENT % 256)


def _segment(flow: int, seq: int, flags: int) -> bytes:
    """Ethernet/IPv4/TCP from client port 40000+flow to 10.0.1.1:443 (checksums left 0: tshark does not
    check them by default)."""
    payload = PAYLOAD if flags & PSH else b""
    tcp = struct.pack("!HHIIBBHHH", 40000 + flow, 443, seq, 1, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0, 64, 6, 0,
                     bytes((10, 0, 0, 1 + flow)), bytes((10, 0, 1, 1)))  # fmt: skip
    return b"\x00\x50\x56\x00\x01\x02" + b"\x00\x50\x56\x00\x00\x01" + b"\x08\x00" + ip + tcp


def write_file(path: Path, nbytes: int) -> int:
    """About `nbytes` of segments round-robin over FLOWS connections; returns the packet count."""
    from esxcap.pcap import Interface, PcapngWriter

    per_packet = len(_segment(0, 0, ACK | PSH)) + 32
    rounds = max(1, nbytes // per_packet // FLOWS)
    base, packets = time.time_ns(), 0
    with path.open("wb") as handle:
        writer = PcapngWriter(handle, comments=("analyze benchmark",))
        writer.add_interface(Interface("esx01:web01 eth0:VnicTx:out", snaplen=65535))
        for n in range(rounds):
            for flow in range(FLOWS):
                seq = 1 + n * SEGMENT
                frame = _segment(flow, seq, RST if n == rounds - 1 else ACK | PSH)
                copies = 2 if packets % RETRANSMIT_EVERY == 0 else 1
                for _ in range(copies):
                    writer.write_packet(0, base + packets * GAP_NS, frame)
                    packets += 1
    return packets


def run(options: Options) -> list[Row]:
    """The analyze rows: esxcap analyze and tshark's statistics pass on one file, then the time check."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return [Row.skipped(BENCH, "esxcap analyze / tshark -z io,phs -z conv,tcp", "tshark not installed")]
    with tempfile.TemporaryDirectory(prefix="esxcap-bench-analyze-", dir=options.workdir) as scratch:
        path = Path(scratch) / "analyze.pcapng"
        packets = write_file(path, options.nbytes)
        case = f"{packets:,} packets, {path.stat().st_size / MIB:.0f} MiB"
        argv = {
            "esxcap analyze": [sys.executable, "-m", "esxcap", "analyze", "--json", "--max-packets", "0"],
            "tshark -q -z io,phs -z conv,tcp": [tshark, "-n", "-q", "-z", "io,phs", "-z", "conv,tcp", "-r"],
        }
        timed: dict[str, tuple[float, int]] = {}
        for name, command in argv.items():
            wall, peak, error = _timed([*command, str(path)])
            if error:
                return [Row.skipped(BENCH, f"{name}: {case}", error)]
            timed[name] = (wall, peak)
    rows = [
        Row(BENCH, f"{name}: {case}", f"{wall:.1f} s, {peak / MIB:.0f} MiB peak RSS")
        for name, (wall, peak) in timed.items()
    ]
    ratio = timed["esxcap analyze"][0] / timed["tshark -q -z io,phs -z conv,tcp"][0]
    return [*rows, Row.at_most(BENCH, "esxcap analyze time / tshark's statistics pass", ratio, TARGET)]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(Options(repeat=1, quick="--quick" in sys.argv))))
