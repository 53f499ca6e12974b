"""Contract: what the simulator prints is read by esxcap's own parsers into exactly the simulated state.

The renderers are checked byte for byte against the verbatim samples in test_sim_render.py; here every
discovery command of every persona goes through the real parsers, hostile names included.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from esxcap.esxi.models import DvPort
from esxcap.esxi.parsers import COMMANDS, parse_vm_port_list, vm_port_list_argv
from esxcap.sim import Host, load_topology, topology_from_data
from esxcap.sim.programs import host_programs
from esxcap.sim.shell import Shell

HOSTILE = ["web 01", "データベース01", 'qa "quoted" $(id) & co', "it's `x`; y", "a  b,c", "Ωmega-ü"]


def persona(version: str) -> Host:
    """A host of `version` with hostile VM names on a standard vSwitch and a DVS.

    Portgroup names avoid ", ": esxcli joins a VM's networks with ", ", so such a name is ambiguous
    in `network vm list` on a real host as well.
    """
    vms: list[dict[str, Any]] = [
        {"name": name, "world_id": 3000000 + i, "vnics": [
            {"mac": f"00:50:56:00:{i:02x}:01", "ip": f"10.0.0.{i + 1}", "portgroup": "VM Network"},
            {"mac": f"00:50:56:00:{i:02x}:02", "portgroup": "dvpg,web"},
        ]}
        for i, name in enumerate(HOSTILE)
    ]  # fmt: skip
    host = {
        "version": version, "build": "12345", "update": "1", "patch": "2",
        "uplinks": [{"name": f"vmnic{i}", "pci": f"0000:01:00.{i}", "driver": "ixgben", "speed": 10000,
                     "mac": f"a4:bf:01:00:00:{i:02x}", "description": "Intel(R) Ethernet Controller X540-AT2",
                     "link": "Down" if i == 1 else "Up"} for i in range(4)],
        "vswitches": [{"name": "vSwitch0", "uplinks": ["vmnic0", "vmnic1"],
                       "portgroups": [{"name": "Management Network"}, {"name": "VM Network", "vlan": 7}]}],
        "dvswitches": [{"name": "VDS Prod", "vds_id": "50 33 8c 87 5f 05 cd 73-bc 4f 7c 4f 55 23 fc f8",
                        "uplinks": ["vmnic2", "vmnic3"],
                        "portgroups": [{"name": "dvpg,web", "key": "dvportgroup-1", "vlan": 4095,
                                        "ports": [str(n) for n in range(10)]}]}],
        "vmknics": [
            {"name": "vmk0", "mac": "a4:bf:01:00:00:00", "ipv4": "192.168.0.5", "gateway": "192.168.0.1",
             "portgroup": "Management Network"},
            {"name": "vmk1", "mac": "00:50:56:6a:00:01", "ipv4": "192.168.1.5", "portgroup": "dvpg,web"},
        ],
        "vms": vms,
    }  # fmt: skip
    return topology_from_data({"hosts": {"h": host}}, "<contract>").hosts[0]


HOSTS = [
    *load_topology().hosts,
    *(persona(v) for v in ("5.5.0", "6.0.0", "6.7.0", "7.0.1", "7.0.3", "9.0.0")),
]


def run(host: Host, argv: tuple[str, ...]) -> str:
    out = Shell(host_programs(host)).run(shlex.join(argv))
    assert out.status == 0 and out.stream(2) == b"", out.stream(2)
    return out.stream(1).decode("utf-8")


@pytest.mark.parametrize("host", HOSTS, ids=lambda h: f"{h.name}-{h.version}")
def test_parsers_read_the_simulated_state(host: Host) -> None:
    facts: dict[str, Any] = {key: parser(run(host, argv)) for key, (argv, parser) in COMMANDS.items()}

    for key in ("version", "system_version"):
        assert (facts[key].version, facts[key].build) == (host.version, host.build)
    assert facts["system_version"].update == host.update

    running = host.running_vms()
    assert [(v.world_id, v.name, v.num_ports, v.networks) for v in facts["vms"]] == [
        (vm.world_id, vm.name, len(vm.vnics), tuple(n.portgroup for n in vm.vnics)) for vm in running
    ]
    for vm in running:
        ports = parse_vm_port_list(run(host, vm_port_list_argv(vm.world_id)), vm.world_id)
        expected = [
            (p.port_id, p.switch, p.portgroup, p.dvport, p.mac, n.ip, p.team_uplink)
            for p, n in zip(host.vnic_ports(vm), vm.vnics, strict=True)
        ]
        assert [
            (p.port_id, p.vswitch, p.portgroup, p.dvport_id, p.mac, p.ip, p.team_uplink) for p in ports
        ] == (expected)

    assert sorted((n.name, n.mac, n.link_status) for n in facts["nics"]) == sorted(
        (u.name, u.mac, u.link) for u in host.uplinks
    )
    assert [(i.name, i.mac, i.port_id) for i in facts["ip_interfaces"]] == [
        (k.name, k.mac, port.port_id if (port := host.port_of_client(k.name)) else None) for k in host.vmknics
    ]
    assert [(i.name, i.address, i.netmask) for i in facts["ipv4"]] == [
        (k.name, k.ipv4, k.netmask) for k in host.vmknics
    ]
    assert [(s.name, s.uplinks, s.portgroups) for s in facts["standard_switches"]] == [
        (s.name, s.uplinks, tuple(pg.name for pg in s.portgroups)) for s in host.vswitches
    ]
    assert [(p.name, p.vswitch, p.vlan_id) for p in facts["portgroups"]] == [
        (pg.name, s.name, pg.vlan) for s in host.vswitches for pg in s.portgroups
    ]
    assert [(d.name, d.vds_id, d.uplinks) for d in facts["distributed_switches"]] == [
        (d.name, d.vds_id, d.uplinks) for d in host.dvswitches
    ]
    for parsed, dvs in zip(facts["distributed_switches"], host.dvswitches, strict=True):
        clients = {p.dvport: p.client for p in host.switch_ports(dvs.name) if p.dvport}
        assert parsed.dvports == tuple(
            DvPort(key, clients.get(key), pg.key, key in clients) for pg in dvs.portgroups for key in pg.ports
        )
    assert [(p.port_num, p.type, p.switch_name, p.mac, p.client_name) for p in facts["netstats"]] == [
        (p.port_id, p.net_stats_type, p.portset, p.mac, p.client) for p in host.ports
    ]
