"""What is in a capture, by tshark's own dissectors through pyshark: packets and bytes per interface and
per capture point (merged files), the protocol hierarchy, top conversations, TCP problems
(retransmissions, duplicate ACKs, resets, zero windows, failed handshakes), DNS errors and ICMP
unreachables.

A merged file holds the same packet once per capture point it passed (VnicTx, then the uplink...), and
tshark takes each later copy for a retransmission or a duplicate ACK. TCP problems are therefore
counted once per packet: a copy of a packet seen shortly before at another interface of the same file
(same bytes from the IP header on, TTL and checksum aside; within COPY_WINDOW_NS) adds nothing to them.
A packet repeated at one interface is a real repeat and counts.

pyshark drives tshark from an asyncio loop of its own: its synchronous API breaks inside a running loop,
and on the main thread it needs the thread's default loop (gone once anything ran `asyncio.run`) and
replaces the process's child watcher. `analyze_files` therefore always runs it on a worker thread of its
own, where pyshark makes a fresh loop. The only module that uses pyshark.

pyshark closes a capture by polling tshark and killing it. When tshark has just exited, that poll can
reap it before asyncio's child watcher does, and the watcher then reports "returncode 255", which
pyshark raises as a tshark crash. `_open` lets a tshark whose output was read to the end be reaped by
the watcher first (one still writing, when reading stopped early, is killed at once as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, Record

INSTALL_HINT = (
    "install Wireshark's command-line tools: apt install tshark (Debian/Ubuntu), "
    "dnf install wireshark-cli (Fedora/RHEL), brew install wireshark (macOS)"
)
TSHARK_EXIT_GRACE = 0.5  # seconds a closing capture waits for tshark to end on its own before the kill
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
DNS_RESPONSE = 0x8000
DNS_RCODES = {1: "FormErr", 2: "ServFail", 3: "NXDomain", 4: "NotImp", 5: "Refused"}
COPY_WINDOW_NS = 1_000_000_000
"""How far apart two sightings of one packet at different capture points may be (esxcap's reorder window)."""
PROGRESS_EVERY = 50_000
"""Packets between two progress reports."""
Progress = Callable[[str, int], None]


def _packet_key(data: bytes | memoryview) -> bytes | None:
    """What stays the same when one packet passes several capture points: its bytes from the IP header
    on (a VLAN tag added or removed on the way, TTL and header checksum aside); None for non-IP."""
    offset, ethertype = 12, bytes(data[12:14])
    while ethertype in (b"\x81\x00", b"\x88\xa8"):
        offset += 4
        ethertype = bytes(data[offset : offset + 2])
    packet = bytearray(data[offset + 2 :])
    if ethertype == b"\x08\x00" and len(packet) >= 20:
        packet[8] = packet[10] = packet[11] = 0
    elif ethertype == b"\x86\xdd" and len(packet) >= 40:
        packet[7] = 0
    else:
        return None
    return hashlib.blake2b(packet, digest_size=16).digest()


def copies_at_other_points(records: Iterator[Record]) -> Iterator[bool]:
    """For each record in file order: is it a copy of a packet seen within COPY_WINDOW_NS before at
    another interface? (memory: the packets of the last COPY_WINDOW_NS)"""
    recent: dict[bytes, int] = {}
    order: deque[tuple[int, bytes]] = deque()
    for record in records:
        while order and order[0][0] < record.ts_ns - COPY_WINDOW_NS:
            _, old = order.popleft()
            recent.pop(old, None)
        key = _packet_key(record.data)
        if key is None:
            yield False
            continue
        seen = recent.get(key)
        yield seen is not None and seen != record.interface
        if seen is None:
            recent[key] = record.interface
            order.append((record.ts_ns, key))


def _copies(path: Path, max_packets: int | None) -> Iterator[bool]:
    with path.open("rb") as handle:
        records = iter(CaptureFile(handle, path.name))
        if max_packets is not None:
            records = (r for _, r in zip(range(max_packets), records, strict=False))
        yield from copies_at_other_points(records)


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def require_tshark() -> None:
    if not tshark_available():
        raise UsageError("analysis needs tshark, which is not installed", INSTALL_HINT)


@dataclass
class _Tally:
    """Counters filled packet by packet."""

    packets: int = 0
    bytes: int = 0
    interfaces: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    protocols: Counter[str] = field(default_factory=Counter)
    protocol_bytes: Counter[str] = field(default_factory=Counter)
    conversations: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    retransmissions: int = 0
    duplicate_acks: int = 0
    resets: int = 0
    zero_windows: int = 0
    copies: int = 0
    syn_streams: set[tuple[str, str]] = field(default_factory=set)
    synack_streams: set[tuple[str, str]] = field(default_factory=set)
    dns_errors: Counter[str] = field(default_factory=Counter)
    unreachable: Counter[str] = field(default_factory=Counter)
    truncated: bool = False


def _int(value: Any, base: int = 10) -> int:
    try:
        return int(str(value), base)
    except (TypeError, ValueError):
        return 0


def _flat(tree: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every field of a layer's JSON tree by its tshark name (first occurrence wins): expert items such
    as `tcp.analysis.retransmission` sit several levels down."""
    into = {} if into is None else into
    if isinstance(tree, list):
        for item in tree:
            _flat(item, into)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            into.setdefault(key, value)
            _flat(value, into)
    return into


def _fields(pkt: Any, layer: str) -> dict[str, Any]:
    return _flat(getattr(pkt, layer)._all_fields)


def _packet(tally: _Tally, file: str, pkt: Any, copy: bool) -> None:
    frame = _fields(pkt, "frame_info")
    size = _int(frame.get("frame.len"))
    tally.packets += 1
    tally.bytes += size
    iface_id = str(frame.get("frame.interface_id", "0"))
    iface = tally.interfaces.setdefault((file, iface_id), [frame.get("frame.interface_name") or file, 0, 0])
    iface[1] += 1
    iface[2] += size
    path: list[str] = []
    for proto in str(frame.get("frame.protocols", "")).split(":"):
        path.append(proto)
        tally.protocols[":".join(path)] += 1
        tally.protocol_bytes[":".join(path)] += size
    layers = {layer.layer_name for layer in pkt.layers}
    net = pkt.ip if "ip" in layers else pkt.ipv6 if "ipv6" in layers else None
    if "tcp" in layers and net is not None:
        _tcp(tally, file, net, _fields(pkt, "tcp"), size, copy)
    elif "udp" in layers and net is not None:
        _conversation(tally, "udp", f"{net.src}:{pkt.udp.srcport}", f"{net.dst}:{pkt.udp.dstport}", size)
    if "dns" in layers:
        dns = _fields(pkt, "dns")
        flags = _int(dns.get("dns.flags"), 16)
        if flags & DNS_RESPONSE and flags & 0xF:
            name = dns.get("dns.qry.name") or "?"
            tally.dns_errors[f"{DNS_RCODES.get(flags & 0xF, f'rcode {flags & 0xF}')} {name}"] += 1
    if "icmp" in layers and _int(pkt.icmp.type) == 3 and net is not None:
        tally.unreachable[f"{net.src} -> {net.dst} code {pkt.icmp.code}"] += 1
    elif "icmpv6" in layers and _int(pkt.icmpv6.type) == 1 and net is not None:
        tally.unreachable[f"{net.src} -> {net.dst} code {pkt.icmpv6.code}"] += 1


def _conversation(tally: _Tally, proto: str, a: str, b: str, size: int) -> None:
    first, second = sorted((a, b))
    entry = tally.conversations.setdefault((proto, first, second), [0, 0])
    entry[0] += 1
    entry[1] += size


def _tcp(tally: _Tally, file: str, net: Any, tcp: dict[str, Any], size: int, copy: bool) -> None:
    _conversation(
        tally, "tcp", f"{net.src}:{tcp.get('tcp.srcport')}", f"{net.dst}:{tcp.get('tcp.dstport')}", size
    )
    flags = _int(tcp.get("tcp.flags"), 16)
    stream = (file, str(tcp.get("tcp.stream")))
    if copy:
        tally.copies += 1
        return
    if flags & TCP_RST:
        tally.resets += 1
    if flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
        tally.syn_streams.add(stream)
    elif flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
        tally.synack_streams.add(stream)
    tally.retransmissions += "tcp.analysis.retransmission" in tcp
    tally.duplicate_acks += "tcp.analysis.duplicate_ack" in tcp
    tally.zero_windows += "tcp.analysis.zero_window" in tcp


def _open(path: Path) -> Any:
    """A pyshark FileCapture whose close waits for tshark's exit status before killing it."""
    return _capture_class()(str(path), keep_packets=False, use_json=True)


@functools.cache
def _capture_class() -> Any:
    import pyshark

    class FileCapture(pyshark.FileCapture):  # type: ignore[misc]
        async def _cleanup_subprocess(self, process: asyncio.subprocess.Process) -> None:
            if process.returncode is None and self._eof_reached:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), TSHARK_EXIT_GRACE)
            await super()._cleanup_subprocess(process)

    return FileCapture


def _read(paths: Sequence[Path], max_packets: int | None, progress: Progress | None) -> _Tally:
    tally = _Tally()
    for path in paths:
        capture = _open(path)
        copies = _copies(path, max_packets)
        try:
            for count, pkt in enumerate(capture):
                if max_packets is not None and count >= max_packets:
                    tally.truncated = True
                    break
                _packet(tally, path.name, pkt, next(copies, False))
                if progress is not None and count and count % PROGRESS_EVERY == 0:
                    progress(path.name, count)
        finally:
            capture.close()
    return tally


def _document(paths: Sequence[Path], tally: _Tally, top: int) -> dict[str, Any]:
    points: Counter[str] = Counter()
    for (_, _), (name, packets, _) in tally.interfaces.items():
        parts = str(name).split(":")
        points[parts[2] if len(parts) >= 4 else str(name)] += packets
    conversations = sorted(tally.conversations.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "files": [str(p) for p in paths],
        "packets": tally.packets,
        "bytes": tally.bytes,
        "partial": tally.truncated,
        "interfaces": [
            {"file": f, "id": int(i), "name": n, "packets": p, "bytes": b}
            for (f, i), (n, p, b) in tally.interfaces.items()
        ],
        "capture_points": dict(points),
        "protocols": [
            {"path": k, "packets": v, "bytes": tally.protocol_bytes[k]}
            for k, v in sorted(tally.protocols.items())
        ],
        "conversations": [
            {"proto": proto, "a": a, "b": b, "packets": packets, "bytes": size}
            for (proto, a, b), (packets, size) in conversations[:top]
        ],
        "conversation_count": {
            proto: sum(1 for k in tally.conversations if k[0] == proto) for proto in ("tcp", "udp")
        },
        "tcp": {
            "retransmissions": tally.retransmissions,
            "duplicate_acks": tally.duplicate_acks,
            "resets": tally.resets,
            "zero_windows": tally.zero_windows,
            "failed_handshakes": len(tally.syn_streams - tally.synack_streams),
        },
        "tcp_copies_not_counted": tally.copies,
        "dns_errors": dict(tally.dns_errors),
        "icmp_unreachable": dict(tally.unreachable),
    }


def analyze_files(
    paths: Sequence[Path],
    top: int = 10,
    max_packets: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The analysis document of one or more captures (each at most `max_packets` packets read);
    `progress` hears (file name, packets read) every PROGRESS_EVERY packets."""
    require_tshark()
    with ThreadPoolExecutor(1) as worker:
        return _document(paths, worker.submit(_read, paths, max_packets, progress).result(), top)


def highlights(doc: dict[str, Any]) -> list[str]:
    """A few lines for the bundle README."""
    tcp = doc["tcp"]
    lines = [
        f"{doc['packets']} packets, {doc['bytes']} bytes"
        + (" (first packets only)" if doc["partial"] else "")
    ]
    problems = [f"{v} {k.replace('_', ' ')}" for k, v in tcp.items() if v]
    lines.append(
        "TCP: "
        + (", ".join(problems) if problems else "no retransmissions, resets or zero windows")
        + " (each packet counted once, however many capture points saw it)"
    )
    if doc["dns_errors"]:
        lines.append(f"DNS errors: {sum(doc['dns_errors'].values())}")
    if doc["icmp_unreachable"]:
        lines.append(f"ICMP unreachables: {sum(doc['icmp_unreachable'].values())}")
    lines += [
        f"top conversation: {c['proto']} {c['a']} <-> {c['b']}, {c['packets']} packets"
        for c in doc["conversations"][:1]
    ]
    return lines
