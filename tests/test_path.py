"""The path view's core: one packet recognised across points whatever VLAN tag, MACs, TTL and checksum
it carries there; path order, per-hop latency, packets never seen at a later point, Drop sightings,
clock corrections from interface comments, repeated identical frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from esxcap.capture.clock import NANO_METHOD, ClockReading, clock_comment
from esxcap.pcap import CaptureFile, Interface, PcapngWriter, Record
from esxcap.pcap import path as path_module
from esxcap.pcap.path import analyze, analyze_source, as_dict, identify, point_of
from esxcap.sim import frames

A_MAC, B_MAC, ROUTER = "00:50:56:00:00:0a", "00:50:56:00:00:0b", "00:00:5e:00:01:01"


def ping(n: int, reply: bool = False) -> bytes:
    src, dst = ("10.0.2.5", "10.0.1.5") if reply else ("10.0.1.5", "10.0.2.5")
    payload = frames.icmp_echo(7, n, reply=reply)
    return frames.ipv4(B_MAC if reply else A_MAC, ROUTER, src, dst, frames.PROTO_ICMP, payload, 100 + n)


def test_identity_ignores_vlan_macs_ttl_and_checksum() -> None:
    sent = ping(1)
    routed = frames.route(sent, ROUTER, B_MAC)
    tagged = frames.tag_vlan(routed, 20)
    assert routed[22] == sent[22] - 1 and routed[:12] != sent[:12]
    ids = [identify(f) for f in (sent, routed, tagged)]
    assert ids[0] is not None and all(i == ids[0] for i in ids)
    assert identify(ping(2)) != ids[0] and identify(b"\x00" * 10) is None
    back = identify(ping(1, reply=True))
    assert back is not None and back.flow == ids[0].flow and back.forward != ids[0].forward  # type: ignore[union-attr]


def test_point_names() -> None:
    p = point_of(Interface("esx01:web 01 eth0:VnicTx:out"))
    assert (p.host, p.target, p.points, p.drop, p.shown) == (
        "esx01",
        "web 01 eth0",
        "VnicTx",
        False,
        "esx01 web 01 eth0 VnicTx",
    )
    assert point_of(Interface("esx02:drop:Drop:drop")).drop
    assert point_of(Interface("eth0")).shown == "eth0"


IFACES = [
    Interface("h1:a eth0:VnicTx:out"),
    Interface("h1:a eth0:VnicRx:in"),
    Interface("h1:vmnic0:UplinkSndKernel:out"),
    Interface("h2:vmnic0:UplinkRcvKernel:in"),
    Interface("h2:b eth0:VnicRx:in"),
    Interface("h2:b eth0:VnicTx:out"),
    Interface("h2:drop:Drop:drop"),
]
T = 1_700_000_000_000_000_000
MS = 1_000_000


def test_order_latency_and_losses() -> None:
    records = []
    for n in range(20):
        t = T + n * 10 * MS
        routed = frames.tag_vlan(frames.route(ping(n), ROUTER, B_MAC), 30)
        records += [Record(t, 0, ping(n), 0), Record(t + 100_000, 0, frames.tag_vlan(ping(n), 30), 2)]
        records += [Record(t + 400_000, 0, routed, 3)]
        if n % 4:
            records.append(Record(t + 550_000, 0, routed, 4))
            records.append(Record(t + 900_000, 0, ping(n, True), 5))
            records.append(Record(t + 1_500_000, 0, ping(n, True), 1))
        elif n != 0:
            records.append(Record(t + 500_000, 0, routed, 6))
    records.sort(key=lambda r: r.ts_ns)
    paths = analyze(IFACES, records)
    out, back = paths
    assert out.direction == "10.0.1.5 -> 10.0.2.5" and out.packets == 20 and back.packets == 15
    assert out.points == (
        "h1 a eth0 VnicTx",
        "h1 vmnic0 UplinkSndKernel",
        "h2 vmnic0 UplinkRcvKernel",
        "h2 b eth0 VnicRx",
    )
    assert [(h.min_ns, h.median_ns, h.max_ns) for h in out.hops] == [
        (100_000,) * 3,
        (300_000,) * 3,
        (150_000,) * 3,
    ]
    assert back.points == ("h2 b eth0 VnicTx", "h1 a eth0 VnicRx")
    [loss] = out.losses
    assert (
        loss.packets == 4 and loss.missing == ("h2 b eth0 VnicRx",) and loss.dropped_at == ("h2 drop Drop",)
    )
    assert loss.sentence.startswith(
        "4 packet(s) seen at h1 a eth0 VnicTx and h1 vmnic0 UplinkSndKernel and h2 vmnic0 UplinkRcvKernel, "
        "never at h2 b eth0 VnicRx"
    )
    assert not back.losses
    doc = as_dict(paths)
    assert doc["flows"][0]["lost"][0]["never_at"] == ["h2 b eth0 VnicRx"]  # type: ignore[index]


def test_recorded_clock_offset_is_corrected() -> None:
    skewed = ClockReading(50 * MS, 100_000, 200_000, NANO_METHOD, 5)
    ifaces = [
        Interface("h1:a:VnicTx:out"),
        Interface("h2:b:VnicRx:in", comments=(clock_comment("h2", skewed, aligned=False),)),
    ]
    records = [Record(T, 0, ping(1), 0), Record(T + 50 * MS + 400_000, 0, ping(1), 1)]
    [path] = analyze(ifaces, records)
    assert [h.median_ns for h in path.hops] == [400_000]
    aligned = [ifaces[0], Interface("h2:b:VnicRx:in", comments=(clock_comment("h2", skewed, aligned=True),))]
    [same] = analyze(aligned, [Record(T, 0, ping(1), 0), Record(T + 400_000, 0, ping(1), 1)])
    assert [h.median_ns for h in same.hops] == [400_000]


def test_identical_frames_later_are_new_packets() -> None:
    arp = frames.arp(A_MAC, "10.0.1.5", "ff:ff:ff:ff:ff:ff", "10.0.1.6", reply=False)
    ifaces = [Interface("h1:a:VnicTx:out"), Interface("h1:b:VnicRx:in")]
    records = [Record(T + i * 500 * MS + d, 0, arp, k) for i in range(3) for k, d in ((0, 0), (1, 80_000))]
    [path] = analyze(ifaces, records)
    assert path.packets == 3 and [h.median_ns for h in path.hops] == [80_000]


def _mixed_records() -> list[Record]:
    """Pings both ways, UDP and TCP with ports, ARP repeats, another ethertype, a frame too short, at
    points of two hosts (one seen twice at one point: a new packet)."""
    arp = frames.arp(A_MAC, "10.0.1.5", "ff:ff:ff:ff:ff:ff", "10.0.1.6", reply=False)
    udp = frames.ipv4(A_MAC, ROUTER, "10.0.1.5", "10.0.2.5", 17, b"\x9c\x40\x00\x35\x00\x0c\x00\x00abcd", 7)
    tcp = frames.ipv4(A_MAC, ROUTER, "10.0.1.5", "10.0.2.5", 6, b"\x00\x50\x9c\x41" + bytes(16), 8)
    other = bytes(12) + b"\x88\xcc" + b"lldp"
    records = []
    for n in range(40):
        t = T + n * 3 * MS
        frame = (ping(n), ping(n, reply=True), udp, tcp, arp, other, b"\x01\x02")[n % 7]
        records += [Record(t, 0, frame, n % 2), Record(t + 200_000, 0, frame, 2 + n % 3)]
    records.sort(key=lambda r: r.ts_ns)
    return records


def test_a_file_read_once_gives_what_the_records_give(tmp_path: Path) -> None:
    records = _mixed_records()
    path = tmp_path / "mixed.pcapng"
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        for iface in IFACES[:5]:
            writer.add_interface(iface)
        writer.write_records([(r.interface, r) for r in records])
    expected = as_dict(analyze(IFACES[:5], records))
    flows = [flow["flow"] for flow in expected["flows"]]  # type: ignore[attr-defined]
    assert sorted(name.split()[0] for name in flows) == ["arp", "ethertype", "icmp", "icmp", "tcp", "udp"]
    assert "udp 10.0.1.5:40000 <-> 10.0.2.5:53" in flows and "tcp 10.0.1.5:80 <-> 10.0.2.5:40001" in flows
    with path.open("rb") as handle:
        assert as_dict(analyze_source(CaptureFile(handle, path.name))) == expected


def test_packets_leaving_the_match_window_are_let_go_without_changing_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _mixed_records()
    expected = as_dict(analyze(IFACES, records))
    assert as_dict(analyze(IFACES, records[::-1])) == expected, "a file out of time order is sorted first"
    monkeypatch.setattr(path_module, "PRUNE_EVERY", 1)
    monkeypatch.setattr(path_module, "MATCH_WINDOW_NS", 50 * MS)
    assert as_dict(analyze(IFACES, records)) == expected
