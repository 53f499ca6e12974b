"""Ethernet frames of the simulated traffic: ARP, IPv4 with ICMP echo, UDP (DNS) and TCP, with real
lengths and checksums, plus the two rewrites a frame undergoes on its way (pure).

- `tag_vlan` inserts an 802.1Q tag (what a trunk uplink carries); `route` is a router hop: new MACs,
  TTL one lower, IPv4 header checksum recomputed (payload and its checksum unchanged).
- `fields` reads back what pktcap-uw's flow filters look at, from any frame these functions build.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
BROADCAST = "ff:ff:ff:ff:ff:ff"
DEFAULT_TTL = 64
MIN_FRAME = 60

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ip_bytes(ip: str) -> bytes:
    return IPv4Address(ip).packed


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ethernet(dst: str, src: str, ethtype: int, payload: bytes) -> bytes:
    frame = mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethtype) + payload
    return frame + b"\0" * (MIN_FRAME - len(frame)) if len(frame) < MIN_FRAME else frame


def arp(src_mac: str, src_ip: str, dst_mac: str, dst_ip: str, reply: bool) -> bytes:
    """An ARP request (broadcast, target MAC zero) or reply."""
    body = struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, 2 if reply else 1)
    target = mac_bytes(dst_mac) if reply else b"\0" * 6
    body += mac_bytes(src_mac) + ip_bytes(src_ip) + target + ip_bytes(dst_ip)
    return ethernet(dst_mac if reply else BROADCAST, src_mac, ETH_ARP, body)


def ipv4(
    src_mac: str,
    dst_mac: str,
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    ident: int,
    ttl: int = DEFAULT_TTL,
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, ttl, proto, 0,
        ip_bytes(src), ip_bytes(dst),
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return ethernet(dst_mac, src_mac, ETH_IPV4, header + payload)


def icmp_echo(ident: int, seq: int, reply: bool, size: int = 56) -> bytes:
    data = bytes(range(size))
    head = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    return head[:2] + struct.pack("!H", checksum(head + data)) + head[4:] + data


def icmp_unreachable(quoted: bytes, code: int = 3) -> bytes:
    """ICMP destination unreachable (port unreachable by default) quoting a datagram's start."""
    head = struct.pack("!BBHI", 3, code, 0, 0)
    return head[:2] + struct.pack("!H", checksum(head + quoted)) + head[4:] + quoted


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, proto, length)


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    head = struct.pack("!HHHH", sport, dport, 8 + len(data), 0)
    value = checksum(_pseudo(src, dst, PROTO_UDP, 8 + len(data)) + head + data) or 0xFFFF
    return head[:6] + struct.pack("!H", value) + data


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes) -> bytes:
    head = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0
    )
    value = checksum(_pseudo(src, dst, PROTO_TCP, len(head) + len(data)) + head + data)
    return head[:16] + struct.pack("!H", value) + head[18:] + data


def dns(ident: int, name: str, answer: str | None) -> bytes:
    """A DNS A query, or its response with one answer."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    flags = 0x8180 if answer else 0x0100
    body = struct.pack("!HHHHHH", ident & 0xFFFF, flags, 1, 1 if answer else 0, 0, 0) + qname + b"\0\1\0\1"
    if answer:
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + ip_bytes(answer)
    return body


def tag_vlan(frame: bytes, vlan: int) -> bytes:
    """The frame with an 802.1Q tag for `vlan` after the MAC addresses (vlan 0: unchanged)."""
    if vlan == 0:
        return frame
    return frame[:12] + struct.pack("!HH", ETH_VLAN, vlan) + frame[12:]


def route(frame: bytes, src_mac: str, dst_mac: str) -> bytes:
    """An untagged IPv4 frame after a router: new MACs, TTL - 1, header checksum redone."""
    header = bytearray(frame[14:34])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + frame[12:14] + bytes(header) + frame[34:]


@dataclass(frozen=True)
class Fields:
    """What the flow filters look at; None where the frame has no such field."""

    src_mac: str
    dst_mac: str
    vlan: int
    ethtype: int
    src_ip: int | None = None
    dst_ip: int | None = None
    proto: int | None = None
    src_port: int | None = None
    dst_port: int | None = None


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def fields(frame: bytes) -> Fields:
    """Parse the headers of a frame (tagged or not)."""
    ethtype = struct.unpack_from("!H", frame, 12)[0]
    offset, vlan = 14, 0
    if ethtype == ETH_VLAN:
        vlan = struct.unpack_from("!H", frame, 14)[0] & 0xFFF
        ethtype = struct.unpack_from("!H", frame, 16)[0]
        offset = 18
    macs = _mac_text(frame[6:12]), _mac_text(frame[0:6])
    if ethtype != ETH_IPV4:
        return Fields(macs[0], macs[1], vlan, ethtype)
    ihl = (frame[offset] & 0x0F) * 4
    proto = frame[offset + 9]
    src, dst = struct.unpack_from("!II", frame, offset + 12)
    sport = dport = None
    if proto in (PROTO_TCP, PROTO_UDP):
        sport, dport = struct.unpack_from("!HH", frame, offset + ihl)
    return Fields(macs[0], macs[1], vlan, ethtype, src, dst, proto, sport, dport)
