"""The traffic model (pure): frames tshark decodes with good checksums, the documented point order,
drops, VLAN tags, windows that add up, and flow errors in the topology."""

from __future__ import annotations

import shutil
import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_TOPOLOGY
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.errors import ConfigError
from esxcap.pcap import Record, encode_record, parse_global_header, write_pcap_header
from esxcap.sim import load_topology, topology_from_data
from esxcap.sim.flows import ROUTER_MAC
from esxcap.sim.frames import checksum, fields
from esxcap.sim.traffic import TrafficModel

MODEL = TrafficModel(topology_from_data(FAST_TOPOLOGY, "<fast topology>"))
TSHARK = shutil.which("tshark")


def points(flow: str, forward: bool = True) -> list[tuple[str, str]]:
    route = next(r for r in MODEL.routes if r.conversation.flow.name == flow and r.forward == forward)
    return [(h.host, h.point) for h in route.hops]


def test_cross_host_path_follows_the_documented_order() -> None:
    assert points("ping-n1-m1") == [
        ("new", "VnicTx"), ("new", "PortInput"), ("new", "PortOutput"), ("new", "EtherswitchOutput"),
        ("new", "UplinkSndKernel"), ("new", "UplinkSnd"),
        ("mid", "UplinkRcv"), ("mid", "UplinkRcvKernel"), ("mid", "EtherswitchDispath"), ("mid", "PortInput"),
        ("mid", "PortOutput"), ("mid", "VnicRx"),
    ]  # fmt: skip


def test_old_persona_uses_vmxnet3_names_and_same_host_stays_inside() -> None:
    assert points("ping-a1-a2") == [
        ("old", "Vmxnet3Tx"),
        ("old", "PortInput"),
        ("old", "PortOutput"),
        ("old", "Vmxnet3Rx"),
    ]


def test_a_dropping_dvfilter_ends_the_path_at_drop() -> None:
    assert points("https-n1-n2")[-3:] == [("new", "PortOutput"), ("new", "PreDVFilter"), ("new", "Drop")]
    assert points("https-n1-n2", forward=False) == [
        ("new", "VnicTx"), ("new", "PortInput"), ("new", "PreDVFilter"), ("new", "Drop"),
    ]  # fmt: skip


def test_latency_grows_along_the_path_within_the_configured_bounds() -> None:
    hops = MODEL.hops_of("ping-n1-m1")[:12]
    gaps = [b.offset_ns - a.offset_ns for a, b in pairwise(hops)]
    assert all(50_000 <= g <= 200_000 for i, g in enumerate(gaps) if i != 5)
    assert 350_000 <= gaps[5] <= 500_000  # one hop plus the 300 us wire


def test_vlan_tags_only_at_uplink_points_and_routed_frames_change_macs_and_ttl() -> None:
    t0 = 1_700_000_000_000_000_000
    wire = MODEL.tap("mid", [(33554434, "UplinkRcvKernel")]).window(t0, t0 + 10**8)
    vnic = MODEL.tap("mid", [(33554436, "VnicRx")]).window(t0, t0 + 10**8)
    assert {fields(s.frame).vlan for s in wire if s.flow != "ping-vmk"} == {20}
    assert {fields(s.frame).vlan for s in wire if s.flow == "ping-vmk"} == {0}
    assert vnic and {fields(s.frame).vlan for s in vnic} == {0}
    sent = MODEL.tap("new", [(67108868, "VnicTx")]).window(t0, t0 + 10**8)
    routed = MODEL.tap("new", [(67108869, "PortOutput")]).window(t0, t0 + 10**8)
    https = [s.frame for s in sent if s.flow == "https-n1-n2"]
    assert routed and https and all(s.flow == "https-n1-n2" for s in routed)
    assert {f[22] for f in https} == {64} and {s.frame[22] for s in routed} == {63}
    assert {fields(s.frame).src_mac for s in routed} == {ROUTER_MAC}
    assert {fields(s.frame).dst_mac for s in routed} == {"00:50:56:a2:30:02"}


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=10**8), st.integers(min_value=0, max_value=10**9))
def test_windows_split_anywhere_see_the_same_packets(split: int, start: int) -> None:
    tap = MODEL.tap("new", [(2214592514, "UplinkRcvKernel"), (2214592514, "UplinkSndKernel")])
    t0 = 1_700_000_000_000_000_000 + start
    whole = tap.window(t0, t0 + 10**8)
    parts = tap.window(t0, t0 + split) + tap.window(t0 + split, t0 + 10**8)
    assert [(s.ts_ns, s.frame) for s in whole] == [(s.ts_ns, s.frame) for s in parts]
    assert [s.ts_ns for s in whole] == sorted(s.ts_ns for s in whole)


def test_ipv4_header_checksums_verify() -> None:
    t0 = 1_700_000_000_000_000_000
    seen = MODEL.tap("new", [(2214592514, "UplinkRcvKernel")]).window(t0, t0 + 10**9)
    ipv4 = [s.frame for s in seen if fields(s.frame).src_ip is not None]
    offsets = [18 if f[12:14] == b"\x81\x00" else 14 for f in ipv4]
    assert ipv4 and all(checksum(f[o : o + 20]) == 0 for f, o in zip(ipv4, offsets, strict=True))
    assert 14 in offsets and 18 in offsets


def test_every_kind_decodes_in_tshark_without_warnings(tmp_path: Path) -> None:
    assert TSHARK is not None, "tshark is installed in CI (.ci/run)"
    t0 = 1_700_000_000_000_000_000
    places = [(p.port_id, point) for p in MODEL.topology.host("mid").ports for point in ("VnicTx", "VnicRx")]
    seen = MODEL.tap("mid", places).window(t0, t0 + 2 * 10**8)
    head = write_pcap_header(nanos=False)
    header = parse_global_header(head)
    body = b"".join(encode_record(Record(s.ts_ns, len(s.frame), s.frame), header) + s.frame for s in seen)
    path = tmp_path / "all.pcap"
    path.write_bytes(head + body)
    protos = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-e", "_ws.col.Protocol"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"ICMP", "ARP", "DNS", "TCP"} <= set(protos)
    experts = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-Y",
         "_ws.expert.severity >= warning && !tcp.analysis && !tcp.flags.reset"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert experts == ""


def test_default_topology_has_cross_and_same_host_flows_of_every_kind() -> None:
    model = TrafficModel(load_topology())
    kinds = {r.conversation.flow.kind for r in model.routes}
    assert {"icmp", "arp", "dns", "tcp"} <= kinds
    hosts = {r.conversation.flow.name: {h.host for h in r.hops} for r in model.routes}
    assert {"esx02", "esx03"} in hosts.values() and any(len(h) == 1 for h in hosts.values())
    assert any(h.point == "Drop" for r in model.routes for h in r.hops)


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ({"from": "nobody", "to": "m1", "kind": "icmp"}, "no running VM named 'nobody'"),
        ({"from": {"vm": "m1", "nic": 3}, "to": "m2", "kind": "icmp"}, "VM 'm1' has no eth3"),
        ({"from": {"host": "mid", "vmk": "vmk5"}, "to": "m2", "kind": "icmp"}, "mid has no vmknic 'vmk5'"),
        ({"from": "m1", "to": "m2", "kind": "smtp"}, "kind: invalid value 'smtp'"),
        ({"from": "m1", "to": "m2", "kind": "icmp", "rate_pps": 0}, "rate_pps"),
    ],
)
def test_bad_flows_are_config_errors(flow: dict[str, Any], message: str) -> None:
    data = {**FAST_TOPOLOGY, "flows": [flow]}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        topology_from_data(data, "<t>")
