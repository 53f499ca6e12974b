"""Test support for the capture-file core: hand-built Ethernet/IPv4/UDP packets, classic pcap byte
streams, and the Wireshark command-line tools (capinfos, tshark) that must read every file we write.

Tool checks are marked `requires_tools`: when tshark/capinfos are absent they skip with that reason,
while the checks through our own reader (in separate tests) always run.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from esxcap.pcap import Record

TSHARK = shutil.which("tshark")
CAPINFOS = shutil.which("capinfos")
EDITCAP = shutil.which("editcap")
requires_tools = pytest.mark.skipif(
    not (TSHARK and CAPINFOS),
    reason="tshark/capinfos not installed (apt-get install tshark); our own reader checks ran anyway",
)

BASE_NS = 1_700_000_000_000_000_000


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def udp_frame(seq: int, stream: int = 0, payload_len: int = 18) -> bytes:
    """An Ethernet/IPv4/UDP frame from 10.0.<stream>.1 to 10.0.<stream>.2 whose payload starts with
    `stream` and `seq`, so a packet can be traced back to where it came from."""
    payload = struct.pack("!HI", stream, seq) + bytes(range(payload_len))[: max(0, payload_len - 6)]
    udp = struct.pack("!HHHH", 40000 + stream, 53, 8 + len(payload), 0) + payload
    src, dst = bytes([10, 0, stream & 0xFF, 1]), bytes([10, 0, stream & 0xFF, 2])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    eth = bytes.fromhex("005056000002005056000001") + b"\x08\x00"
    return eth + ip + udp


def frame_origin(data: bytes | memoryview) -> tuple[int, int]:
    """(stream, seq) written into a udp_frame's payload."""
    stream, seq = struct.unpack_from("!HI", bytes(data), 14 + 20 + 8)
    return stream, seq


def pcap_stream(
    records: Sequence[Record],
    *,
    nanos: bool = True,
    byteorder: str = "<",
    snaplen: int = 65535,
    linktype: int = 1,
) -> bytes:
    """A classic pcap stream built independently of esxcap's writer (for the reader's tests)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    parts = [struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for record in records:
        sec, rest = divmod(record.ts_ns, 1_000_000_000)
        frac = rest if nanos else rest // 1000
        parts.append(struct.pack(byteorder + "IIII", sec, frac, len(record.data), record.origlen))
        parts.append(bytes(record.data))
    return b"".join(parts)


def sample_records(
    count: int, stream: int = 0, start_ns: int = BASE_NS, step_ns: int = 1_000_000
) -> list[Record]:
    """`count` UDP frames of varying sizes, `step_ns` apart (multiples of 1 us survive microsecond pcap)."""
    out = []
    for seq in range(count):
        data = udp_frame(seq, stream, payload_len=6 + (seq * 37) % 200)
        out.append(Record(start_ns + seq * step_ns, len(data) + seq % 3, data))
    return out


def block(order: str, block_type: int, body: bytes, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """A pcapng block in either byte order, built independently of esxcap's writer (foreign files:
    other resolutions, big-endian sections, Simple Packet Blocks)."""
    opts = b"".join(struct.pack(order + "HH", c, len(v)) + v + b"\0" * (-len(v) % 4) for c, v in options)
    if options:
        opts += b"\0\0\0\0"
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body) + len(opts)
    return struct.pack(order + "II", block_type, total) + body + opts + struct.pack(order + "I", total)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), [(4, b"other tool")])


def idb(order: str, name: bytes, tsresol: int | None = None, tsoffset: int = 0, snaplen: int = 0) -> bytes:
    options = [(2, name)]
    if tsresol is not None:
        options.append((9, bytes([tsresol])))
    if tsoffset:
        options.append((14, struct.pack(order + "q", tsoffset)))
    return block(order, 1, struct.pack(order + "HHI", 1, 0, snaplen), options)


def epb(order: str, iface: int, units: int, data: bytes) -> bytes:
    head = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
    return block(order, 6, head + data)


def epoch_text(ts_ns: int) -> str:
    """A timestamp as tshark prints frame.time_epoch for nanosecond files."""
    return f"{ts_ns // 1_000_000_000}.{ts_ns % 1_000_000_000:09d}"


def run_tool(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{argv[0]} failed ({result.returncode}): {result.stderr}"
    return result.stdout


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    """One row per packet, one column per field (empty string when absent), as tshark decodes them."""
    assert TSHARK
    argv = [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in fields:
        argv += ["-e", name]
    return [line.split("\t") for line in run_tool(*argv).splitlines()]


@dataclass
class CapInfo:
    """What `capinfos` says about a file: top-level `key: value` lines (repeatable, e.g. comments) and
    each interface's `key = value` lines."""

    general: dict[str, list[str]] = field(default_factory=dict)
    interfaces: list[dict[str, list[str]]] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return int(self.general["Number of packets"][0])


def capinfos(path: Path) -> CapInfo:
    assert CAPINFOS
    info = CapInfo()
    for line in run_tool(CAPINFOS, "-M", str(path)).splitlines():
        if line.startswith("Interface #"):
            info.interfaces.append({})
        elif info.interfaces and " = " in line:
            key, value = line.strip().split(" = ", 1)
            info.interfaces[-1].setdefault(key, []).append(value)
        elif ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            info.general.setdefault(key.strip(), []).append(value.strip())
    return info


class FifoReader(threading.Thread):
    """Reads a FIFO to its end in the background, as Wireshark reads an extcap's FIFO; `start()` it
    before the writer opens the FIFO."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = b""

    def run(self) -> None:
        with self.path.open("rb") as handle:
            self.data = handle.read()
