"""Pure views of a host's discovered facts: vmknics and uplinks joined with their switch ports, and the
JSON document `esxcap discover --json` prints (its keys are a published contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from esxcap.esxi.models import HostFacts, Nic, VmPort
from esxcap.inventory import HostConfig

UPLINK_PORT_TYPE = 4
VMKNIC_PORT_TYPE = 3


@dataclass(frozen=True)
class Vmknic:
    """A VMkernel NIC with its IPv4 settings and its switch port from `net-stats -l`."""

    name: str
    port_id: int | None
    mac: str
    portgroup: str | None
    switch: str | None
    ipv4: str | None
    netmask: str | None
    mtu: int | None


@dataclass(frozen=True)
class Uplink:
    """A physical NIC with its switch port from `net-stats -l`."""

    nic: Nic
    port_id: int | None


def _port_ids(facts: HostFacts, port_type: int) -> dict[str, int]:
    return {p.client_name: p.port_num for p in facts.netstats if p.type == port_type}


def vmknics(facts: HostFacts) -> list[Vmknic]:
    """Every vmknic with its IPv4 settings and its `net-stats -l` port (else its own Port ID)."""
    ports = _port_ids(facts, VMKNIC_PORT_TYPE)
    ipv4 = {row.name: row for row in facts.ipv4}
    result = []
    for iface in facts.ip_interfaces:
        addr = ipv4.get(iface.name)
        result.append(
            Vmknic(
                name=iface.name,
                port_id=ports.get(iface.name, iface.port_id),
                mac=iface.mac,
                portgroup=iface.portgroup,
                switch=iface.vds_name or iface.portset,
                ipv4=addr.address if addr else None,
                netmask=addr.netmask if addr else None,
                mtu=iface.mtu,
            )
        )
    return result


def uplinks(facts: HostFacts) -> list[Uplink]:
    """Every vmnic with its uplink switch port."""
    ports = _port_ids(facts, UPLINK_PORT_TYPE)
    return [Uplink(nic, ports.get(nic.name)) for nic in facts.nics]


def vm_port_dict(port: VmPort) -> dict[str, Any]:
    return {
        "port_id": port.port_id,
        "mac": port.mac,
        "ip": port.ip,
        "portgroup": port.portgroup,
        "vswitch": port.vswitch,
        "dvport_id": port.dvport_id,
        "team_uplink": port.team_uplink,
        "uplink_port_id": port.uplink_port_id,
    }


def host_dict(host: HostConfig, facts: HostFacts) -> dict[str, Any]:
    """One host's entry of the discover JSON document."""
    return {
        "host": host.name,
        "address": host.hostname,
        "port": host.port,
        "esxi": {
            "version": facts.version.version,
            "build": facts.version.build,
            "update": facts.version.update,
            "patch": facts.version.patch,
        },
        "vms": [
            {
                "name": vm.entry.name,
                "world_id": vm.entry.world_id,
                "networks": list(vm.entry.networks),
                "ports": [vm_port_dict(p) for p in vm.ports],
            }
            for vm in facts.vms
        ],
        "vmknics": [
            {
                "name": v.name,
                "port_id": v.port_id,
                "mac": v.mac,
                "portgroup": v.portgroup,
                "switch": v.switch,
                "ipv4": v.ipv4,
                "netmask": v.netmask,
                "mtu": v.mtu,
            }
            for v in vmknics(facts)
        ],
        "uplinks": [
            {
                "name": u.nic.name,
                "port_id": u.port_id,
                "driver": u.nic.driver,
                "link": u.nic.link_status,
                "admin": u.nic.admin_status,
                "speed_mbps": u.nic.speed_mbps,
                "duplex": u.nic.duplex,
                "mac": u.nic.mac,
                "mtu": u.nic.mtu,
                "description": u.nic.description,
                "pci_device": u.nic.pci_device,
            }
            for u in uplinks(facts)
        ],
        "switches": [
            {
                "name": s.name,
                "type": "standard",
                "mtu": s.mtu,
                "uplinks": list(s.uplinks),
                "portgroups": [
                    {"name": pg.name, "vlan_id": pg.vlan_id, "active_clients": pg.active_clients}
                    for pg in facts.portgroups
                    if pg.vswitch == s.name
                ],
            }
            for s in facts.standard_switches
        ]
        + [
            {
                "name": d.name,
                "type": "distributed",
                "mtu": d.mtu,
                "uplinks": list(d.uplinks),
                "vds_id": d.vds_id,
                "dvports": [
                    {
                        "port_id": p.port_id,
                        "client": p.client,
                        "dvportgroup_id": p.dvportgroup_id,
                        "in_use": p.in_use,
                    }
                    for p in d.dvports
                ],
            }
            for d in facts.distributed_switches
        ],
        "ports": [
            {
                "port_id": p.port_num,
                "type": p.type,
                "subtype": p.subtype,
                "switch": p.switch_name,
                "mac": p.mac,
                "client": p.client_name,
            }
            for p in facts.netstats
        ],
    }
