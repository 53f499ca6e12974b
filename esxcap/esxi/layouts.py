"""Per-command output layouts of the discovery commands, per ESXi version family.

The parsers check what a host prints against these layouts and the simulator renders its state with them,
so the two read and write the same shapes. Tables are `textfmt.Column` tuples; record blocks are field-name
orders (as esxcli prints them). `net-stats -l` and `vmware -vl` are plain printf layouts
(REFERENCE §2.3, §3.8). Version tuples are `EsxiVersion.version_tuple` values, e.g. (6, 7, 0).
"""

from __future__ import annotations

from esxcap.esxi.models import EsxiVersion, NetStatsPort
from esxcap.esxi.textfmt import Column, TableStyle

Version = tuple[int, ...]

# --- tables ---------------------------------------------------------------------------------------------

VM_LIST_COLUMNS = (
    Column("World ID", right=True),
    Column("Name"),
    Column("Num Ports", right=True),
    Column("Networks"),
)

NIC_LIST_COLUMNS = (
    Column("Name"),
    Column("PCI Device"),
    Column("Driver"),
    Column("Admin Status"),
    Column("Link Status"),
    Column("Speed", right=True),
    Column("Duplex"),
    Column("MAC Address"),
    Column("MTU", right=True),
    Column("Description"),
)

# 5.5: one `Link` column instead of `Admin Status` / `Link Status` (REFERENCE §3.3).
NIC_LIST_COLUMNS_55 = (*NIC_LIST_COLUMNS[:3], Column("Link"), *NIC_LIST_COLUMNS[5:])

IPV4_GET_COLUMNS = (
    Column("Name"),
    Column("IPv4 Address"),
    Column("IPv4 Netmask"),
    Column("IPv4 Broadcast"),
    Column("Address Type"),
    Column("Gateway"),
    Column("DHCP DNS", right=True),
)

# 5.5: no `Gateway` column (REFERENCE §3.5).
IPV4_GET_COLUMNS_55 = tuple(c for c in IPV4_GET_COLUMNS if c.header != "Gateway")

PORTGROUP_LIST_COLUMNS = (
    Column("Name"),
    Column("Virtual Switch"),
    Column("Active Clients", right=True),
    Column("VLAN ID", right=True),
)

# --- record blocks ----------------------------------------------------------------------------------------

VM_PORT_FIELDS = (
    "Port ID",
    "vSwitch",
    "Portgroup",
    "DVPort ID",
    "MAC Address",
    "IP Address",
    "Team Uplink",
    "Uplink Port ID",
    "Active Filters",
)

IP_INTERFACE_FIELDS = (
    "Name",
    "MAC Address",
    "Enabled",
    "Portset",
    "Portgroup",
    "Netstack Instance",
    "VDS Name",
    "VDS UUID",
    "VDS Port",
    "VDS Connection",
    "Opaque Network ID",
    "Opaque Network Type",
    "External ID",
    "MTU",
    "TSO MSS",
    "RXDispQueue Size",
    "Port ID",
)

# INFERRED: 5.5 / 6.0 / 6.5 lack the fields REFERENCE §3.4 says 6.7 added; no verbatim older sample exists.
_ADDED_IN_67 = {
    "Netstack Instance",
    "Opaque Network ID",
    "Opaque Network Type",
    "External ID",
    "RXDispQueue Size",
}
IP_INTERFACE_FIELDS_OLD = tuple(f for f in IP_INTERFACE_FIELDS if f not in _ADDED_IN_67)

VSWITCH_FIELDS = (
    "Name",
    "Class",
    "Num Ports",
    "Used Ports",
    "Configured Ports",
    "MTU",
    "CDP Status",
    "Beacon Enabled",
    "Beacon Interval",
    "Beacon Threshold",
    "Beacon Required By",
    "Uplinks",
    "Portgroups",
)

DVS_FIELDS = (
    "Name",
    "VDS ID",
    "Class",
    "Num Ports",
    "Used Ports",
    "Configured Ports",
    "MTU",
    "CDP Status",
    "Beacon Timeout",
    "Uplinks",
    "VMware Branded",
    "DVPort",
)

DVPORT_FIELDS = ("Client", "DVPortgroup ID", "In Use", "Port ID")

SYSTEM_VERSION_FIELDS = ("Product", "Version", "Build", "Update", "Patch")
SYSTEM_VERSION_FIELDS_55 = ("Product", "Version", "Build", "Update")
SYSTEM_VERSION_FIELDS_9 = ("Product", "Version", "Build", "Update", "Maintenance", "Patch")


# --- version families ---------------------------------------------------------------------------------------


def table_style(version: Version) -> TableStyle:
    """esxcli's last-column style: "new" (dash run = header length, values unpadded) from 7.0.2 on."""
    return "new" if version >= (7, 0, 2) else "old"


def nic_list_columns(version: Version) -> tuple[Column, ...]:
    return NIC_LIST_COLUMNS_55 if version < (6,) else NIC_LIST_COLUMNS


def ipv4_get_columns(version: Version) -> tuple[Column, ...]:
    return IPV4_GET_COLUMNS_55 if version < (6,) else IPV4_GET_COLUMNS


def ip_interface_fields(version: Version) -> tuple[str, ...]:
    return IP_INTERFACE_FIELDS_OLD if version < (6, 7) else IP_INTERFACE_FIELDS


def system_version_fields(version: Version) -> tuple[str, ...]:
    if version < (6,):
        return SYSTEM_VERSION_FIELDS_55
    return SYSTEM_VERSION_FIELDS_9 if version >= (9,) else SYSTEM_VERSION_FIELDS


# --- net-stats -l -----------------------------------------------------------------------------------------

NET_STATS_HEADER = (
    f"{'PortNum':<16} {'Type':>4} {'SubType':>7} {'SwitchName':<16} {'MACAddress':<17}  ClientName"
)


def format_net_stats_row(port: NetStatsPort) -> str:
    """One `net-stats -l` row, no newline: printf `%-16u %4d %7d %-16s %-17s  %s` (client name not padded)."""
    return (
        f"{port.port_num:<16} {port.type:>4} {port.subtype:>7} {port.switch_name:<16} {port.mac:<17}"
        f"  {port.client_name}"
    )


# --- vmware -v / -vl ---------------------------------------------------------------------------------------


def format_vmware_v(version: EsxiVersion) -> str:
    """`vmware -v` (and line 1 of `vmware -vl`): `VMware ESXi 6.7.0 build-8169922`."""
    return f"{version.product} {version.version} build-{version.build}"


def format_vmware_l(version: EsxiVersion) -> str:
    """`vmware -l` (line 2 of `vmware -vl`): `VMware ESXi 6.5.0 Update 3`, `VMware ESXi 7.0 Update 3`, or GA.

    From 7.0 on the version is printed with two parts; update None or "0" prints as `GA`.
    """
    shown = version.version
    if version.version_tuple >= (7,):
        shown = ".".join(shown.split(".")[:2])
    tail = "GA" if version.update in (None, "0") else f"Update {version.update}"
    return f"{version.product} {shown} {tail}"


def format_vmware_vl(version: EsxiVersion) -> str:
    """Both lines of `vmware -vl`, each ending with a newline."""
    return f"{format_vmware_v(version)}\n{format_vmware_l(version)}\n"
