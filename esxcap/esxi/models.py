"""Frozen records for what an ESXi host reports, as the parsers produce them.

One dataclass per kind of row or block a discovery command prints; `HostFacts` gathers a host's whole
discovery. Switch-port ids are unsigned 32-bit integers (uplink ports have bit 31 set on 7.0+).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EsxiVersion:
    """`vmware -vl` / `esxcli system version get`: version "6.7.0", build "8169922", update "3" or None."""

    product: str
    version: str
    build: str
    update: str | None = None
    patch: str | None = None

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split(".") if part.isdigit())


@dataclass(frozen=True)
class VmEntry:
    """One row of `esxcli network vm list` (running VMs only)."""

    world_id: int
    name: str
    num_ports: int
    networks: tuple[str, ...]


@dataclass(frozen=True)
class VmPort:
    """One block of `esxcli network vm port list -w WORLD_ID`: a vNIC's switch port."""

    port_id: int
    vswitch: str
    portgroup: str
    dvport_id: str | None
    mac: str
    ip: str | None
    team_uplink: str | None
    uplink_port_id: int | None
    active_filters: str | None


@dataclass(frozen=True)
class Nic:
    """One row of `esxcli network nic list` (5.5 prints one `Link` column instead of admin/link status)."""

    name: str
    pci_device: str
    driver: str
    admin_status: str | None
    link_status: str
    speed_mbps: int
    duplex: str
    mac: str
    mtu: int | None
    description: str


@dataclass(frozen=True)
class IpInterface:
    """One block of `esxcli network ip interface list`: a VMkernel NIC."""

    name: str
    mac: str
    enabled: bool
    portset: str | None
    portgroup: str | None
    netstack: str | None
    mtu: int | None
    port_id: int | None
    vds_name: str | None
    vds_port: str | None


@dataclass(frozen=True)
class Ipv4Interface:
    """One row of `esxcli network ip interface ipv4 get` (no Gateway column on 5.5)."""

    name: str
    address: str
    netmask: str
    broadcast: str
    address_type: str
    gateway: str | None
    dhcp_dns: bool


@dataclass(frozen=True)
class StandardSwitch:
    """One block of `esxcli network vswitch standard list`."""

    name: str
    num_ports: int
    used_ports: int
    configured_ports: int
    mtu: int
    cdp_status: str
    uplinks: tuple[str, ...]
    portgroups: tuple[str, ...]


@dataclass(frozen=True)
class PortGroup:
    """One row of `esxcli network vswitch standard portgroup list`."""

    name: str
    vswitch: str
    active_clients: int
    vlan_id: int


@dataclass(frozen=True)
class DvPort:
    """One DVPort sub-record of `esxcli network vswitch dvs vmware list`."""

    port_id: str
    client: str | None
    dvportgroup_id: str
    in_use: bool


@dataclass(frozen=True)
class DistributedSwitch:
    """One block of `esxcli network vswitch dvs vmware list`."""

    name: str
    vds_id: str
    num_ports: int
    used_ports: int
    configured_ports: int
    mtu: int
    cdp_status: str
    uplinks: tuple[str, ...]
    dvports: tuple[DvPort, ...]


@dataclass(frozen=True)
class NetStatsPort:
    """One row of `net-stats -l`: type 3 vmknic, 4 uplink, 5 VM vNIC, 0 internal."""

    port_num: int
    type: int
    subtype: int
    switch_name: str
    mac: str
    client_name: str


@dataclass(frozen=True)
class VmFacts:
    """A running VM and its vNIC ports, in vNIC order."""

    entry: VmEntry
    ports: tuple[VmPort, ...]


@dataclass(frozen=True)
class HostFacts:
    """Everything one discovery learned about a host."""

    version: EsxiVersion
    vms: tuple[VmFacts, ...]
    nics: tuple[Nic, ...]
    ip_interfaces: tuple[IpInterface, ...]
    ipv4: tuple[Ipv4Interface, ...]
    standard_switches: tuple[StandardSwitch, ...]
    portgroups: tuple[PortGroup, ...]
    distributed_switches: tuple[DistributedSwitch, ...]
    netstats: tuple[NetStatsPort, ...]
    capture_points: tuple[str, ...] | None = None
    """What `pktcap-uw -A` listed, when discovery asked (captures); None when not asked or not answered."""
    warnings: tuple[str, ...] = ()
    """What discovery skipped or left out (stray lines, unreadable rows, VMs gone), one sentence each."""
