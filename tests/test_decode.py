"""The built-in packet decoder: exact one-line summaries of hand-built frames of every protocol it knows,
VLAN tags, frames cut at every length (never an exception, always `[truncated]` where a header is cut),
hostile DNS names kept off the terminal, pktcap-uw's hex dump against the verbatim console samples, and
agreement with tshark on addresses, ports and protocols."""

from __future__ import annotations

import re
import struct
from ipaddress import IPv6Address
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import fixture_text
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import TSHARK, tshark_fields

from esxcap.pcap import Interface, PcapngWriter, Record
from esxcap.pcap.decode import console_line, hexdump, summarize

MAC_A, MAC_B = "00:50:56:9d:43:42", "00:50:56:9d:fd:b1"
ETH = f"{MAC_A} > {MAC_B}"


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def eth(
    ethertype: int, payload: bytes, vlans: tuple[int, ...] = (), src: str = MAC_A, dst: str = MAC_B
) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, tci) for tci in vlans)
    return mac(dst) + mac(src) + tags + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64, frag: int = 0) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, frag, ttl, proto, 0, ip4(src), ip4(dst)
    )
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def ip6(text: str) -> bytes:
    return IPv6Address(text).packed


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + ip6(src) + ip6(dst) + payload


def tcp(sport: int, dport: int, flags: int, seq: int = 1000, ack: int = 0, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(icmp_type: int, code: int, rest: bytes) -> bytes:
    body = bytes([icmp_type, code, 0, 0]) + rest
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def dns(ident: int, flags: int, name: str, qtype: int, answers: int = 0) -> bytes:
    question = dns_name(name) + struct.pack("!HH", qtype, 1)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, 4) + bytes(4)
    return struct.pack("!HHHHHH", ident, flags, 1, answers, 0, 0) + question + answer * answers


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac(sha) + ip4(spa) + mac(tha) + ip4(tpa)


class Case(NamedTuple):
    frame: bytes
    summary: str


V4 = "10.0.0.1 > 10.0.0.2"
V6 = "fe80::1 > fe80::2"
DNS_QUERY = dns(0x1A2B, 0x0100, "web01.example.com", 1)
CASES = {
    "arp request": Case(
        eth(0x0806, arp(1, MAC_A, "10.0.0.2", "00:00:00:00:00:00", "10.0.0.1")),
        f"{ETH}, ARP who-has 10.0.0.1 tell 10.0.0.2",
    ),
    "arp reply": Case(
        eth(0x0806, arp(2, MAC_A, "10.0.0.1", MAC_B, "10.0.0.2")),
        f"{ETH}, ARP 10.0.0.1 is-at {MAC_A}",
    ),
    "tcp syn": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(51000, 443, 0x02))),
        f"{ETH}, {V4}, TCP 51000 > 443 [S] seq 1000 win 64240 len 0",
    ),
    "tcp syn-ack": Case(
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 6, tcp(443, 51000, 0x12, 5000, 1001))),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, TCP 443 > 51000 [S.] seq 5000 ack 1001 win 64240 len 0",
    ),
    "tcp push": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(51000, 443, 0x18, 1001, 5001, b"x" * 100))),
        f"{ETH}, {V4}, TCP 51000 > 443 [P.] seq 1001 ack 5001 win 64240 len 100",
    ),
    "tcp fin": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(51000, 443, 0x11, 1101, 5001))),
        f"{ETH}, {V4}, TCP 51000 > 443 [F.] seq 1101 ack 5001 win 64240 len 0",
    ),
    "tcp rst": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(51000, 443, 0x04, 1101))),
        f"{ETH}, {V4}, TCP 51000 > 443 [R] seq 1101 win 64240 len 0",
    ),
    "udp": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 12321, bytes(240)))),
        f"{ETH}, {V4}, UDP 40000 > 12321 len 240",
    ),
    "dns query": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 53, DNS_QUERY))),
        f"{ETH}, {V4}, UDP 40000 > 53 len 35, DNS query 0x1a2b A web01.example.com",
    ),
    "dns response": Case(
        eth(
            0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(53, 40000, dns(0x1A2B, 0x8180, "db.example", 28, 2)))
        ),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, UDP 53 > 40000 len 60, DNS response 0x1a2b AAAA db.example, 2 answers",
    ),
    "dns nxdomain": Case(
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(53, 40000, dns(7, 0x8183, "nope.example", 1)))),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, UDP 53 > 40000 len 30, "
        "DNS response 0x0007 A nope.example NXDOMAIN, 0 answers",
    ),
    "icmp echo request": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, struct.pack("!HH", 3357, 415) + bytes(56)))),
        f"{ETH}, {V4}, ICMP echo request id 3357 seq 415",
    ),
    "icmp echo reply": Case(
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 0, struct.pack("!HH", 3357, 415) + bytes(56)))),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, ICMP echo reply id 3357 seq 415",
    ),
    "icmp port unreachable": Case(
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(3, 3, bytes(4) + bytes(28)))),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, ICMP destination unreachable (port unreachable)",
    ),
    "icmp fragmentation needed": Case(
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(3, 4, struct.pack("!HH", 0, 1400) + bytes(28)))),
        f"{ETH}, 10.0.0.2 > 10.0.0.1, ICMP destination unreachable (fragmentation needed, mtu 1400)",
    ),
    "icmp time exceeded": Case(
        eth(0x0800, ipv4("10.0.0.254", "10.0.0.1", 1, icmp(11, 0, bytes(4) + bytes(28)))),
        f"{ETH}, 10.0.0.254 > 10.0.0.1, ICMP time exceeded (ttl exceeded in transit)",
    ),
    "ipv4 gre": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 47, bytes(24))),
        f"{ETH}, {V4}, proto 47 (GRE) len 24",
    ),
    "ipv4 later fragment": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, bytes(100), frag=185)),
        f"{ETH}, {V4}, UDP fragment offset 1480 len 100",
    ),
    "ipv6 tcp": Case(
        eth(0x86DD, ipv6("fe80::1", "fe80::2", 6, tcp(51000, 22, 0x10, 7, 9, b"ab"))),
        f"{ETH}, {V6}, TCP 51000 > 22 [.] seq 7 ack 9 win 64240 len 2",
    ),
    "ipv6 udp dns": Case(
        eth(0x86DD, ipv6("fe80::1", "fe80::2", 17, udp(40000, 53, DNS_QUERY))),
        f"{ETH}, {V6}, UDP 40000 > 53 len 35, DNS query 0x1a2b A web01.example.com",
    ),
    "icmpv6 echo request": Case(
        eth(0x86DD, ipv6("fe80::1", "fe80::2", 58, icmp(128, 0, struct.pack("!HH", 1, 2) + bytes(8)))),
        f"{ETH}, {V6}, ICMPv6 echo request id 1 seq 2",
    ),
    "icmpv6 echo reply": Case(
        eth(0x86DD, ipv6("fe80::2", "fe80::1", 58, icmp(129, 0, struct.pack("!HH", 1, 2) + bytes(8)))),
        f"{ETH}, fe80::2 > fe80::1, ICMPv6 echo reply id 1 seq 2",
    ),
    "icmpv6 neighbor solicitation": Case(
        eth(0x86DD, ipv6("fe80::1", "ff02::1:ff00:2", 58, icmp(135, 0, bytes(4) + ip6("fe80::2")))),
        f"{ETH}, fe80::1 > ff02::1:ff00:2, ICMPv6 neighbor solicitation who-has fe80::2",
    ),
    "icmpv6 neighbor advertisement": Case(
        eth(0x86DD, ipv6("fe80::2", "fe80::1", 58, icmp(136, 0, bytes(4) + ip6("fe80::2")))),
        f"{ETH}, fe80::2 > fe80::1, ICMPv6 neighbor advertisement fe80::2 is here",
    ),
    "icmpv6 router solicitation": Case(
        eth(0x86DD, ipv6("fe80::1", "ff02::2", 58, icmp(133, 0, bytes(4)))),
        f"{ETH}, fe80::1 > ff02::2, ICMPv6 router solicitation",
    ),
    "icmpv6 port unreachable": Case(
        eth(0x86DD, ipv6("fe80::2", "fe80::1", 58, icmp(1, 4, bytes(4) + bytes(48)))),
        f"{ETH}, fe80::2 > fe80::1, ICMPv6 destination unreachable (port unreachable)",
    ),
    "ipv6 hop-by-hop then icmpv6": Case(
        eth(
            0x86DD, ipv6("fe80::1", "ff02::16", 0, bytes([58, 0, 5, 2, 0, 0, 1, 0]) + icmp(143, 0, bytes(4)))
        ),
        f"{ETH}, fe80::1 > ff02::16, ICMPv6 multicast listener report v2",
    ),
    "lldp": Case(eth(0x88CC, bytes(46)), f"{ETH}, ethertype 0x88cc (LLDP)"),
    "unknown ethertype": Case(eth(0x1234, bytes(46)), f"{ETH}, ethertype 0x1234"),
    "stp": Case(eth(0x0027, b"\x42\x42\x03" + bytes(36)), f"{ETH}, STP"),
    "vlan tagged icmp": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, struct.pack("!HH", 1, 1))), vlans=(110,)),
        f"{ETH}, vlan 110, {V4}, ICMP echo request id 1 seq 1",
    ),
    "vlan priority": Case(
        eth(0x0806, arp(1, MAC_A, "10.0.0.2", "00:00:00:00:00:00", "10.0.0.1"), vlans=(5 << 13 | 602,)),
        f"{ETH}, vlan 602 pri 5, ARP who-has 10.0.0.1 tell 10.0.0.2",
    ),
    "q-in-q": Case(
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"")), vlans=(100, 200)),
        f"{ETH}, vlan 100, vlan 200, {V4}, UDP 1 > 2 len 0",
    ),
    "vxlan": Case(
        eth(
            0x0800,
            ipv4(
                "192.168.1.1",
                "192.168.1.2",
                17,
                udp(
                    50000,
                    4789,
                    bytes([8, 0, 0, 0, 0, 0x13, 0x89, 0])
                    + eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, struct.pack("!HH", 9, 9)))),
                ),
            ),
        ),
        f"{ETH}, 192.168.1.1 > 192.168.1.2, UDP 50000 > 4789 len 50, VXLAN vni 5001, {ETH}, {V4}, "
        "ICMP echo request id 9 seq 9",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_of_each_protocol(name: str) -> None:
    case = CASES[name]
    assert summarize(case.frame, len(case.frame)) == case.summary
    assert summarize(memoryview(case.frame), len(case.frame)) == case.summary


@pytest.mark.parametrize(
    "name", ["tcp push", "dns response", "icmpv6 neighbor solicitation", "vxlan", "q-in-q"]
)
def test_cut_at_every_length_never_raises_and_marks_cut_headers(name: str) -> None:
    frame = CASES[name].frame
    seen_truncated = 0
    for length in range(len(frame) + 1):
        text = summarize(frame[:length], len(frame))
        assert text == CASES[name].summary or text.endswith(" [truncated]"), (length, text)
        seen_truncated += text.endswith("[truncated]")
    assert summarize(b"", 60) == "Ethernet [truncated]"
    assert seen_truncated >= 14


def test_cut_headers_show_the_layers_before_them() -> None:
    frame = CASES["tcp push"].frame
    assert summarize(frame[:20], 154) == f"{ETH}, IPv4 [truncated]"
    assert summarize(frame[:40], 154) == f"{ETH}, {V4}, TCP [truncated]"
    assert summarize(frame[:54], 154) == CASES["tcp push"].summary  # the payload may be cut off
    vxlan = CASES["vxlan"].frame
    assert summarize(vxlan[:60], len(vxlan)).endswith("VXLAN vni 5001, Ethernet [truncated]")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x0027, 0x88CC]),
    st.sampled_from([1, 6, 17, 58, 0, 44, 47]),
    st.binary(max_size=120),
)
def test_arbitrary_bytes_after_any_header_never_raise(ethertype: int, proto: int, tail: bytes) -> None:
    if ethertype == 0x0800:
        body = bytes([0x45, 0]) + tail[:2] + bytes(5) + bytes([proto]) + tail[2:]
    elif ethertype == 0x86DD:
        body = bytes([0x60, 0, 0, 0]) + tail[:2] + bytes([proto]) + tail[2:]
    else:
        body = tail
    frame = eth(ethertype, body)
    text = summarize(frame, len(frame) + 10)
    assert text.startswith(ETH) and text.isprintable()


def test_hostile_dns_names_stay_printable_and_pointer_loops_end() -> None:
    evil = b"\x0bweb\x1b[31mred\x05a.b\\c\x00"
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + evil + struct.pack("!HH", 1, 1)
    frame = eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 53, query)))
    assert summarize(frame, len(frame)).endswith(r"DNS query 0x0001 A web\027[31mred.a\.b\\c")
    looping = struct.pack("!HHHHHH", 2, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    frame = eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(53, 40000, looping)))
    assert summarize(frame, len(frame)).endswith("DNS response 0x0002 A <bad name>, 0 answers")


def test_malformed_dns_in_a_complete_datagram_is_not_called_truncated() -> None:
    garbage = struct.pack("!HHHHHH", 3, 0x0100, 1, 0, 0, 0) + b"\x3fab"
    frame = eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 53, garbage)))
    assert summarize(frame, len(frame)).endswith("DNS query 0x0003 [malformed]")
    assert summarize(frame[:-1], len(frame)).endswith("DNS query 0x0003 [truncated]")


# --- pktcap-uw's console dump --------------------------------------------------------------------------

PACKET_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{6})\[(\d+)\] Captured at .*, length (\d+)\.$")
SEGMENT_LINE = re.compile(r"^(\s*)Segment\[0\] ---- (\d+) bytes:\s*$")
HEX_ROW = re.compile(r"^\s*0x([0-9a-f]{4}):  ([0-9a-f ]+?)\s*$")


class Dumped(NamedTuple):
    time: str
    length: int
    segment: str
    rows: list[str]

    @property
    def data(self) -> bytes:
        return b"".join(bytes.fromhex(row.split(":", 1)[1]) for row in self.rows)


def dumped_packets(name: str) -> list[Dumped]:
    """The packets of a verbatim pktcap-uw console transcript, lines as they are (trailing spaces kept)."""
    packets: list[Dumped] = []
    for line in fixture_text(name).splitlines():
        if match := PACKET_LINE.match(line):
            packets.append(Dumped(match[1], int(match[3]), "", []))
        elif SEGMENT_LINE.match(line):
            packets[-1] = packets[-1]._replace(segment=line)
        elif HEX_ROW.match(line):
            packets[-1].rows.append(line)
    return packets


def test_hexdump_reproduces_the_esxi_7_8_console_rows_exactly() -> None:
    packets = dumped_packets("pktcap-uw_console_esxi7-8_intel_fixture.txt")
    assert len(packets) == 4
    for packet in packets:
        data = packet.data
        assert len(data) == packet.length
        lines = hexdump(data).split("\n")
        assert lines[1:] == packet.rows
        # the host prints its buffer size (2048) where esxcap prints the bytes shown
        assert packet.segment == "    Segment[0] ---- 2048 bytes:"
        assert lines[0] == f"    Segment[0] ---- {packet.length} bytes:"


@pytest.mark.parametrize(
    "name",
    [
        "pktcap-uw_console_esxi67_uplink_count3.txt",
        "pktcap-uw_console_esxi67_switchport_VnicRx_excerpt.txt",
        "pktcap-uw_console_esxi55_uplink.txt",
    ],
)
def test_hexdump_matches_older_console_rows_except_their_trailing_space(name: str) -> None:
    packets = dumped_packets(name)
    assert packets
    for packet in packets:
        assert all(row.endswith(" ") for row in packet.rows)
        assert hexdump(packet.data, indent="").split("\n") == [packet.segment] + [
            r.rstrip() for r in packet.rows
        ]


def test_hexdump_odd_tail_and_empty() -> None:
    assert hexdump(bytes(range(17)), indent="") == (
        "Segment[0] ---- 17 bytes:\n0x0000:  0001 0203 0405 0607 0809 0a0b 0c0d 0e0f\n0x0010:  10"
    )
    assert hexdump(b"") == "    Segment[0] ---- 0 bytes:"


def test_summaries_of_the_console_samples() -> None:
    icmp_67 = dumped_packets("pktcap-uw_console_esxi67_uplink_count3.txt")[0].data
    assert summarize(icmp_67, 98) == (
        f"{ETH}, 192.168.100.11 > 192.168.100.12, ICMP echo reply id 3357 seq 415"
    )
    arp_55 = dumped_packets("pktcap-uw_console_esxi55_uplink.txt")[0].data
    assert (
        summarize(arp_55, 60) == "00:50:56:bb:cc:cf > ff:ff:ff:ff:ff:ff, ARP who-has 10.1.0.1 tell 10.1.0.11"
    )
    hsrp, tcp_ack, stp, _ = (p.data for p in dumped_packets("pktcap-uw_console_esxi7-8_intel_fixture.txt"))
    assert summarize(hsrp, 62).endswith("10.91.243.2 > 224.0.0.2, UDP 1985 > 1985 len 20")
    assert summarize(tcp_ack, 66).endswith(
        "10.102.55.70 > 10.91.243.160, TCP 3260 > 47177 [.] seq 1942861758 ack 1889357358 win 24576 len 0"
    )
    assert summarize(stp, 60) == "6c:b2:ae:25:dc:3d > 01:80:c2:00:00:00, STP"


# --- the console line ------------------------------------------------------------------------------------


def test_console_line_time_label_length_and_summary() -> None:
    frame = CASES["tcp syn"].frame
    ts = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123456789 UTC
    line = console_line(Record(ts, len(frame), frame), "esx01 web01 VnicTx", 7)
    assert line == f"22:13:20.123456 [7] esx01 web01 VnicTx length {len(frame)}: {CASES['tcp syn'].summary}"
    cut = console_line(Record(ts, 1514, frame[:40]), "esx01 vmk0 PortOutput", 8)
    head = "22:13:20.123456 [8] esx01 vmk0 PortOutput length 1514 (40 captured)"
    assert cut == f"{head}: {ETH}, {V4}, TCP [truncated]"
    assert console_line(Record(ts, 54, frame), "x", 1, summary="from tshark").endswith(
        "length 54: from tshark"
    )


def test_console_line_escapes_control_characters_in_labels() -> None:
    frame = CASES["lldp"].frame
    line = console_line(Record(0, len(frame), frame), "esx01 evil\x1b]0;pwned\x07 VnicTx", 1)
    assert line.startswith(r"00:00:00.000000 [1] esx01 evil\x1b]0;pwned\x07 VnicTx length 60: ")
    assert line.isprintable()


# --- agreement with tshark ---------------------------------------------------------------------------


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
def test_summaries_agree_with_tshark_on_addresses_ports_and_protocol(tmp_path: Path) -> None:
    names = sorted(CASES)
    path = tmp_path / "frames.pcapng"
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("test"))
        for i, name in enumerate(names):
            writer.write_packet(0, 1_700_000_000_000_000_000 + i * 1000, CASES[name].frame)
    rows = tshark_fields(
        path,
        *("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport"),
        *("udp.dstport", "arp.src.proto_ipv4", "arp.dst.proto_ipv4", "_ws.col.Protocol"),
    )
    assert len(rows) == len(names)
    compared = 0
    for name, row in zip(names, rows, strict=True):
        ip_src, ip_dst, ip6_src, ip6_dst, tsp, tdp, usp, udp_, arp_src, arp_dst, protocol = (
            field.split("|")[-1] if field else "" for field in row
        )  # the innermost header, for tunnels
        ours = summarize(CASES[name].frame, len(CASES[name].frame))
        src, dst = (ip_src, ip_dst) if ip_src else (ip6_src, ip6_dst)
        if src:
            assert f"{src} > {dst}" in ours, (name, row, ours)
        if tsp or usp:
            kind = "TCP" if tsp else "UDP"
            ports = f"{tsp} > {tdp}" if tsp else f"{usp} > {udp_}"
            outer = "UDP 50000 > 4789" if name == "vxlan" else f"{kind} {ports}"
            assert outer in ours, (name, row, ours)
        if arp_src:  # a reply names the sender only, as tcpdump's does
            assert arp_src in ours and (arp_dst in ours or "is-at" in ours), (name, row, ours)
        if protocol in {"ICMP", "ICMPv6", "DNS", "ARP", "TCP", "UDP", "LLDP", "STP", "GRE"}:
            assert protocol in ours, (name, protocol, ours)
            compared += 1
    assert compared >= len(names) - 3
