"""Consistent pseudonyms for IP and MAC addresses, in packet headers and in text (pure).

One `Anonymizer` serves a whole bundle, so an address gets the same pseudonym in every capture file and
in the manifest. IPv4 addresses become 198.18.0.0/15 addresses, IPv6 addresses fd00::/8 ones and unicast
MACs locally administered 02:00:00:xx:xx:xx ones, handed out in order of first sight. Broadcast,
multicast, all-zero and netmask-shaped addresses are kept. Frames keep their layout: Ethernet (VLAN
tags too), ARP, IPv4 and IPv6 addresses are replaced and the IPv4 header, TCP, UDP and ICMPv6 checksums
adjusted (RFC 1624), so decoders see valid packets.

Beyond the headers: DHCP's address fields, NDP's target address and VXLAN's inner frame are rewritten
as such; then every address already given a pseudonym is replaced wherever its bytes occur later in
the frame (ICMP-quoted headers, IP options, DHCP options, LLDP, ARP payloads...), and an IPv4 address
or MAC written as text inside a payload (an HTTP `Host:` header) is masked with `x` of the same length
(a pseudonym of another length would break the stream's sequence numbers); the TCP/UDP checksum of a
whole segment whose payload changed is computed again. In text (comments, descriptions, names, file
names) IPv4, IPv6 and MACs in any spelling (`:` or `-` separated, upper or lower case, `xxxx.xxxx.xxxx`)
are replaced. Kept: addresses seen only inside a payload before any header carried them (other than the
fields named above), non-address identifiers (host names, VM names, DNS names) and, in packets cut
short, the checksum of the cut segment.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable
from typing import Any

_IPV4_TEXT = re.compile(r"(?<!\d)(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_MAC_TEXT = re.compile(
    r"(?<![0-9A-Fa-f:-])(?:[0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:-])"
    r"|(?<![0-9A-Fa-f.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![0-9A-Fa-f.])"
)
_IPV6_TEXT = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_IPV4_BYTES = re.compile(rb"(?<!\d)(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_MAC_BYTES = re.compile(rb"(?<![0-9A-Fa-f:-])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:-])")
DHCP_PORTS = (67, 68)
VXLAN_PORT = 4789
NDP_TYPES = (135, 136)
_V4_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
_V6_BASE = int(ipaddress.IPv6Address("fd00::"))
ETH_VLAN_TYPES = (0x8100, 0x88A8)
ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58


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
        self._known: re.Pattern[bytes] | None = None
        self._known_count = -1

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
        """`text` with every IPv4 and IPv6 address and MAC (any spelling) replaced by its pseudonym."""

        def address(
            kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address],
        ) -> Callable[[re.Match[str]], str]:
            pseudonym = self.ipv4 if kind is ipaddress.IPv4Address else self.ipv6

            def swap(match: re.Match[str]) -> str:
                try:
                    raw = kind(match.group()).packed
                except ValueError:
                    return match.group()
                return str(kind(pseudonym(raw)))

            return swap

        def mac(match: re.Match[str]) -> str:
            found = match.group()
            digits = re.sub("[^0-9A-Fa-f]", "", found)
            new = self.mac(bytes.fromhex(digits)).hex()
            new = new.upper() if digits.isupper() else new
            if "." in found:
                return ".".join(new[i : i + 4] for i in range(0, 12, 4))
            return (match.group(1) or ":").join(new[i : i + 2] for i in range(0, 12, 2))

        text = _IPV4_TEXT.sub(address(ipaddress.IPv4Address), text)
        return _IPV6_TEXT.sub(address(ipaddress.IPv6Address), _MAC_TEXT.sub(mac, text))

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
        original = bytes(b)
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
        self._scrub(b, off, ethtype, original)
        return bytes(b)

    def _replacements(self) -> re.Pattern[bytes] | None:
        """One pattern of every original address given a pseudonym so far (rebuilt as it grows)."""
        count = len(self._v4) + len(self._v6) + len(self._mac)
        if count != self._known_count:
            originals = sorted((*self._v6, *self._mac, *self._v4), key=len, reverse=True)
            self._known = re.compile(b"|".join(re.escape(o) for o in originals)) if originals else None
            self._known_count = count
        return self._known

    def _pseudonym(self, raw: bytes) -> bytes:
        table = {4: self._v4, 6: self._mac, 16: self._v6}[len(raw)]
        return table[raw]

    def _scrub(self, b: bytearray, off: int, ethtype: int, original: bytes) -> None:
        """Past the headers: known addresses' bytes replaced, address text masked, then the TCP/UDP/ICMP
        checksum of a whole segment computed again when anything changed."""
        start = _payload_start(b, off, ethtype)
        if start is None or start >= len(b):
            return
        after = bytes(b[start:])
        known = self._replacements()
        if known is not None:
            after = known.sub(lambda m: self._pseudonym(m.group()), after)
        after = _IPV4_BYTES.sub(_masked, _MAC_BYTES.sub(_masked, after))
        b[start:] = after
        if after != original[start:]:
            if ethtype == ETH_IPV4:
                ihl = (b[off] & 0x0F) * 4
                struct.pack_into("!H", b, off + 10, 0)
                struct.pack_into("!H", b, off + 10, _checksum(bytes(b[off : off + ihl])))
            _recompute_checksum(b, off, ethtype, original)

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
            if b[off + 9] == PROTO_UDP:
                self._udp_payload(b, off + ihl)

    def _ipv6_packet(self, b: bytearray, off: int) -> None:
        old = bytes(b[off + 8 : off + 40])
        new = self.ipv6(old[:16]) + self.ipv6(old[16:])
        b[off + 8 : off + 40] = new
        self._transport(b, off + 40, b[off + 6], old, new)
        at = off + 40
        if b[off + 6] == PROTO_ICMPV6 and len(b) >= at + 24 and b[at] in NDP_TYPES:
            self.ipv6(bytes(b[at + 8 : at + 24]))  # the target: replaced with the payload's addresses
        elif b[off + 6] == PROTO_UDP:
            self._udp_payload(b, at)

    def _udp_payload(self, b: bytearray, udp: int) -> None:
        """DHCP's address fields learnt (then replaced like any known address); a VXLAN inner frame
        rewritten as a frame of its own."""
        if len(b) < udp + 8:
            return
        ports = struct.unpack_from("!HH", b, udp)
        data = udp + 8
        if any(p in DHCP_PORTS for p in ports) and len(b) >= data + 44:
            for field in (12, 16, 20, 24):  # ciaddr, yiaddr, siaddr, giaddr
                self.ipv4(bytes(b[data + field : data + field + 4]))
            self.mac(bytes(b[data + 28 : data + 34]))  # chaddr
        elif VXLAN_PORT in ports and len(b) >= data + 8 + 14:
            inner = self.frame(bytes(b[data + 8 :]))
            b[data + 8 :] = inner

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


def _masked(match: re.Match[bytes]) -> bytes:
    """An address written as text, masked with `x` of the same length (separators kept)."""
    return re.sub(rb"[0-9A-Fa-f]", b"x", match.group())


def _payload_start(b: bytearray, off: int, ethtype: int) -> int | None:
    """Where a frame's bytes after its network header start (None: nothing to scrub)."""
    if ethtype == ETH_IPV4 and len(b) >= off + 20:
        return off + 20  # IP options (record route, timestamps) included
    if ethtype == ETH_IPV6 and len(b) >= off + 40:
        return off + 40
    if ethtype == ETH_ARP:
        return None  # its fields were rewritten as such
    return off


def _recompute_checksum(b: bytearray, off: int, ethtype: int, original: bytes) -> None:
    """The TCP/UDP/ICMP checksum of the segment, computed whole (only when the whole segment is there)."""
    if ethtype == ETH_IPV4:
        ihl, total = (b[off] & 0x0F) * 4, struct.unpack_from("!H", b, off + 2)[0]
        proto, seg = b[off + 9], off + ihl
        end = off + total
        pseudo = bytes(b[off + 12 : off + 20]) + struct.pack("!BBH", 0, proto, total - ihl)
    elif ethtype == ETH_IPV6:
        proto, seg = b[off + 6], off + 40
        end = seg + struct.unpack_from("!H", b, off + 4)[0]
        pseudo = bytes(b[off + 8 : off + 40]) + struct.pack("!IxxxB", end - seg, proto)
    else:
        return
    where = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMP: 2, PROTO_ICMPV6: 2}.get(proto)
    if where is None or end > len(b) or end < seg + where + 2:
        return
    if proto == PROTO_ICMP:
        pseudo = b""  # ICMP over IPv4 sums its own bytes only
        _quoted_header_checksum(b, seg + 8, end, original)
    if proto == PROTO_UDP and struct.unpack_from("!H", b, seg + where)[0] == 0:
        return
    struct.pack_into("!H", b, seg + where, 0)
    value = _checksum(pseudo + bytes(b[seg:end]))
    struct.pack_into("!H", b, seg + where, 0xFFFF if proto == PROTO_UDP and value == 0 else value)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _quoted_header_checksum(b: bytearray, inner: int, end: int, original: bytes) -> None:
    """The checksums of the IPv4 header an ICMP error quotes, and of the TCP/UDP header after it, made
    to match its new addresses."""
    if end < inner + 20 or b[inner] >> 4 != 4:
        return
    ihl = (b[inner] & 0x0F) * 4
    if end < inner + ihl:
        return
    struct.pack_into("!H", b, inner + 10, 0)
    struct.pack_into("!H", b, inner + 10, _checksum(bytes(b[inner : inner + ihl])))
    where = {PROTO_TCP: 16, PROTO_UDP: 6}.get(b[inner + 9])
    at = inner + ihl + (where or 0)
    if where is None or end < at + 2:
        return
    value = struct.unpack_from("!H", b, at)[0]
    if value or b[inner + 9] == PROTO_TCP:
        old, new = original[inner + 12 : inner + 20], bytes(b[inner + 12 : inner + 20])
        struct.pack_into("!H", b, at, _adjust(value, old, new))
