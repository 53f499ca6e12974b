"""Everything esxcap shows a person: tables and JSON on stdout, errors, warnings and progress on stderr.

The only module that uses rich. stdout carries data only (tables or one JSON document); diagnostics
go to stderr so `esxcap ... --json | jq` always sees clean JSON.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from esxcap.facts import uplinks, vmknics
from esxcap.models import HostFacts
from esxcap.targets import Match, vnic_label

_PIPE_WIDTH = 200
"""Tables written to a pipe or file are not folded to 80 columns (COLUMNS still wins)."""


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


_stdout = _console(stderr=False)
_stderr = _console(stderr=True)


def _cell(value: object) -> str:
    return "" if value is None else escape(str(value))


def print_json(document: Any) -> None:
    """One JSON document on stdout (non-ASCII kept readable)."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    _stderr.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        _stderr.print(f"  [dim]next:[/] {escape(hint)}")


def warning(message: str) -> None:
    _stderr.print(f"[yellow]warning:[/] {escape(message)}")


def info(message: str) -> None:
    _stderr.print(escape(message))


def _table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    table = Table(title=escape(title), title_justify="left", title_style="bold", show_lines=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def host_facts(name: str, address: str, facts: HostFacts) -> None:
    """The human view of one host's discovery: VMs, vmknics, uplinks, switches."""
    v = facts.version
    update = f" Update {v.update}" if v.update not in (None, "0") else ""
    _stdout.print(
        f"[bold]{escape(name)}[/] ({escape(address)}) — "
        f"ESXi {escape(v.version)}{escape(update)} build {escape(v.build)}"
    )
    uplink_of = {p.port_num: p.client_name for p in facts.netstats}
    vm_rows: list[Sequence[object]] = []
    for vm in facts.vms:
        for i, port in enumerate(vm.ports):
            vm_rows.append(
                (
                    vm.entry.name if i == 0 else "",
                    vnic_label(facts, vm, i),
                    port.port_id,
                    port.mac,
                    port.ip,
                    port.portgroup,
                    port.vswitch + (f" (DVPort {port.dvport_id})" if port.dvport_id else ""),
                    port.team_uplink or uplink_of.get(port.uplink_port_id or -1),
                )
            )
        if not vm.ports:
            vm_rows.append((vm.entry.name, "", None, None, None, None, None, None))
    _stdout.print(
        _table("VMs", ("VM", "NIC", "Port ID", "MAC", "IP", "Portgroup", "Switch", "Uplink"), vm_rows)
    )
    _stdout.print(
        _table(
            "VMkernel NICs",
            ("Name", "Port ID", "IPv4", "Netmask", "Portgroup", "Switch", "MTU", "MAC"),
            (
                (k.name, k.port_id, k.ipv4, k.netmask, k.portgroup, k.switch, k.mtu, k.mac)
                for k in vmknics(facts)
            ),
        )
    )
    _stdout.print(
        _table(
            "Uplinks",
            ("Name", "Port ID", "Driver", "Link", "Speed", "Duplex", "MAC", "MTU", "Description"),
            (
                (
                    u.nic.name,
                    u.port_id,
                    u.nic.driver,
                    u.nic.link_status,
                    u.nic.speed_mbps,
                    u.nic.duplex,
                    u.nic.mac,
                    u.nic.mtu,
                    u.nic.description,
                )
                for u in uplinks(facts)
            ),
        )
    )
    switch_rows: list[Sequence[object]] = []
    for s in facts.standard_switches:
        groups = [pg for pg in facts.portgroups if pg.vswitch == s.name]
        switch_rows.append((s.name, "standard", ", ".join(s.uplinks), "", "", s.mtu))
        switch_rows += [("", "", "", pg.name, pg.vlan_id, "") for pg in groups]
    for d in facts.distributed_switches:
        used = sorted({p.dvportgroup_id for p in d.dvports})
        switch_rows.append((d.name, "distributed", ", ".join(d.uplinks), "", "", d.mtu))
        switch_rows += [("", "", "", group, "", "") for group in used]
    _stdout.print(
        _table(
            "Switches and portgroups", ("Switch", "Type", "Uplinks", "Portgroup", "VLAN", "MTU"), switch_rows
        )
    )
    _stdout.print()


def host_errors(errors: Sequence[tuple[str, str, str | None]]) -> None:
    """Per-host failures after the hosts that worked: host, error, next step."""
    for host, message, hint in errors:
        error(f"{host}: {message}" if not message.startswith(host) else message, hint)


def matches(items: Sequence[Match]) -> None:
    _stdout.print(
        _table(
            "Matches",
            ("Host", "Kind", "Name", "NIC", "Port ID", "MAC", "IP", "Portgroup", "Matched by"),
            (
                (m.host, m.kind, m.name, m.nic, m.port_id, m.mac, m.ip, m.portgroup, m.matched_by)
                for m in items
            ),
        )
    )


def hosts(rows: Sequence[dict[str, Any]]) -> None:
    headers = ("Host", "Address", "Port", "User", "Groups", "Identity file", "Password from", "Known hosts")
    _stdout.print(
        _table(
            "Inventory",
            headers,
            (
                (
                    r["name"],
                    r["hostname"],
                    r["port"],
                    r["username"],
                    ", ".join(r["groups"]),
                    r["identity_file"],
                    f"${r['password_env']}" if r["password_env"] else None,
                    r["known_hosts"],
                )
                for r in rows
            ),
        )
    )
