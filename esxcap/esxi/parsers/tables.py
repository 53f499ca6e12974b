"""Parsers for the esxcli commands that print tables: vm list, nic list, ipv4 get, portgroup list.

Column boundaries come from the dash row (old and new last-column styles alike, see textfmt); the header
must be one of the layouts in esxcap.esxi.layouts, and every cell is converted strictly.
"""

from __future__ import annotations

from esxcap.esxi.layouts import (
    IPV4_GET_COLUMNS,
    IPV4_GET_COLUMNS_55,
    NIC_LIST_COLUMNS,
    NIC_LIST_COLUMNS_55,
    PORTGROUP_LIST_COLUMNS,
    VM_LIST_COLUMNS,
)
from esxcap.esxi.models import Ipv4Interface, Nic, PortGroup, VmEntry
from esxcap.esxi.parsers.values import boolean, integer, required_text, split_list, table_rows

VM_LIST_ARGV = ("esxcli", "network", "vm", "list")
NIC_LIST_ARGV = ("esxcli", "network", "nic", "list")
IPV4_GET_ARGV = ("esxcli", "network", "ip", "interface", "ipv4", "get")
PORTGROUP_LIST_ARGV = ("esxcli", "network", "vswitch", "standard", "portgroup", "list")

MAX_VLAN_ID = 4095


def parse_vm_list(text: str) -> tuple[VmEntry, ...]:
    """`esxcli network vm list`: running VMs. Networks are split on ", " (one per vNIC, duplicates kept)."""
    command = " ".join(VM_LIST_ARGV)
    return tuple(
        VmEntry(
            world_id=integer(row["World ID"], "World ID", where),
            name=required_text(row["Name"], "Name", where),
            num_ports=integer(row["Num Ports"], "Num Ports", where),
            networks=split_list(row["Networks"]),
        )
        for where, row in table_rows(text, command, [VM_LIST_COLUMNS])
    )


def parse_nic_list(text: str) -> tuple[Nic, ...]:
    """`esxcli network nic list` (6.0+ layout, or 5.5's single `Link` column: admin_status is then None)."""
    command = " ".join(NIC_LIST_ARGV)
    nics = []
    for where, row in table_rows(text, command, [NIC_LIST_COLUMNS, NIC_LIST_COLUMNS_55]):
        old = "Link" in row
        nics.append(
            Nic(
                name=required_text(row["Name"], "Name", where),
                pci_device=row["PCI Device"],
                driver=row["Driver"],
                admin_status=None if old else row["Admin Status"],
                link_status=row["Link"] if old else row["Link Status"],
                speed_mbps=integer(row["Speed"], "Speed", where),
                duplex=row["Duplex"],
                mac=required_text(row["MAC Address"], "MAC Address", where),
                mtu=integer(row["MTU"], "MTU", where),
                description=row["Description"],
            )
        )
    return tuple(nics)


def parse_ipv4_get(text: str) -> tuple[Ipv4Interface, ...]:
    """`esxcli network ip interface ipv4 get` (5.5 has no Gateway column: gateway is then None)."""
    command = " ".join(IPV4_GET_ARGV)
    return tuple(
        Ipv4Interface(
            name=required_text(row["Name"], "Name", where),
            address=row["IPv4 Address"],
            netmask=row["IPv4 Netmask"],
            broadcast=row["IPv4 Broadcast"],
            address_type=row["Address Type"],
            gateway=row.get("Gateway"),
            dhcp_dns=boolean(row["DHCP DNS"], "DHCP DNS", where),
        )
        for where, row in table_rows(text, command, [IPV4_GET_COLUMNS, IPV4_GET_COLUMNS_55])
    )


def parse_portgroups(text: str) -> tuple[PortGroup, ...]:
    """`esxcli network vswitch standard portgroup list`."""
    command = " ".join(PORTGROUP_LIST_ARGV)
    groups = []
    for where, row in table_rows(text, command, [PORTGROUP_LIST_COLUMNS]):
        vlan_id = integer(row["VLAN ID"], "VLAN ID", where)
        if vlan_id > MAX_VLAN_ID:
            raise where.error(f"VLAN ID is above {MAX_VLAN_ID}: {vlan_id}")
        groups.append(
            PortGroup(
                name=required_text(row["Name"], "Name", where),
                vswitch=required_text(row["Virtual Switch"], "Virtual Switch", where),
                active_clients=integer(row["Active Clients"], "Active Clients", where),
                vlan_id=vlan_id,
            )
        )
    return tuple(groups)
