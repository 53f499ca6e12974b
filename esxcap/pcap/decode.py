"""What a captured packet looks like on a terminal: a one-line summary, pktcap-uw's hex dump, and the
line esxcap prints per packet in console mode.

Pure and stdlib-only, as it runs once per packet while captures stream. Decoders read only the bytes that
were captured: a header cut off (by the snaplen or a short frame) ends the summary with `[truncated]`,
never with an exception. Text taken from packets (DNS names) or from users (labels) is escaped, so no
packet can send control sequences to the terminal.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from esxcap.pcap.records import Record
from esxcap.printable import printable

TRUNCATED = "[truncated]"
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_ETHERTYPES = {
    0x0842: "Wake-on-LAN",
    0x8035: "RARP",
    0x8809: "Slow Protocols/LACP",
    0x8847: "MPLS",
    0x8848: "MPLS multicast",
    0x888E: "EAPOL",
    0x88CC: "LLDP",
    0x88E5: "MACsec",
    0x88F7: "PTP",
    0x8906: "FCoE",
    0x8914: "FIP",
    0x9000: "Loopback",
}
_IP_PROTOS = {2: "IGMP", 4: "IPIP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH", 89: "OSPF", 103: "PIM",
              112: "VRRP", 132: "SCTP"}  # fmt: skip
_IPV6_EXT_HEADERS = frozenset((0, 43, 60))
_TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"), (0x40, "E"),
              (0x80, "W"))  # fmt: skip
_ICMP_UNREACHABLE = ("net unreachable", "host unreachable", "protocol unreachable", "port unreachable",
                     "fragmentation needed", "source route failed", "net unknown", "host unknown",
                     "source host isolated", "net prohibited", "host prohibited", "net unreachable for TOS",
                     "host unreachable for TOS", "administratively prohibited", "host precedence violation",
                     "precedence cutoff")  # fmt: skip
_ICMP_TYPES = {4: "source quench", 5: "redirect", 9: "router advertisement", 10: "router solicitation",
               12: "parameter problem", 13: "timestamp request", 14: "timestamp reply"}  # fmt: skip
_ICMP6_UNREACHABLE = ("no route", "administratively prohibited", "beyond scope of source address",
                      "address unreachable", "port unreachable", "source address failed policy",
                      "reject route")  # fmt: skip
_ICMP6_TYPES = {4: "parameter problem", 130: "multicast listener query", 131: "multicast listener report",
                132: "multicast listener done", 133: "router solicitation", 134: "router advertisement",
                137: "redirect", 143: "multicast listener report v2"}  # fmt: skip
_DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 41: "OPT", 43: "DS", 46: "RRSIG", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS",
              252: "AXFR", 255: "ANY"}  # fmt: skip
_DNS_RCODES = ("", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
_VXLAN_PORT = 4789
_MAX_NESTING = 2
"""Tunnels decoded inside tunnels (VXLAN carries a whole Ethernet frame)."""


class _Short(Exception):
    """The captured bytes end before the header being decoded."""


def _need(data: bytes, end: int) -> None:
    if end > len(data):
        raise _Short


def summarize(data: bytes | memoryview, origlen: int) -> str:
    """One line describing an Ethernet frame: MACs, VLAN tags, then ARP / IPv4 / IPv6 with TCP, UDP
    (DNS, VXLAN), ICMP or ICMPv6, or the ethertype. `origlen` is the length on the wire."""
    out: list[str] = []
    _frame(bytes(data), 0, out)
    return ", ".join(out)


def _frame(data: bytes, depth: int, out: list[str]) -> None:
    out.append("Ethernet")
    try:
        _ethernet(data, depth, out)
    except _Short:
        out[-1] = f"{out[-1]} {TRUNCATED}"


def mac_text(raw: bytes) -> str:
    """aa:bb:cc:dd:ee:ff"""
    return raw.hex(":")


def _ipv4_text(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def _ethernet(data: bytes, depth: int, out: list[str]) -> None:
    _need(data, 14)
    out[-1] = f"{mac_text(data[6:12])} > {mac_text(data[0:6])}"
    ethertype = int.from_bytes(data[12:14], "big")
    off = 14
    while ethertype in _VLAN_TPIDS:
        out.append("vlan")
        _need(data, off + 4)
        tci, ethertype = struct.unpack_from("!HH", data, off)
        priority = tci >> 13
        out[-1] = f"vlan {tci & 0xFFF}" + (f" pri {priority}" if priority else "")
        off += 4
    if ethertype == 0x0800:
        _ipv4(data, off, depth, out)
    elif ethertype == 0x86DD:
        _ipv6(data, off, depth, out)
    elif ethertype == 0x0806:
        _arp(data, off, out)
    elif ethertype < 0x0600:
        _llc(data, off, ethertype, out)
    else:
        name = _ETHERTYPES.get(ethertype)
        out.append(f"ethertype 0x{ethertype:04x}" + (f" ({name})" if name else ""))


def _arp(data: bytes, off: int, out: list[str]) -> None:
    out.append("ARP")
    _need(data, off + 8)
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", data, off)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        out[-1] = f"ARP htype {htype} ptype 0x{ptype:04x} op {op}"
        return
    _need(data, off + 28)
    sha, spa, tpa = data[off + 8 : off + 14], data[off + 14 : off + 18], data[off + 24 : off + 28]
    if op == 1:
        out[-1] = f"ARP who-has {_ipv4_text(tpa)} tell {_ipv4_text(spa)}"
    elif op == 2:
        out[-1] = f"ARP {_ipv4_text(spa)} is-at {mac_text(sha)}"
    else:
        out[-1] = f"ARP op {op} {_ipv4_text(spa)} > {_ipv4_text(tpa)}"


def _llc(data: bytes, off: int, length: int, out: list[str]) -> None:
    out.append("802.3 LLC")
    _need(data, off + 3)
    dsap, ssap = data[off], data[off + 1]
    if dsap == ssap == 0x42:
        out[-1] = "STP"
    elif dsap == ssap == 0xAA:
        _need(data, off + 8)
        oui, pid = data[off + 3 : off + 6].hex(), int.from_bytes(data[off + 6 : off + 8], "big")
        known = {("00000c", 0x2000): "CDP", ("00000c", 0x010B): "PVST+"}.get((oui, pid))
        out[-1] = known or f"802.3 SNAP oui 0x{oui} pid 0x{pid:04x}"
    else:
        out[-1] = f"802.3 LLC dsap 0x{dsap:02x} ssap 0x{ssap:02x} length {length}"


def _ipv4(data: bytes, off: int, depth: int, out: list[str]) -> None:
    out.append("IPv4")
    _need(data, off + 20)
    vihl, _tos, total, _ident, frag, _ttl, proto = struct.unpack_from("!BBHHHBB", data, off)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or total < ihl:
        out[-1] = f"IPv4 bad header (version {vihl >> 4}, header length {ihl}, total length {total})"
        return
    out[-1] = f"{_ipv4_text(data[off + 12 : off + 16])} > {_ipv4_text(data[off + 16 : off + 20])}"
    payload_len = total - ihl
    offset = (frag & 0x1FFF) * 8
    if offset:
        name = _IP_PROTOS.get(proto) or {1: "ICMP", 6: "TCP", 17: "UDP"}.get(proto, f"proto {proto}")
        out.append(f"{name} fragment offset {offset} len {payload_len}")
        return
    _transport(data, off + ihl, min(len(data), off + total), proto, payload_len, False, depth, out)


def _ipv6(data: bytes, off: int, depth: int, out: list[str]) -> None:
    out.append("IPv6")
    _need(data, off + 40)
    payload_len, proto = struct.unpack_from("!HB", data, off + 4)
    if data[off] >> 4 != 6:
        out[-1] = f"IPv6 bad version {data[off] >> 4}"
        return
    src, dst = IPv6Address(data[off + 8 : off + 24]), IPv6Address(data[off + 24 : off + 40])
    out[-1] = f"{src} > {dst}"
    end = off + 40 + payload_len
    off += 40
    for _ in range(8):
        if proto in _IPV6_EXT_HEADERS or proto == 51:
            _need(data, off + 2)
            ext_len = (data[off + 1] + 2) * 4 if proto == 51 else (data[off + 1] + 1) * 8
            proto = data[off]
            off += ext_len
        elif proto == 44:
            _need(data, off + 8)
            proto, frag = data[off], int.from_bytes(data[off + 2 : off + 4], "big")
            off += 8
            if frag >> 3:
                out.append(f"fragment offset {(frag >> 3) * 8} next header {proto} len {end - off}")
                return
        else:
            break
    _transport(data, off, min(len(data), end), proto, end - off, True, depth, out)


def _transport(
    data: bytes, off: int, end: int, proto: int, length: int, v6: bool, depth: int, out: list[str]
) -> None:
    """The layer above IP; `end` is where the IP payload stops within the captured bytes, `length` the
    payload's length according to the IP header."""
    if proto == 6:
        _tcp(data, off, length, out)
    elif proto == 17:
        _udp(data, off, end, depth, out)
    elif proto == 1 and not v6:
        _icmp(data, off, out)
    elif proto == 58 and v6:
        _icmp6(data, off, out)
    elif proto == 59 and v6:
        out.append("no next header")
    else:
        name = _IP_PROTOS.get(proto)
        out.append(f"proto {proto}" + (f" ({name})" if name else "") + f" len {length}")


def _tcp(data: bytes, off: int, length: int, out: list[str]) -> None:
    out.append("TCP")
    _need(data, off + 20)
    sport, dport, seq, ack, offset_flags, window = struct.unpack_from("!HHIIHH", data, off)
    flags = "".join(char for bit, char in _TCP_FLAGS if offset_flags & bit) or "none"
    text = f"TCP {sport} > {dport} [{flags}] seq {seq}"
    if offset_flags & 0x10:
        text += f" ack {ack}"
    out[-1] = f"{text} win {window} len {max(0, length - (offset_flags >> 12) * 4)}"


def _udp(data: bytes, off: int, end: int, depth: int, out: list[str]) -> None:
    out.append("UDP")
    _need(data, off + 8)
    sport, dport, length = struct.unpack_from("!HHH", data, off)
    out[-1] = f"UDP {sport} > {dport} len {max(0, length - 8)}"
    payload = data[off + 8 : min(end, off + max(8, length))]
    if 53 in (sport, dport):
        try:
            _dns(payload, out)
        except _Short:
            if off + length > len(data):
                raise
            out[-1] = f"{out[-1]} [malformed]"
    elif dport == _VXLAN_PORT and depth < _MAX_NESTING:
        out.append("VXLAN")
        _need(payload, 8)
        out[-1] = f"VXLAN vni {int.from_bytes(payload[4:7], 'big')}"
        _frame(payload[8:], depth + 1, out)


def _icmp(data: bytes, off: int, out: list[str]) -> None:
    out.append("ICMP")
    _need(data, off + 4)
    icmp_type, code = data[off], data[off + 1]
    if icmp_type in (0, 8):
        _need(data, off + 8)
        ident, seq = struct.unpack_from("!HH", data, off + 4)
        kind = "request" if icmp_type == 8 else "reply"
        out[-1] = f"ICMP echo {kind} id {ident} seq {seq}"
    elif icmp_type == 3:
        reason = _ICMP_UNREACHABLE[code] if code < len(_ICMP_UNREACHABLE) else f"code {code}"
        if code == 4 and len(data) >= off + 8:
            reason += f", mtu {int.from_bytes(data[off + 6 : off + 8], 'big')}"
        out[-1] = f"ICMP destination unreachable ({reason})"
    elif icmp_type == 11:
        reasons = ("ttl exceeded in transit", "fragment reassembly time exceeded", f"code {code}")
        reason = reasons[min(code, 2)]
        out[-1] = f"ICMP time exceeded ({reason})"
    elif icmp_type in _ICMP_TYPES:
        out[-1] = f"ICMP {_ICMP_TYPES[icmp_type]} code {code}"
    else:
        out[-1] = f"ICMP type {icmp_type} code {code}"


def _icmp6(data: bytes, off: int, out: list[str]) -> None:
    out.append("ICMPv6")
    _need(data, off + 4)
    icmp_type, code = data[off], data[off + 1]
    if icmp_type in (128, 129):
        _need(data, off + 8)
        ident, seq = struct.unpack_from("!HH", data, off + 4)
        kind = "request" if icmp_type == 128 else "reply"
        out[-1] = f"ICMPv6 echo {kind} id {ident} seq {seq}"
    elif icmp_type in (135, 136):
        _need(data, off + 24)
        target = IPv6Address(data[off + 8 : off + 24])
        text = f"who-has {target}" if icmp_type == 135 else f"{target} is here"
        kind = "solicitation" if icmp_type == 135 else "advertisement"
        out[-1] = f"ICMPv6 neighbor {kind} {text}"
    elif icmp_type == 1:
        reason = _ICMP6_UNREACHABLE[code] if code < len(_ICMP6_UNREACHABLE) else f"code {code}"
        out[-1] = f"ICMPv6 destination unreachable ({reason})"
    elif icmp_type == 2:
        _need(data, off + 8)
        out[-1] = f"ICMPv6 packet too big, mtu {int.from_bytes(data[off + 4 : off + 8], 'big')}"
    elif icmp_type == 3:
        out[-1] = f"ICMPv6 time exceeded ({'hop limit exceeded' if code == 0 else 'reassembly'})"
    elif icmp_type in _ICMP6_TYPES:
        out[-1] = f"ICMPv6 {_ICMP6_TYPES[icmp_type]}"
    else:
        out[-1] = f"ICMPv6 type {icmp_type} code {code}"


def _dns(msg: bytes, out: list[str]) -> None:
    out.append("DNS")
    _need(msg, 12)
    ident, flags, questions, answers = struct.unpack_from("!HHHH", msg)
    is_response = bool(flags & 0x8000)
    text = f"DNS {'response' if is_response else 'query'} 0x{ident:04x}"
    if (flags >> 11) & 0x0F:
        text += f" opcode {(flags >> 11) & 0x0F}"
    out[-1] = text
    if questions:
        name, end = _dns_name(msg, 12)
        _need(msg, end + 4)
        qtype = int.from_bytes(msg[end : end + 2], "big")
        text += f" {_DNS_TYPES.get(qtype, f'TYPE{qtype}')} {name}"
    if is_response:
        rcode = flags & 0x0F
        text += f" {_DNS_RCODES[rcode] if rcode < len(_DNS_RCODES) else f'RCODE{rcode}'}" if rcode else ""
        text += f", {answers} answer{'' if answers == 1 else 's'}"
    out[-1] = text


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """The (escaped) name at `off` and the offset just after it in the message (compression followed)."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        _need(msg, off + 1)
        length = msg[off]
        if length == 0:
            return (".".join(labels) or "."), (off + 1 if end < 0 else end)
        if length >= 0xC0:
            _need(msg, off + 2)
            if end < 0:
                end = off + 2
            off = int.from_bytes(msg[off : off + 2], "big") & 0x3FFF
            continue
        if length > 63:
            break
        _need(msg, off + 1 + length)
        labels.append(_label_text(msg[off + 1 : off + 1 + length]))
        off += 1 + length
    return "<bad name>", (len(msg) if end < 0 else end)


def _label_text(raw: bytes) -> str:
    """A DNS label as dig shows it: printable ASCII kept, `.` and `\\` escaped, other bytes as `\\DDD`."""
    return "".join(
        "\\" + chr(b) if b in b".\\" else chr(b) if 0x21 <= b < 0x7F else f"\\{b:03d}" for b in raw
    )


def hexdump(data: bytes | memoryview, indent: str = "    ") -> str:
    """pktcap-uw's console dump of one packet (ESXi 7/8 layout): `Segment[0] ---- N bytes:`, then rows
    of 16 bytes in groups of two (`0x0010:  0054 15e5 ...`), an odd last byte alone, no trailing spaces."""
    raw = bytes(data)
    lines = [f"{indent}Segment[0] ---- {len(raw)} bytes:"]
    lines.extend(
        f"{indent}0x{off:04x}:  {raw[off : off + 16].hex(' ', -2)}" for off in range(0, len(raw), 16)
    )
    return "\n".join(lines)


def utc_time_text(ts_ns: int) -> str:
    """HH:MM:SS.ffffff in UTC (microseconds, truncated), as pktcap-uw and tcpdump print times."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    minutes, sec = divmod(seconds % 86_400, 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:{sec:02d}.{nanos // 1000:06d}"


def console_line(record: Record, point_label: str, index: int, summary: str | None = None) -> str:
    """The line printed per packet in console mode: UTC time, packet number, stream label (e.g.
    `esx01 web01 VnicTx`), length, and `summary` (default: the built-in one)."""
    caplen = len(record.data)
    length = f"{record.origlen}" if caplen >= record.origlen else f"{record.origlen} ({caplen} captured)"
    if summary is None:
        summary = summarize(record.data, record.origlen)
    return f"{utc_time_text(record.ts_ns)} [{index}] {printable(point_label)} length {length}: {summary}"
