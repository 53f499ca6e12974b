"""--anonymize against every place an address hides: headers, DHCP, NDP, LLDP, VXLAN inner frames, IP
options, ICMP-quoted headers, HTTP Host: text, packet and interface comments and the capture's file
name. The bundle is unpacked and every byte searched for every original address in every spelling."""

from __future__ import annotations

import ipaddress
import struct
import zipfile
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from pcaptools import TSHARK, run_tool

from esxcap.pcap import Interface, PcapngWriter
from esxcap.sim import frames

T0 = 1_700_000_000_000_000_000
VM_MAC, GW_MAC, NEW_MAC, LLDP_MAC = (
    "00:0c:29:ab:cd:01",
    "00:50:56:11:22:33",
    "00:0c:29:00:00:77",
    "3c:fd:fe:01:02:03",
)
VM_IP, PEER_IP, OFFERED_IP, MGMT_IP, VTEP_A, VTEP_B = (
    "10.1.2.3", "10.1.2.9", "10.1.2.50", "172.16.9.8", "192.168.77.1", "192.168.77.2",
)  # fmt: skip
VM_V6, TARGET_V6 = "fe80::20c:29ff:feab:cd01", "2001:db8:1:2::99"
MACS = (VM_MAC, GW_MAC, NEW_MAC, LLDP_MAC)
IPV4S = (VM_IP, PEER_IP, OFFERED_IP, MGMT_IP, VTEP_A, VTEP_B)
IPV6S = (VM_V6, TARGET_V6)


def spellings() -> dict[str, list[bytes]]:
    """Every original address as bytes on the wire and as text in every common spelling."""
    found: dict[str, list[bytes]] = {}
    for mac in MACS:
        raw = bytes.fromhex(mac.replace(":", ""))
        digits = raw.hex()
        found[mac] = [raw] + [
            text.encode()
            for d in (digits, digits.upper())
            for text in (":".join(d[i : i + 2] for i in range(0, 12, 2)),
                         "-".join(d[i : i + 2] for i in range(0, 12, 2)),
                         ".".join(d[i : i + 4] for i in range(0, 12, 4)))
        ]  # fmt: skip
    for ip in IPV4S:
        found[ip] = [ipaddress.IPv4Address(ip).packed, ip.encode()]
    for ip in IPV6S:
        address = ipaddress.IPv6Address(ip)
        found[ip] = [address.packed, str(address).encode(), address.exploded.encode()]
    return found


def ipv6_frame(src_mac: str, dst_mac: str, src: str, dst: str, icmp: bytes) -> bytes:
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    pseudo = s + d + struct.pack("!IxxxB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", frames.checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + s + d
    return frames.ethernet(dst_mac, src_mac, 0x86DD, header + icmp)


def packets() -> list[tuple[bytes, tuple[str, ...]]]:
    http = (
        b"GET / HTTP/1.1\r\nHost: "
        + VM_IP.encode()
        + b"\r\nX-Client: "
        + VM_MAC.upper().encode()
        + b"\r\n\r\n"
    )
    tcp = frames.tcp(PEER_IP, VM_IP, 40000, 80, 1, 1, frames.TCP_ACK | frames.TCP_PSH, http)
    quoted = frames.ipv4(
        VM_MAC, GW_MAC, VM_IP, PEER_IP, frames.PROTO_UDP, frames.udp(VM_IP, PEER_IP, 5, 53, b""), 9
    )
    unreachable = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted[14:42]
    unreachable = unreachable[:2] + struct.pack("!H", frames.checksum(unreachable)) + unreachable[4:]
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s",
        2,
        1,
        6,
        0,
        0x1234,
        0,
        0,
        bytes(4),
        ipaddress.IPv4Address(OFFERED_IP).packed,
        ipaddress.IPv4Address(PEER_IP).packed,
        bytes(4),
    )
    bootp += bytes.fromhex(NEW_MAC.replace(":", "")) + bytes(10) + bytes(192) + b"\x63\x82\x53\x63"
    bootp += bytes([53, 1, 5, 54, 4]) + ipaddress.IPv4Address(PEER_IP).packed + bytes([255])  # fmt: skip
    dhcp = frames.ipv4(GW_MAC, "ff:ff:ff:ff:ff:ff", PEER_IP, "255.255.255.255", frames.PROTO_UDP,
                       frames.udp(PEER_IP, "255.255.255.255", 67, 68, bootp), 3)  # fmt: skip
    inner = frames.ipv4(
        VM_MAC, GW_MAC, VM_IP, PEER_IP, frames.PROTO_UDP, frames.udp(VM_IP, PEER_IP, 7, 7, b"hi"), 4
    )
    tunnel = frames.udp(VTEP_A, VTEP_B, 49152, 4789, b"\x08\x00\x00\x00\x00\x13\x88\x00" + inner)
    vxlan = frames.ipv4("00:50:56:aa:00:01", "00:50:56:aa:00:02", VTEP_A, VTEP_B, frames.PROTO_UDP, tunnel, 5)
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + ipaddress.IPv6Address(TARGET_V6).packed
    ns += bytes([1, 1]) + bytes.fromhex(VM_MAC.replace(":", ""))
    ndp = ipv6_frame(VM_MAC, "33:33:ff:00:00:99", VM_V6, "ff02::1:ff00:99", ns)
    lldp_body = bytes([0x02, 0x07, 4]) + bytes.fromhex(LLDP_MAC.replace(":", ""))
    lldp_body += bytes([0x10, 0x0C, 5, 1]) + ipaddress.IPv4Address(MGMT_IP).packed + bytes([2, 0, 0, 0, 1, 0])
    lldp = frames.ethernet("01:80:c2:00:00:0e", LLDP_MAC, 0x88CC, lldp_body + bytes(2))
    mgmt = frames.ipv4(
        LLDP_MAC, GW_MAC, MGMT_IP, PEER_IP, frames.PROTO_UDP, frames.udp(MGMT_IP, PEER_IP, 9, 9, b"x"), 6
    )
    # IP options: a record route holding VM_IP, then a NOP (8 bytes: a 28-byte header)
    route = bytes([7, 7, 8]) + ipaddress.IPv4Address(VM_IP).packed + bytes([1])
    body = frames.udp(PEER_IP, VM_IP, 9, 9, b"rr")
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x47,
            0,
            28 + len(body),
            7,
            0,
            64,
            17,
            0,
            ipaddress.IPv4Address(PEER_IP).packed,
            ipaddress.IPv4Address(VM_IP).packed,
        )
        + route
    )
    header = header[:10] + struct.pack("!H", frames.checksum(header)) + header[12:]  # fmt: skip
    options = frames.ethernet(VM_MAC, GW_MAC, 0x0800, header + body)
    return [
        (frames.ipv4(GW_MAC, VM_MAC, PEER_IP, VM_IP, frames.PROTO_TCP, tcp, 1), (f"seen from {VM_V6}",)),
        (frames.ipv4(GW_MAC, VM_MAC, PEER_IP, VM_IP, frames.PROTO_ICMP, unreachable, 2), ()),
        (dhcp, (f"offer to {NEW_MAC.replace(':', '-').upper()}",)),
        (vxlan, ()),
        (ndp, ()),
        (mgmt, ()),
        (lldp, ()),
        (options, ()),
    ]


def test_an_anonymized_bundle_holds_no_original_address_in_any_spelling(tmp_path: Path) -> None:
    capture = tmp_path / f"cap-{VM_IP}.pcapng"
    with capture.open("wb") as handle:
        writer = PcapngWriter(handle, comments=(f"capture of {VM_IP} ({VM_MAC})",))
        writer.add_interface(Interface(f"esx01:{VM_IP}", description=f"vNIC {VM_MAC.upper()} / {VM_V6}"))
        for n, (frame, comments) in enumerate(packets()):
            writer.write_packet(0, T0 + n * 1000, frame, comments=comments)
    out = tmp_path / "b.zip"
    env = isolated_env(tmp_path, PATH="/nonexistent")  # no tshark: the bytes alone are searched
    result = esxcap("bundle", "--ticket", "SR-9", "--anonymize", str(capture), "-o", str(out), env=env)
    assert result.code == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        everything = b"".join(name.encode() + archive.read(name) for name in archive.namelist())
    left = {address: [s for s in forms if s in everything] for address, forms in spellings().items()}
    assert {a: forms for a, forms in left.items() if forms} == {}
    readme = zipfile.ZipFile(out).read(
        next(n for n in zipfile.ZipFile(out).namelist() if n.endswith("README.txt"))
    )
    assert b"Kept: host, VM and DNS names" in readme


@pytest.mark.skipif(not TSHARK, reason="needs tshark")
def test_anonymized_packets_keep_valid_checksums(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcapng"
    with capture.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        for n, (frame, _comments) in enumerate(packets()):
            writer.write_packet(0, T0 + n * 1000, frame)
    out = tmp_path / "b.zip"
    result = esxcap(
        "bundle", "--ticket", "SR-9", "--anonymize", str(capture), "-o", str(out), env=isolated_env(tmp_path)
    )
    assert result.code == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".pcapng"))
        (tmp_path / "x.pcapng").write_bytes(archive.read(member))
    bad = run_tool(TSHARK, "-n", "-r", str(tmp_path / "x.pcapng"), "-o", "ip.check_checksum:TRUE",
                   "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                   "-Y", "ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0"
                   " || icmp.checksum.status == 0 || icmpv6.checksum.status == 0")  # fmt: skip
    assert bad.strip() == ""
