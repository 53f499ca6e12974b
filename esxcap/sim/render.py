"""What a simulated host prints for each discovery command, rendered from its topology (pure).

Layouts (columns, field orders, table style per version) come from `esxcap.esxi.layouts`, the same module
the parsers read with; text is built with `esxcap.esxi.textfmt`. Values the samples do not show are marked
INFERRED.
"""

from __future__ import annotations

import ipaddress

from esxcap.esxi import layouts
from esxcap.esxi.models import NetStatsPort
from esxcap.esxi.textfmt import Record, render_records, render_table
from esxcap.sim.topology import Host, SwitchPort, Vm, Vmknic

NOT_AVAILABLE = "N/A"
NO_UPLINK = "void"  # INFERRED: what `vm port list` shows as Team Uplink when no uplink is up


def _trailing_space(host: Host) -> bool:
    """Whether an empty record value prints as `Key: ` (INFERRED: the 7.0.x samples show `Key:`)."""
    return not (7, 0) <= host.version_tuple < (8,)


def _records(host: Host, records: list[Record]) -> str:
    return render_records(records, _trailing_space(host))


def system_version_get(host: Host) -> str:
    values = {
        "Product": "VMware ESXi",
        "Version": host.version,
        "Build": f"Releasebuild-{host.build}",
        "Update": host.update,
        "Maintenance": "0",
        "Patch": host.patch,
    }
    fields = layouts.system_version_fields(host.version_tuple)
    return _records(host, [Record(None, tuple((k, values[k]) for k in fields))])


def vmware_v(host: Host) -> str:
    return layouts.format_vmware_v(host.esxi_version) + "\n"


def vmware_l(host: Host) -> str:
    return layouts.format_vmware_l(host.esxi_version) + "\n"


def vmware_vl(host: Host) -> str:
    return layouts.format_vmware_vl(host.esxi_version)


def uname(host: Host, flag: str) -> str:
    """`uname -a` as on 5.5 (`GNU/Linux` tail) and 8.0.2 (`x86_64 x86_64 ESXi` tail); 6.x-7.x INFERRED."""
    tail = "GNU/Linux" if host.version_tuple < (6, 5) else "x86_64 x86_64 ESXi"
    parts = {"-s": "VMkernel", "-n": host.name, "-r": host.version}
    if flag == "-a":
        return (
            f"VMkernel {host.name} {host.version} #1 SMP Release build-{host.build} {host.build_date}"
            f" x86_64 {tail}\n"
        )
    return parts[flag] + "\n"


def vm_list(host: Host) -> str:
    rows = []
    for vm in host.running_vms():
        ports = host.vnic_ports(vm)
        networks = ", ".join(p.portgroup or "" for p in ports)
        rows.append((str(vm.world_id), vm.name, str(len(ports)), networks))
    return render_table(layouts.VM_LIST_COLUMNS, rows, layouts.table_style(host.version_tuple))


def vm_port_list(host: Host, vm: Vm) -> str:
    records = []
    for port, vnic in zip(host.vnic_ports(vm), vm.vnics, strict=False):
        uplink_port = host.port_of_client(port.team_uplink) if port.team_uplink else None
        values = {
            "Port ID": str(port.port_id),
            "vSwitch": port.switch,
            "Portgroup": port.portgroup or "",
            "DVPort ID": port.dvport or "",
            "MAC Address": port.mac,
            "IP Address": vnic.ip or "0.0.0.0",  # noqa: S104 - what esxcli prints when Tools report no IP
            "Team Uplink": port.team_uplink or NO_UPLINK,
            "Uplink Port ID": str(uplink_port.port_id if uplink_port else 0),
            "Active Filters": ", ".join(vnic.filters),
        }
        records.append(Record(None, tuple((k, values[k]) for k in layouts.VM_PORT_FIELDS)))
    return _records(host, records)


def nic_list(host: Host) -> str:
    """Rows sorted by name as a string (`vmnic10` before `vmnic2`), like esxcli."""
    columns = layouts.nic_list_columns(host.version_tuple)
    rows = []
    for nic in sorted(host.uplinks, key=lambda u: u.name):
        up = nic.link == "Up"
        values = {
            "Name": nic.name,
            "PCI Device": nic.pci,
            "Driver": nic.driver,
            "Admin Status": nic.admin,
            "Link Status": nic.link,
            "Link": nic.link,
            "Speed": str(nic.speed if up else 0),
            "Duplex": nic.duplex if up else "Half",
            "MAC Address": nic.mac,
            "MTU": str(nic.mtu),
            "Description": nic.description,
        }
        rows.append(tuple(values[c.header] for c in columns))
    return render_table(columns, rows, layouts.table_style(host.version_tuple))


def _vmk_port(host: Host, vmk: Vmknic) -> SwitchPort:
    port = host.port_of_client(vmk.name)
    assert port is not None, f"{vmk.name} has no switch port"
    return port


def ip_interface_list(host: Host) -> str:
    records = []
    for vmk in host.vmknics:
        port = _vmk_port(host, vmk)
        dvs = next((d for d in host.dvswitches if d.name == port.switch), None)
        values = {
            "Name": vmk.name,
            "MAC Address": vmk.mac,
            "Enabled": "true" if vmk.enabled else "false",
            "Portset": port.portset,
            "Portgroup": NOT_AVAILABLE if dvs else vmk.portgroup,  # INFERRED for DVS-backed vmknics
            "Netstack Instance": vmk.netstack,
            "VDS Name": dvs.name if dvs else NOT_AVAILABLE,
            "VDS UUID": dvs.vds_id if dvs else NOT_AVAILABLE,
            "VDS Port": port.dvport or NOT_AVAILABLE,
            "VDS Connection": str(port.port_id & 0xFFFFFF) if dvs else "-1",  # INFERRED connection id
            "Opaque Network ID": NOT_AVAILABLE,
            "Opaque Network Type": NOT_AVAILABLE,
            "External ID": NOT_AVAILABLE,
            "MTU": str(vmk.mtu),
            "TSO MSS": "65535",
            "RXDispQueue Size": "1",
            "Port ID": str(port.port_id),
        }
        fields = layouts.ip_interface_fields(host.version_tuple)
        records.append(Record(vmk.name, tuple((k, values[k]) for k in fields)))
    return _records(host, records)


def ipv4_get(host: Host) -> str:
    columns = layouts.ipv4_get_columns(host.version_tuple)
    rows = []
    for vmk in host.vmknics:
        network = ipaddress.IPv4Network(f"{vmk.ipv4}/{vmk.netmask}", strict=False)
        values = {
            "Name": vmk.name,
            "IPv4 Address": vmk.ipv4,
            "IPv4 Netmask": vmk.netmask,
            "IPv4 Broadcast": str(network.broadcast_address),
            "Address Type": "STATIC",
            "Gateway": vmk.gateway or "0.0.0.0",  # noqa: S104 - esxcli's "no gateway"
            "DHCP DNS": "false",
        }
        rows.append(tuple(values[c.header] for c in columns))
    return render_table(columns, rows, layouts.table_style(host.version_tuple))


def _used_ports(host: Host, name: str, configured: int | None) -> str:
    return str(configured if configured is not None else len(host.switch_ports(name)))


def vswitch_standard_list(host: Host) -> str:
    records = []
    for sw in host.vswitches:
        values = {
            "Name": sw.name,
            "Class": "cswitch",
            "Num Ports": str(sw.num_ports),
            "Used Ports": _used_ports(host, sw.name, sw.used_ports),
            "Configured Ports": str(sw.configured_ports),
            "MTU": str(sw.mtu),
            "CDP Status": sw.cdp_status,
            "Beacon Enabled": "false",
            "Beacon Interval": "1",
            "Beacon Threshold": "3",
            "Beacon Required By": "",
            "Uplinks": ", ".join(sw.uplinks),
            "Portgroups": ", ".join(pg.name for pg in sw.portgroups),
        }
        records.append(Record(sw.name, tuple((k, values[k]) for k in layouts.VSWITCH_FIELDS)))
    return _records(host, records)


def portgroup_list(host: Host) -> str:
    rows = []
    for sw in host.vswitches:
        for pg in sw.portgroups:
            clients = sum(1 for p in host.ports if p.portgroup == pg.name)
            rows.append((pg.name, sw.name, str(clients), str(pg.vlan)))
    return render_table(layouts.PORTGROUP_LIST_COLUMNS, rows, layouts.table_style(host.version_tuple))


def dvs_list(host: Host) -> str:
    records = []
    for dvs in host.dvswitches:
        clients = {p.dvport: p.client for p in host.switch_ports(dvs.name) if p.dvport is not None}
        dvports = tuple(
            Record(
                None,
                (
                    ("Client", clients.get(key, "")),
                    ("DVPortgroup ID", pg.key),
                    ("In Use", "true" if key in clients else "false"),
                    ("Port ID", key),
                ),
            )
            for pg in dvs.portgroups
            for key in pg.ports
        )
        values = {
            "Name": dvs.name,
            "VDS ID": dvs.vds_id,
            "Class": "cswitch",
            "Num Ports": str(dvs.num_ports),
            "Used Ports": _used_ports(host, dvs.name, dvs.used_ports),
            "Configured Ports": str(dvs.configured_ports),
            "MTU": str(dvs.mtu),
            "CDP Status": dvs.cdp_status,
            "Beacon Timeout": "-1",
            "Uplinks": ", ".join(dvs.uplinks),
            "VMware Branded": "true",
            "DVPort": "",
        }
        fields = tuple((k, values[k]) for k in layouts.DVS_FIELDS)
        records.append(Record(dvs.name, fields, nested={"DVPort": dvports}))
    return _records(host, records)


ODD_NET_STATS_ROW = "67109999   0 0 vSwitch0 00:00:00:00:00:00 internal port"
"""A row in other columns than net-stats' own (the `net_stats_odd_row` fault)."""


def net_stats_l(host: Host) -> str:
    """`net-stats -l`; with `net_stats_bare_names`, a VM's first vNIC on a standard vSwitch shows the
    bare VM name (REFERENCE §9), and with `net_stats_odd_row` a row esxcap cannot re-render ends it."""
    lines = [layouts.NET_STATS_HEADER]
    for port in host.ports:
        client = port.client
        if host.faults.net_stats_bare_names and port.vnic_index == 0 and port.dvport is None:
            client = client.removesuffix(".eth0")
        row = NetStatsPort(port.port_id, port.net_stats_type, port.subtype, port.portset, port.mac, client)
        lines.append(layouts.format_net_stats_row(row))
    if host.faults.net_stats_odd_row:
        lines.append(ODD_NET_STATS_ROW)
    return "".join(line + "\n" for line in lines)
