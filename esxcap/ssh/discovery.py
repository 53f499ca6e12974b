"""Host discovery: what runs on a host and which switch port each thing sits on.

One SSH connection and two exec round trips per host: every static command in one batch, then every
`esxcli network vm port list -w ID` in a second. The result is cached per host for one command.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from esxcap.errors import RemoteCommandError
from esxcap.esxi import parsers
from esxcap.esxi.capabilities import parse_available_points
from esxcap.esxi.models import HostFacts, VmFacts, VmPort
from esxcap.esxi.remote import Batch, command_line
from esxcap.inventory import HostConfig
from esxcap.ssh.transport import Connection

AVAILABLE_POINTS_ARGV = ("pktcap-uw", "-A")


async def run_batch(
    conn: Connection, host: HostConfig, commands: Sequence[Sequence[str]], optional: int = 0
) -> list[str | None]:
    """Run commands in one exec; each one's output. A failing command raises, naming it, except the last
    `optional` ones, whose output is then None."""
    batch = Batch(tuple(tuple(cmd) for cmd in commands), secrets.token_hex(8))
    result = await conn.run(batch.argv(), timeout=host.command_timeout)
    text = result.stdout.decode("utf-8", errors="replace")
    outputs: list[str | None] = []
    required = len(batch.commands) - optional
    for index, (cmd, (output, status)) in enumerate(zip(batch.commands, batch.split(text), strict=True)):
        if status == 0:
            outputs.append(output)
        elif index >= required:
            outputs.append(None)
        else:
            shown = output.strip().splitlines()[-1:] or [result.stderr.decode("utf-8", "replace").strip()]
            reason = "did not finish" if status is None else f"exited with status {status}"
            raise RemoteCommandError(
                f"{host.name}: '{command_line(cmd)}' {reason}: {shown[0] if shown else 'no output'}",
                "check that this is an ESXi host and the account may run esxcli (root or an admin role)",
            )
    return outputs


async def discover(conn: Connection, host: HostConfig, *, capture_points: bool = False) -> HostFacts:
    """Discover one host over an open connection (two round trips). With `capture_points`, the first
    batch also asks `pktcap-uw -A` (a capture needs it; a host that cannot answer gets None)."""
    names = list(parsers.COMMANDS)
    commands = [parsers.COMMANDS[n][0] for n in names]
    extra = [AVAILABLE_POINTS_ARGV] if capture_points else []
    texts = await run_batch(conn, host, [*commands, *extra], optional=len(extra))
    out = {name: text or "" for name, text in zip(names, texts, strict=False)}
    parsers.parse_vmware_vl(out["version"])
    vm_entries = parsers.parse_vm_list(out["vms"])
    port_lists: list[tuple[VmPort, ...]] = []
    if vm_entries:
        argvs = [parsers.vm_port_list_argv(vm.world_id) for vm in vm_entries]
        port_texts = await run_batch(conn, host, argvs)
        port_lists = [
            parsers.parse_vm_port_list(t or "", vm.world_id)
            for t, vm in zip(port_texts, vm_entries, strict=True)
        ]
    points_text = texts[len(names)] if capture_points else None
    return HostFacts(
        version=parsers.parse_system_version(out["system_version"]),
        vms=tuple(VmFacts(vm, ports) for vm, ports in zip(vm_entries, port_lists, strict=True)),
        nics=parsers.parse_nic_list(out["nics"]),
        ip_interfaces=parsers.parse_ip_interface_list(out["ip_interfaces"]),
        ipv4=parsers.parse_ipv4_get(out["ipv4"]),
        standard_switches=parsers.parse_standard_switches(out["standard_switches"]),
        portgroups=parsers.parse_portgroups(out["portgroups"]),
        distributed_switches=parsers.parse_dvs_list(out["distributed_switches"]),
        netstats=parsers.parse_net_stats(out["netstats"]),
        capture_points=parse_available_points(points_text) if points_text else None,
    )
