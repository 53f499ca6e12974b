"""Discovery-output parsers: the text a host prints -> frozen dataclasses of esxcap.esxi.models.

Pure functions, one per command; each raises ParseError(command, line_no, line, reason) on a line it
cannot read and never guesses. `COMMANDS` maps each static discovery command (keyed like the HostFacts
field it fills, plus `system_version`) to its argv and parser; `vm_port_list_argv` builds the per-VM one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from esxcap.esxi.parsers.plain import NET_STATS_ARGV, VMWARE_VL_ARGV, parse_net_stats, parse_vmware_vl
from esxcap.esxi.parsers.records import (
    DVS_LIST_ARGV,
    IP_INTERFACE_LIST_ARGV,
    STANDARD_SWITCH_LIST_ARGV,
    SYSTEM_VERSION_ARGV,
    parse_dvs_list,
    parse_ip_interface_list,
    parse_standard_switches,
    parse_system_version,
    parse_vm_port_list,
    vm_port_list_argv,
)
from esxcap.esxi.parsers.tables import (
    IPV4_GET_ARGV,
    NIC_LIST_ARGV,
    PORTGROUP_LIST_ARGV,
    VM_LIST_ARGV,
    parse_ipv4_get,
    parse_nic_list,
    parse_portgroups,
    parse_vm_list,
)

Parser = Callable[[str], object]

COMMANDS: Mapping[str, tuple[tuple[str, ...], Parser]] = MappingProxyType(
    {
        "version": (VMWARE_VL_ARGV, parse_vmware_vl),
        "system_version": (SYSTEM_VERSION_ARGV, parse_system_version),
        "vms": (VM_LIST_ARGV, parse_vm_list),
        "nics": (NIC_LIST_ARGV, parse_nic_list),
        "ip_interfaces": (IP_INTERFACE_LIST_ARGV, parse_ip_interface_list),
        "ipv4": (IPV4_GET_ARGV, parse_ipv4_get),
        "standard_switches": (STANDARD_SWITCH_LIST_ARGV, parse_standard_switches),
        "portgroups": (PORTGROUP_LIST_ARGV, parse_portgroups),
        "distributed_switches": (DVS_LIST_ARGV, parse_dvs_list),
        "netstats": (NET_STATS_ARGV, parse_net_stats),
    }
)

__all__ = [
    "COMMANDS",
    "DVS_LIST_ARGV",
    "IPV4_GET_ARGV",
    "IP_INTERFACE_LIST_ARGV",
    "NET_STATS_ARGV",
    "NIC_LIST_ARGV",
    "PORTGROUP_LIST_ARGV",
    "STANDARD_SWITCH_LIST_ARGV",
    "SYSTEM_VERSION_ARGV",
    "VMWARE_VL_ARGV",
    "VM_LIST_ARGV",
    "Parser",
    "parse_dvs_list",
    "parse_ip_interface_list",
    "parse_ipv4_get",
    "parse_net_stats",
    "parse_nic_list",
    "parse_portgroups",
    "parse_standard_switches",
    "parse_system_version",
    "parse_vm_list",
    "parse_vm_port_list",
    "parse_vmware_vl",
    "vm_port_list_argv",
]
