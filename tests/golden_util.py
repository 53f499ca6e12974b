"""Test support for the parsers: the verbatim fixtures cut into command outputs, golden JSON files,
and model -> text rendering through esxcap.esxi.layouts and esxcap.esxi.textfmt (the inverse of the parsers).

Goldens live in tests/golden/<fixture-name>.json as {sample id: dataclasses.asdict(result)}.
Run the tests with ESXCAP_REGEN_GOLDEN=1 to rewrite them; check every rewritten file against its fixture.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from conftest import FIXTURES

from esxcap.esxi import layouts
from esxcap.esxi.models import (
    DistributedSwitch,
    EsxiVersion,
    IpInterface,
    Ipv4Interface,
    NetStatsPort,
    Nic,
    PortGroup,
    StandardSwitch,
    VmEntry,
    VmPort,
)
from esxcap.esxi.textfmt import Record, render_records, render_table

GOLDEN = Path(__file__).resolve().parent / "golden"
PROMPTS = ("[root@", "~ # ", "esxcli ")


def _is_note(line: str) -> bool:
    return line.startswith("## ") or (line.startswith("<<<") and line.endswith(">>>"))


def command_output(name: str) -> str:
    """A single-command fixture without its prompt/command line and `<<< ... >>>` notes."""
    lines = (FIXTURES / name).read_text(encoding="utf-8").split("\n")
    if lines[0].startswith(PROMPTS):
        lines = lines[1:]
    return "\n".join(line for line in lines if not _is_note(line))


def version_samples() -> dict[str, tuple[str, str]]:
    """The multi-sample version fixture as {sample id: (command, output)}; every line is accounted for."""
    samples: dict[str, tuple[str, str]] = {}
    section = ""
    outputs: dict[str, list[str]] = {}

    def close() -> None:
        for command, lines in outputs.items():
            samples[f"{section} {command}"] = (command, "".join(line + "\n" for line in lines))
        outputs.clear()

    text = (FIXTURES / "esxcli_system_version_get_samples.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("## "):
            close()
            section = line[3:].split(" (")[0]
        elif line.startswith("VMware "):
            outputs.setdefault("vmware -v", []).append(line)
        elif line.startswith("   "):
            outputs.setdefault("esxcli system version get", []).append(line)
        elif line and not line.startswith(PROMPTS):
            raise AssertionError(f"unexpected fixture line {line!r}")
    close()
    return samples


def as_json(result: object) -> object:
    """A parser result as plain JSON data (tuples become lists)."""
    if isinstance(result, tuple):
        return [as_json(item) for item in result]
    assert dataclasses.is_dataclass(result) and not isinstance(result, type)
    return json.loads(json.dumps(dataclasses.asdict(result)))


def check_golden(fixture: str, results: dict[str, object]) -> None:
    """Compare {sample id: result} with tests/golden/<fixture>.json (rewrite it when regenerating)."""
    path = GOLDEN / f"{fixture}.json"
    actual = {key: as_json(value) for key, value in results.items()}
    if os.environ.get("ESXCAP_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert actual == json.loads(path.read_text(encoding="utf-8"))


# --- rendering: model -> the text the host prints ---


def render_vm_list(vms: Sequence[VmEntry], version: layouts.Version) -> str:
    rows = [[str(v.world_id), v.name, str(v.num_ports), ", ".join(v.networks)] for v in vms]
    return render_table(layouts.VM_LIST_COLUMNS, rows, layouts.table_style(version))


def render_nic_list(nics: Sequence[Nic], version: layouts.Version) -> str:
    columns = layouts.nic_list_columns(version)
    rows = []
    for n in nics:
        status = (
            [n.link_status]
            if columns is layouts.NIC_LIST_COLUMNS_55
            else [n.admin_status or "", n.link_status]
        )
        rows.append(
            [
                n.name,
                n.pci_device,
                n.driver,
                *status,
                str(n.speed_mbps),
                n.duplex,
                n.mac,
                str(n.mtu),
                n.description,
            ]
        )
    return render_table(columns, rows, layouts.table_style(version))


def render_ipv4_get(interfaces: Sequence[Ipv4Interface], version: layouts.Version) -> str:
    columns = layouts.ipv4_get_columns(version)
    rows = []
    for i in interfaces:
        gateway = [i.gateway or ""] if columns is layouts.IPV4_GET_COLUMNS else []
        dhcp = "true" if i.dhcp_dns else "false"
        rows.append([i.name, i.address, i.netmask, i.broadcast, i.address_type, *gateway, dhcp])
    return render_table(columns, rows, layouts.table_style(version))


def render_portgroups(groups: Sequence[PortGroup], version: layouts.Version) -> str:
    rows = [[g.name, g.vswitch, str(g.active_clients), str(g.vlan_id)] for g in groups]
    return render_table(layouts.PORTGROUP_LIST_COLUMNS, rows, layouts.table_style(version))


def _record(title: str | None, order: Sequence[str], values: dict[str, str]) -> Record:
    return Record(title, tuple((key, values[key]) for key in order))


def render_vm_ports(ports: Sequence[VmPort], empty_trailing_space: bool = True) -> str:
    records = [
        _record(
            None,
            layouts.VM_PORT_FIELDS,
            {
                "Port ID": str(p.port_id),
                "vSwitch": p.vswitch,
                "Portgroup": p.portgroup,
                "DVPort ID": p.dvport_id or "",
                "MAC Address": p.mac,
                "IP Address": p.ip or "0.0.0.0",
                "Team Uplink": p.team_uplink or "",
                "Uplink Port ID": "" if p.uplink_port_id is None else str(p.uplink_port_id),
                "Active Filters": p.active_filters or "",
            },
        )
        for p in ports
    ]
    return render_records(records, empty_trailing_space)


def render_ip_interfaces(interfaces: Sequence[IpInterface], version: layouts.Version) -> str:
    records = []
    for i in interfaces:
        values = {
            "Name": i.name,
            "MAC Address": i.mac,
            "Enabled": "true" if i.enabled else "false",
            "Portset": i.portset or "N/A",
            "Portgroup": i.portgroup or "N/A",
            "Netstack Instance": i.netstack or "N/A",
            "VDS Name": i.vds_name or "N/A",
            "VDS UUID": "N/A",
            "VDS Port": i.vds_port or "N/A",
            "VDS Connection": "-1",
            "Opaque Network ID": "N/A",
            "Opaque Network Type": "N/A",
            "External ID": "N/A",
            "MTU": str(i.mtu),
            "TSO MSS": "65535",
            "RXDispQueue Size": "1",
            "Port ID": str(i.port_id),
        }
        records.append(_record(i.name, layouts.ip_interface_fields(version), values))
    return render_records(records)


def render_standard_switches(switches: Sequence[StandardSwitch]) -> str:
    records = [
        _record(
            s.name,
            layouts.VSWITCH_FIELDS,
            {
                "Name": s.name,
                "Class": "cswitch",
                "Num Ports": str(s.num_ports),
                "Used Ports": str(s.used_ports),
                "Configured Ports": str(s.configured_ports),
                "MTU": str(s.mtu),
                "CDP Status": s.cdp_status,
                "Beacon Enabled": "false",
                "Beacon Interval": "1",
                "Beacon Threshold": "3",
                "Beacon Required By": "",
                "Uplinks": ", ".join(s.uplinks),
                "Portgroups": ", ".join(s.portgroups),
            },
        )
        for s in switches
    ]
    return render_records(records)


def render_dvs_list(switches: Sequence[DistributedSwitch]) -> str:
    records = []
    for s in switches:
        values = {
            "Name": s.name,
            "VDS ID": s.vds_id,
            "Class": "cswitch",
            "Num Ports": str(s.num_ports),
            "Used Ports": str(s.used_ports),
            "Configured Ports": str(s.configured_ports),
            "MTU": str(s.mtu),
            "CDP Status": s.cdp_status,
            "Beacon Timeout": "-1",
            "Uplinks": ", ".join(s.uplinks),
            "VMware Branded": "true",
            "DVPort": "",
        }
        ports = tuple(
            _record(
                None,
                layouts.DVPORT_FIELDS,
                {
                    "Client": p.client or "",
                    "DVPortgroup ID": p.dvportgroup_id,
                    "In Use": "true" if p.in_use else "false",
                    "Port ID": p.port_id,
                },
            )
            for p in s.dvports
        )
        base = _record(s.name, layouts.DVS_FIELDS, values)
        records.append(Record(base.title, base.fields, nested={"DVPort": ports}))
    return render_records(records)


def render_system_version(version: EsxiVersion) -> str:
    values = {
        "Product": version.product,
        "Version": version.version,
        "Build": f"Releasebuild-{version.build}",
        "Update": version.update or "0",
        "Maintenance": "0",
        "Patch": version.patch or "0",
    }
    fields = layouts.system_version_fields(version.version_tuple)
    return render_records([_record(None, fields, values)])


def render_net_stats(ports: Sequence[NetStatsPort]) -> str:
    return "".join(
        line + "\n" for line in [layouts.NET_STATS_HEADER, *map(layouts.format_net_stats_row, ports)]
    )
