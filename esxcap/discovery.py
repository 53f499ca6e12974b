"""Host discovery: what runs on a host and which switch port each thing sits on.

One SSH connection and two exec round trips per host: every static command in one batch, then every
`esxcli network vm port list -w ID` in a second. The result is cached per host for one command.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from esxcap import parsers
from esxcap.errors import RemoteCommandError
from esxcap.inventory import HostConfig
from esxcap.models import HostFacts, VmFacts, VmPort
from esxcap.remote import Batch, command_line
from esxcap.transport import Connection


async def run_batch(conn: Connection, host: HostConfig, commands: Sequence[Sequence[str]]) -> list[str]:
    """Run commands in one exec; return each one's output, or raise naming the command that failed."""
    batch = Batch(tuple(tuple(cmd) for cmd in commands), secrets.token_hex(8))
    result = await conn.run(batch.argv(), timeout=host.command_timeout)
    text = result.stdout.decode("utf-8", errors="replace")
    outputs = []
    for cmd, (output, status) in zip(batch.commands, batch.split(text), strict=True):
        if status != 0:
            shown = output.strip().splitlines()[-1:] or [result.stderr.decode("utf-8", "replace").strip()]
            reason = "did not finish" if status is None else f"exited with status {status}"
            raise RemoteCommandError(
                f"{host.name}: '{command_line(cmd)}' {reason}: {shown[0] if shown else 'no output'}",
                "check that this is an ESXi host and the account may run esxcli (root or an admin role)",
            )
        outputs.append(output)
    return outputs


async def discover(conn: Connection, host: HostConfig) -> HostFacts:
    """Discover one host over an open connection (two round trips)."""
    names = list(parsers.COMMANDS)
    texts = await run_batch(conn, host, [parsers.COMMANDS[n][0] for n in names])
    out = dict(zip(names, texts, strict=True))
    parsers.parse_vmware_vl(out["version"])
    vm_entries = parsers.parse_vm_list(out["vms"])
    port_lists: list[tuple[VmPort, ...]] = []
    if vm_entries:
        argvs = [parsers.vm_port_list_argv(vm.world_id) for vm in vm_entries]
        texts = await run_batch(conn, host, argvs)
        port_lists = [
            parsers.parse_vm_port_list(t, vm.world_id) for t, vm in zip(texts, vm_entries, strict=True)
        ]
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
    )
