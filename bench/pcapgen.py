"""A fast classic-pcap writer to stdout, the remote command of the throughput benchmark.

    python3 -m bench.pcapgen --bytes N [-c PACKETS] [--frame 1514] [--gap-ns 1000]
    python3 pcapgen.py --bytes N          (standalone: imports nothing outside the standard library)

Writes a little-endian nanosecond pcap header, then records of one fixed frame size (the last one
shortened so the stream is exactly N bytes when N allows it), timestamps `gap-ns` apart, in 1 MiB blocks;
with -c, at most that many records (pktcap-uw's -c: a capture that asks for them ends there, as asked).
Like pktcap-uw it ends cleanly (status 0) on SIGINT, the capture wrapper's stop.
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import time
from collections.abc import Iterator, Sequence

MAGIC_NANO = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
BLOCK = 1 << 20
DEFAULT_FRAME = 1514
DEFAULT_GAP_NS = 1000
"""1 µs between packets, as the simulator's bulk flow spaces them."""


def global_header(snaplen: int = 65535) -> bytes:
    return struct.pack("<IHHiIII", MAGIC_NANO, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def layout(total: int, frame: int = DEFAULT_FRAME) -> tuple[int, int]:
    """(records, captured packet bytes) of the stream `blocks(total, frame)` writes."""
    left = total - GLOBAL_HEADER_LEN
    full, rest = divmod(max(0, left), RECORD_HEADER_LEN + frame)
    tail = rest - RECORD_HEADER_LEN if rest >= RECORD_HEADER_LEN else None
    return full + (tail is not None), full * frame + (tail or 0)


def _frame(size: int) -> bytes:
    """An Ethernet/IPv4/UDP-looking frame of `size` bytes (broadcast MACs, zero payload)."""
    head = b"\xff" * 6 + b"\x00\x50\x56\x00\x00\x01" + b"\x08\x00"
    return (head + bytes(max(0, size - len(head))))[:size]


def blocks(total: int, frame: int = DEFAULT_FRAME, gap_ns: int = DEFAULT_GAP_NS) -> Iterator[bytes]:
    """The whole stream (header first) in blocks of about BLOCK bytes; exactly `total` bytes long
    when total >= 24 + 16 (a tail too short for a record header is left out)."""
    if frame < 1:
        raise ValueError("frame size must be at least 1 byte")
    yield global_header()
    left = total - GLOBAL_HEADER_LEN
    record_len = RECORD_HEADER_LEN + frame
    per_block = max(1, BLOCK // record_len)
    payload = _frame(frame)
    template = bytearray((b"\0" * RECORD_HEADER_LEN + payload) * per_block)
    pack_into = struct.Struct("<IIII").pack_into
    ts = time.time_ns()
    while left >= record_len:
        count = min(per_block, left // record_len)
        for i in range(count):
            sec, ns = divmod(ts, 1_000_000_000)
            pack_into(template, i * record_len, sec, ns, frame, frame)
            ts += gap_ns
        size = count * record_len
        yield bytes(template) if count == per_block else bytes(template[:size])
        left -= size
    if left >= RECORD_HEADER_LEN:
        tail = left - RECORD_HEADER_LEN
        sec, ns = divmod(ts, 1_000_000_000)
        yield struct.pack("<IIII", sec, ns, tail, tail) + payload[:tail]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pcapgen", description="write a pcap stream of N bytes to stdout")
    parser.add_argument("--bytes", type=int, required=True, help="stream length in bytes")
    parser.add_argument("--frame", type=int, default=DEFAULT_FRAME, help="captured bytes per packet")
    parser.add_argument("--gap-ns", type=int, default=DEFAULT_GAP_NS, help="time between packets")
    parser.add_argument("-c", "--count", type=int, help="at most this many packets")
    args = parser.parse_args(argv)
    if args.count is not None:
        args.bytes = min(args.bytes, GLOBAL_HEADER_LEN + args.count * (RECORD_HEADER_LEN + args.frame))
    fd = sys.stdout.fileno()
    signal.signal(signal.SIGINT, _stop)
    try:
        for block in blocks(args.bytes, args.frame, args.gap_ns):
            write_all(fd, block)
    except BrokenPipeError:
        return 141
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Python's exit would put back the default: death by INT
    return 0


def _stop(_signum: int, _frame: object) -> None:
    """SIGINT: the reader has what it wanted (every write so far went straight to the descriptor)."""
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
