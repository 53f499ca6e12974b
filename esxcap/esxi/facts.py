"""Pure views of a host's discovered facts: vmknics and uplinks joined with their switch ports, and the
JSON document `esxcap discover --json` prints (its keys are a published contract).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from esxcap.esxi.models import HostFacts, NetStatsPort, Nic, VmEntry, VmFacts, VmPort
from esxcap.inventory import HostConfig

UPLINK_PORT_TYPE = 4
VMKNIC_PORT_TYPE = 3
VNIC_PORT_TYPE = 5
_VNIC_SUFFIX = re.compile(r"\.eth(0|[1-9][0-9]*)$")


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


def vnic_client(client_name: str, vm_names: Collection[str]) -> tuple[str, int] | None:
    """(VM name, vNIC index) a `net-stats -l` ClientName stands for, or None for other clients.

    `<VM>.ethN` is vNIC N; the bare VM name is its first vNIC (REFERENCE §9: seen for a VM's first vNIC
    on a standard vSwitch while its second showed `<VM>.eth1`). A name that is itself a VM's name is
    read as that bare form first, so a VM called `db.eth1` is not taken for vNIC 1 of `db`.
    """
    if client_name in vm_names:
        return client_name, 0
    suffix = _VNIC_SUFFIX.search(client_name)
    if suffix and client_name[: suffix.start()] in vm_names:
        return client_name[: suffix.start()], int(suffix.group(1))
    return None


def vms_in_net_stats(netstats: Sequence[NetStatsPort]) -> tuple[VmFacts, ...]:
    """The VMs `net-stats -l` shows (no esxcli): each vNIC port's ClientName read as `<VM>.ethN` or the
    bare VM name (vNIC 0), ports in vNIC order. Only what net-stats knows is filled in (world ID 0, no
    portgroup or IP). A name whose ports cannot be one VM's (a vNIC index twice: two VMs of that name)
    comes as that many VMs, and one whose vNICs are not numbered 0..N-1 as one VM, all without ports:
    which port is whose takes `esxcli network vm list`."""
    seen: dict[str, list[tuple[int, NetStatsPort]]] = {}
    for port in netstats:
        if port.type != VNIC_PORT_TYPE:
            continue
        suffix = _VNIC_SUFFIX.search(port.client_name)
        name = port.client_name[: suffix.start()] if suffix else port.client_name
        seen.setdefault(name, []).append((int(suffix.group(1)) if suffix else 0, port))
    found: list[VmFacts] = []
    for name, vnics in seen.items():
        indexes = sorted(index for index, _port in vnics)
        if indexes != list(range(len(indexes))):
            copies = max(indexes.count(i) for i in indexes)
            found += [VmFacts(VmEntry(0, name, 0, ()), ()) for _copy in range(copies)]
            continue
        ports = [port for _index, port in sorted(vnics, key=lambda vnic: vnic[0])]
        found.append(
            VmFacts(
                VmEntry(0, name, len(ports), ()),
                tuple(
                    VmPort(p.port_num, p.switch_name, "", None, p.mac, None, None, None, None) for p in ports
                ),
            )
        )
    return tuple(found)


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


def dvportgroup_names(facts: HostFacts) -> dict[str, str]:
    """Distributed portgroup keys (`dvportgroup-4024`) -> their names, where the host shows both: a VM's
    vNIC N sits on a DVPort of that key (`vm port list`, `dvs vmware list`) and `vm list` names the
    VM's networks in vNIC order."""
    key_of = {p.port_id: p.dvportgroup_id for d in facts.distributed_switches for p in d.dvports}
    names: dict[str, str] = {}
    for vm in facts.vms:
        if len(vm.entry.networks) != len(vm.ports):
            continue
        for port, network in zip(vm.ports, vm.entry.networks, strict=True):
            key = key_of.get(port.dvport_id or "")
            if key and network and network != key:
                names.setdefault(key, network)
    return names


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
        "warnings": list(facts.warnings),
    }
