"""Parsers for the esxcli commands that print `   Key: Value` record blocks: vm port list,
ip interface list, vswitch standard list, vswitch dvs vmware list, system version get.

Required fields must be present; fields a parser does not use are ignored (see values.Fields).
Where a block has a title line, it must equal the block's `Name` field.
"""

from __future__ import annotations

import re

from esxcap.errors import ParseError
from esxcap.esxi.models import DistributedSwitch, DvPort, EsxiVersion, IpInterface, StandardSwitch, VmPort
from esxcap.esxi.parsers.values import (
    Fields,
    absent_if,
    boolean,
    integer,
    record_blocks,
    required_text,
    split_list,
    u32,
)

VM_PORT_LIST_ARGV = ("esxcli", "network", "vm", "port", "list")
IP_INTERFACE_LIST_ARGV = ("esxcli", "network", "ip", "interface", "list")
STANDARD_SWITCH_LIST_ARGV = ("esxcli", "network", "vswitch", "standard", "list")
DVS_LIST_ARGV = ("esxcli", "network", "vswitch", "dvs", "vmware", "list")
SYSTEM_VERSION_ARGV = ("esxcli", "system", "version", "get")

NOT_AVAILABLE = "N/A"
NO_IP = "0.0.0.0"  # noqa: S104 - the vm port list value for "no IP reported"
_BUILD = re.compile(r"Releasebuild-([0-9]+)")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)+")


def vm_port_list_argv(world_id: int) -> tuple[str, ...]:
    """The argv that lists one running VM's vNIC ports."""
    return (*VM_PORT_LIST_ARGV, "-w", str(world_id))


def parse_vm_port_list(text: str, world_id: int | None = None) -> tuple[VmPort, ...]:
    """`esxcli network vm port list -w WORLD_ID`: one block per vNIC, in vNIC order.

    Empty `DVPort ID`, `Team Uplink`, `Uplink Port ID`, `Active Filters` are None; so is `IP Address`
    when empty or `0.0.0.0` (VMware Tools did not report one).
    """
    argv = vm_port_list_argv(world_id) if world_id is not None else VM_PORT_LIST_ARGV
    ports = []
    for block in record_blocks(text, " ".join(argv), titled=False):
        uplink_port, uplink_where = block.optional("Uplink Port ID")
        ip, _ = block.optional("IP Address")
        dvport, _ = block.optional("DVPort ID")
        team, _ = block.optional("Team Uplink")
        filters, _ = block.optional("Active Filters")
        ports.append(
            VmPort(
                port_id=_u32_field(block, "Port ID"),
                vswitch=_text_field(block, "vSwitch"),
                portgroup=_text_field(block, "Portgroup"),
                dvport_id=absent_if(dvport or ""),
                mac=_text_field(block, "MAC Address"),
                ip=absent_if(ip or "", NO_IP),
                team_uplink=absent_if(team or ""),
                uplink_port_id=u32(uplink_port, "Uplink Port ID", uplink_where) if uplink_port else None,
                active_filters=absent_if(filters or ""),
            )
        )
    return tuple(ports)


def parse_ip_interface_list(text: str) -> tuple[IpInterface, ...]:
    """`esxcli network ip interface list`: one titled block per vmknic; `N/A` values are None."""
    interfaces = []
    for block in record_blocks(text, " ".join(IP_INTERFACE_LIST_ARGV), titled=True):
        name = _titled_name(block)
        mtu, mtu_where = block.optional("MTU")
        port_id, port_where = block.optional("Port ID")
        port_id = absent_if(port_id or "", NOT_AVAILABLE)
        enabled, enabled_where = block.require("Enabled")
        interfaces.append(
            IpInterface(
                name=name,
                mac=_text_field(block, "MAC Address"),
                enabled=boolean(enabled, "Enabled", enabled_where),
                portset=_not_available(block, "Portset"),
                portgroup=_not_available(block, "Portgroup"),
                netstack=_not_available(block, "Netstack Instance"),
                mtu=integer(mtu, "MTU", mtu_where) if mtu else None,
                port_id=u32(port_id, "Port ID", port_where) if port_id else None,
                vds_name=_not_available(block, "VDS Name"),
                vds_port=_not_available(block, "VDS Port"),
            )
        )
    return tuple(interfaces)


def parse_standard_switches(text: str) -> tuple[StandardSwitch, ...]:
    """`esxcli network vswitch standard list`: one titled block per vSwitch; lists split on ", "."""
    switches = []
    for block in record_blocks(text, " ".join(STANDARD_SWITCH_LIST_ARGV), titled=True):
        switches.append(
            StandardSwitch(
                name=_titled_name(block),
                num_ports=_int_field(block, "Num Ports"),
                used_ports=_int_field(block, "Used Ports"),
                configured_ports=_int_field(block, "Configured Ports"),
                mtu=_int_field(block, "MTU"),
                cdp_status=block.require("CDP Status")[0],
                uplinks=split_list(block.require("Uplinks")[0]),
                portgroups=split_list(block.require("Portgroups")[0]),
            )
        )
    return tuple(switches)


def parse_dvs_list(text: str) -> tuple[DistributedSwitch, ...]:
    """`esxcli network vswitch dvs vmware list`: titled blocks with nested `DVPort` sub-records."""
    switches = []
    for block in record_blocks(text, " ".join(DVS_LIST_ARGV), titled=True):
        switches.append(
            DistributedSwitch(
                name=_titled_name(block),
                vds_id=_text_field(block, "VDS ID"),
                num_ports=_int_field(block, "Num Ports"),
                used_ports=_int_field(block, "Used Ports"),
                configured_ports=_int_field(block, "Configured Ports"),
                mtu=_int_field(block, "MTU"),
                cdp_status=block.require("CDP Status")[0],
                uplinks=split_list(block.require("Uplinks")[0]),
                dvports=tuple(_dvport(child) for child in block.nested("DVPort")),
            )
        )
    return tuple(switches)


def _dvport(block: Fields) -> DvPort:
    client, _ = block.require("Client")
    in_use, in_use_where = block.require("In Use")
    return DvPort(
        port_id=_text_field(block, "Port ID"),
        client=absent_if(client),
        dvportgroup_id=_text_field(block, "DVPortgroup ID"),
        in_use=boolean(in_use, "In Use", in_use_where),
    )


def parse_system_version(text: str) -> EsxiVersion:
    """`esxcli system version get`: exactly one untitled block; `Build: Releasebuild-N` gives build "N"."""
    command = " ".join(SYSTEM_VERSION_ARGV)
    blocks = record_blocks(text, command, titled=False)
    if not blocks:
        raise ParseError(command, 1, text, "empty output")
    if len(blocks) > 1:
        raise blocks[1].where.error("more than one version block")
    block = blocks[0]
    version, version_where = block.require("Version")
    if not _VERSION.fullmatch(version):
        raise version_where.error(f"not a version number: {version!r}")
    build, build_where = block.require("Build")
    match = _BUILD.fullmatch(build)
    if not match:
        raise build_where.error(f"expected 'Releasebuild-<number>': {build!r}")
    patch = block.optional("Patch")[0]
    return EsxiVersion(
        product=_text_field(block, "Product"),
        version=version,
        build=match.group(1),
        update=_number_text(block, "Update"),
        patch=_number_text(block, "Patch") if patch is not None else None,
    )


def _titled_name(block: Fields) -> str:
    name, where = block.require("Name")
    if block.record.title != name:
        raise block.where.error(f"block title does not match its Name field {name!r}")
    return required_text(name, "Name", where)


def _text_field(block: Fields, key: str) -> str:
    value, where = block.require(key)
    return required_text(value, key, where)


def _int_field(block: Fields, key: str) -> int:
    value, where = block.require(key)
    return integer(value, key, where)


def _number_text(block: Fields, key: str) -> str:
    value, where = block.require(key)
    integer(value, key, where)
    return value


def _u32_field(block: Fields, key: str) -> int:
    value, where = block.require(key)
    return u32(value, key, where)


def _not_available(block: Fields, key: str) -> str | None:
    value, _ = block.optional(key)
    return absent_if(value or "", NOT_AVAILABLE)
