"""Consistent pseudonyms for IP and MAC addresses, in packet headers and in text (pure).

One `Anonymizer` serves a whole bundle, so an address gets the same pseudonym in every capture file and
in the manifest. IPv4 addresses become 198.18.0.0/15 addresses, IPv6 addresses fd00::/8 ones and unicast
MACs locally administered 02:00:00:xx:xx:xx ones, handed out in order of first sight. Broadcast,
multicast, all-zero and netmask-shaped addresses are kept. Frames keep their layout: Ethernet (VLAN
tags too), ARP, IPv4 and IPv6 addresses are replaced and the IPv4 header, TCP, UDP and ICMPv6 checksums
adjusted (RFC 1624), so decoders see valid packets. Payloads (DNS answers, ICMP-quoted headers) are kept.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import Any

_IPV4_TEXT = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_MAC_TEXT = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_V4_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
_V6_BASE = int(ipaddress.IPv6Address("fd00::"))
ETH_VLAN_TYPES = (0x8100, 0x88A8)
ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 6, 17, 58


def _is_mask(value: int) -> bool:
    inverted = ~value & 0xFFFFFFFF
    return value != 0 and inverted & (inverted + 1) == 0


def _adjust(checksum: int, old: bytes, new: bytes) -> int:
    """RFC 1624: the checksum after 16-bit-aligned `old` bytes became `new`."""
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i : i + 2], "big") & 0xFFFF) + int.from_bytes(new[i : i + 2], "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Anonymizer:
    """Pseudonyms handed out on first sight; `mapping()` tells original -> pseudonym."""

    def __init__(self) -> None:
        self._v4: dict[bytes, bytes] = {}
        self._v6: dict[bytes, bytes] = {}
        self._mac: dict[bytes, bytes] = {}

    def ipv4(self, raw: bytes) -> bytes:
        value = int.from_bytes(raw, "big")
        if value in (0, 0xFFFFFFFF) or raw[0] >= 224 or _is_mask(value):
            return raw
        if raw not in self._v4:
            self._v4[raw] = (_V4_BASE + 1 + len(self._v4)).to_bytes(4, "big")
        return self._v4[raw]

    def ipv6(self, raw: bytes) -> bytes:
        if raw[0] == 0xFF or not any(raw):
            return raw
        if raw not in self._v6:
            self._v6[raw] = (_V6_BASE + 1 + len(self._v6)).to_bytes(16, "big")
        return self._v6[raw]

    def mac(self, raw: bytes) -> bytes:
        if raw[0] & 1 or not any(raw):
            return raw
        if raw not in self._mac:
            self._mac[raw] = bytes([2, 0, 0]) + (1 + len(self._mac)).to_bytes(3, "big")
        return self._mac[raw]

    def text(self, text: str) -> str:
        """`text` with every IPv4 address and MAC replaced by its pseudonym."""

        def v4(match: re.Match[str]) -> str:
            try:
                raw = ipaddress.IPv4Address(match.group()).packed
            except ValueError:
                return match.group()
            return str(ipaddress.IPv4Address(self.ipv4(raw)))

        def mac(match: re.Match[str]) -> str:
            new = self.mac(bytes.fromhex(match.group().replace(":", "")))
            return ":".join(f"{b:02x}" for b in new)

        return _MAC_TEXT.sub(mac, _IPV4_TEXT.sub(v4, text))

    def document(self, value: Any) -> Any:
        """A JSON-like value with every string passed through `text`."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.document(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.document(v) for k, v in value.items()}
        return value

    def mapping(self) -> dict[str, dict[str, str]]:
        def mac_text(raw: bytes) -> str:
            return ":".join(f"{b:02x}" for b in raw)

        return {
            "ipv4": {
                str(ipaddress.IPv4Address(k)): str(ipaddress.IPv4Address(v)) for k, v in self._v4.items()
            },
            "ipv6": {
                str(ipaddress.IPv6Address(k)): str(ipaddress.IPv6Address(v)) for k, v in self._v6.items()
            },
            "mac": {mac_text(k): mac_text(v) for k, v in self._mac.items()},
        }

    def frame(self, data: bytes | memoryview) -> bytes:
        """An Ethernet frame with its addresses replaced and checksums adjusted (cut frames too)."""
        b = bytearray(data)
        if len(b) < 14:
            return bytes(b)
        b[0:6], b[6:12] = self.mac(bytes(b[0:6])), self.mac(bytes(b[6:12]))
        off = 12
        ethtype = struct.unpack_from("!H", b, off)[0]
        while ethtype in ETH_VLAN_TYPES and len(b) >= off + 6:
            off += 4
            ethtype = struct.unpack_from("!H", b, off)[0]
        off += 2
        if ethtype == ETH_ARP and len(b) >= off + 28:
            for start, size in ((8, 6), (14, 4), (18, 6), (24, 4)):
                at = off + start
                old = bytes(b[at : at + size])
                b[at : at + size] = self.mac(old) if size == 6 else self.ipv4(old)
        elif ethtype == ETH_IPV4 and len(b) >= off + 20:
            self._ipv4_packet(b, off)
        elif ethtype == ETH_IPV6 and len(b) >= off + 40:
            self._ipv6_packet(b, off)
        return bytes(b)

    def _ipv4_packet(self, b: bytearray, off: int) -> None:
        old = bytes(b[off + 12 : off + 20])
        new = self.ipv4(old[:4]) + self.ipv4(old[4:])
        b[off + 12 : off + 20] = new
        header_sum = struct.unpack_from("!H", b, off + 10)[0]
        struct.pack_into("!H", b, off + 10, _adjust(header_sum, old, new))
        ihl = (b[off] & 0x0F) * 4
        first_fragment = struct.unpack_from("!H", b, off + 6)[0] & 0x1FFF == 0
        if first_fragment:
            self._transport(b, off + ihl, b[off + 9], old, new)

    def _ipv6_packet(self, b: bytearray, off: int) -> None:
        old = bytes(b[off + 8 : off + 40])
        new = self.ipv6(old[:16]) + self.ipv6(old[16:])
        b[off + 8 : off + 40] = new
        self._transport(b, off + 40, b[off + 6], old, new)

    @staticmethod
    def _transport(b: bytearray, at: int, proto: int, old: bytes, new: bytes) -> None:
        where = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMPV6: 2}.get(proto)
        if where is None or len(b) < at + where + 2:
            return
        value = struct.unpack_from("!H", b, at + where)[0]
        if proto == PROTO_UDP and value == 0:
            return
        adjusted = _adjust(value, old, new)
        if proto == PROTO_UDP and adjusted == 0:
            adjusted = 0xFFFF
        struct.pack_into("!H", b, at + where, adjusted)
