"""Finding VMs, MACs and IPs across hosts: tiers of name matching, and every match shown."""

from __future__ import annotations

from esxcap.esxi.models import (
    EsxiVersion,
    HostFacts,
    IpInterface,
    Ipv4Interface,
    NetStatsPort,
    Nic,
    VmEntry,
    VmFacts,
    VmPort,
)
from esxcap.plan.targets import find, normalize_mac


def _port(port_id: int, mac: str, ip: str | None, pg: str = "VM Network") -> VmPort:
    return VmPort(port_id, "vSwitch0", pg, None, mac, ip, "vmnic0", 2214592517, None)


def _host(vms: list[tuple[str, list[VmPort]]]) -> HostFacts:
    netstats = [
        NetStatsPort(p.port_id, 5, 9, "vSwitch0", p.mac, f"{name}.eth{i}")
        for name, ports in vms
        for i, p in enumerate(ports)
    ]
    netstats += [
        NetStatsPort(33554436, 3, 0, "vSwitch0", "00:50:56:aa:00:01", "vmk0"),
        NetStatsPort(2214592517, 4, 0, "vSwitch0", "a4:bf:01:4e:37:14", "vmnic0"),
    ]
    return HostFacts(
        version=EsxiVersion("VMware ESXi", "8.0.2", "22380479", "2", "0"),
        vms=tuple(
            VmFacts(VmEntry(1000 + i, name, len(ports), ()), tuple(ports))
            for i, (name, ports) in enumerate(vms)
        ),
        nics=(
            Nic(
                "vmnic0",
                "0000:03:00.0",
                "ixgben",
                "Up",
                "Up",
                10000,
                "Full",
                "a4:bf:01:4e:37:14",
                1500,
                "X540",
            ),
        ),
        ip_interfaces=(
            IpInterface(
                "vmk0",
                "00:50:56:aa:00:01",
                True,
                "vSwitch0",
                "Management Network",
                "defaultTcpipStack",
                1500,
                33554436,
                None,
                None,
            ),
        ),
        ipv4=(
            Ipv4Interface("vmk0", "10.0.0.11", "255.255.255.0", "10.0.0.255", "STATIC", "10.0.0.1", False),
        ),
        standard_switches=(),
        portgroups=(),
        distributed_switches=(),
        netstats=tuple(netstats),
    )


ESX01 = _host(
    [
        (
            "web01",
            [
                _port(67108881, "00:50:56:01:00:01", "192.168.1.10"),
                _port(67108882, "00:50:56:01:00:02", None, "Backup"),
            ],
        ),
        ("Web01-old", [_port(67108883, "00:50:56:01:00:03", None)]),
    ]
)
ESX02 = _host(
    [
        ("web01", [_port(50331657, "00:50:56:02:00:01", "192.168.1.20")]),
        ("db 01", [_port(50331658, "00:50:56:02:00:02", "192.168.1.30")]),
    ]
)
HOSTS = [("esx01", ESX01), ("esx02", ESX02)]


def test_exact_name_on_two_hosts_lists_both_and_every_nic() -> None:
    found = find("web01", HOSTS)
    assert [(m.host, m.nic, m.port_id) for m in found] == [
        ("esx01", "eth0", 67108881),
        ("esx01", "eth1", 67108882),
        ("esx02", "eth0", 50331657),
    ]
    assert {m.matched_by for m in found} == {"exact"}


def test_case_insensitive_only_when_nothing_matches_exactly() -> None:
    found = find("WEB01-OLD", HOSTS)
    assert [(m.host, m.name, m.matched_by) for m in found] == [("esx01", "Web01-old", "case-insensitive")]


def test_glob_last() -> None:
    found = find("web*", HOSTS)
    assert sorted({(m.host, m.name) for m in found}) == [
        ("esx01", "Web01-old"),
        ("esx01", "web01"),
        ("esx02", "web01"),
    ]
    assert {m.matched_by for m in found} == {"glob"}


def test_names_with_spaces() -> None:
    assert [m.name for m in find("db 01", HOSTS)] == ["db 01"]


def test_mac_in_any_notation_finds_the_one_vnic() -> None:
    found = find("00-50-56-01-00-02", HOSTS)
    assert [(m.host, m.kind, m.name, m.nic, m.port_id) for m in found] == [
        ("esx01", "vm", "web01", "eth1", 67108882)
    ]


def test_ip_finds_vnic_and_vmknic() -> None:
    assert [(m.host, m.kind, m.name) for m in find("192.168.1.30", HOSTS)] == [("esx02", "vm", "db 01")]
    vmk = find("10.0.0.11", HOSTS)
    assert [(m.host, m.kind, m.name, m.port_id) for m in vmk] == [
        ("esx01", "vmknic", "vmk0", 33554436),
        ("esx02", "vmknic", "vmk0", 33554436),
    ]


def test_uplink_mac() -> None:
    found = find("A4:BF:01:4E:37:14", HOSTS)
    assert {(m.kind, m.name, m.port_id) for m in found} == {("uplink", "vmnic0", 2214592517)}


def test_nothing_found() -> None:
    assert find("nosuchvm", HOSTS) == []


def test_normalize_mac_refuses_non_macs() -> None:
    assert normalize_mac("00:50:56:01:00") is None
    assert normalize_mac("00:50-56:01:00:02") is None
    assert normalize_mac("0:50:56:01:00:02") is None


def test_prefix_finds_every_address_inside_it() -> None:
    found = find("192.168.1.0/28", HOSTS)
    assert sorted((m.host, m.name, m.ip) for m in found) == [
        ("esx01", "web01", "192.168.1.10"),
    ]
    wide = find("192.168.1.0/24", HOSTS)
    assert {m.ip for m in wide} == {"192.168.1.10", "192.168.1.20", "192.168.1.30"}
    assert {m.matched_by for m in wide} == {"prefix"}
    assert [(m.host, m.kind) for m in find("10.0.0.0/8", HOSTS)] == [("esx01", "vmknic"), ("esx02", "vmknic")]


def test_vmknics_and_uplinks_by_name() -> None:
    assert [(m.host, m.kind, m.port_id) for m in find("vmk0", HOSTS)] == [
        ("esx01", "vmknic", 33554436),
        ("esx02", "vmknic", 33554436),
    ]
    assert {m.kind for m in find("vmnic0", HOSTS)} == {"uplink"}
