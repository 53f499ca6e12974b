"""Host discovery: what runs on a host and which switch port each thing sits on.

One SSH connection and two exec round trips per host: every static command in one batch, then every
`esxcli network vm port list -w ID` in a second. The result is cached per host for one command.
A capture asks less (`scope`): only the sections its targets need and the wanted VMs' ports, each esxcli
call on its own exec channel at once (esxcli takes 0.5-1 s per call on real hosts), and may start from its
first look (the fast commands' facts, handed over before any esxcli answers); `fill_sections` then asks
what the scope left out, for the capture's record.

A host that prints something unexpected is still discovered (REFERENCE §9, DESIGN "Parsing"): stray
message lines and refused rows are skipped (esxcap.esxi.parsers.lenient), a section that stays
unreadable is left empty, a VM that powered off between `vm list` and its `port list` is left out, and
`pktcap-uw -A` is read leniently. Each of these is a warning in `HostFacts.warnings`. Only an unreadable
ESXi version fails the host: nothing about its pktcap-uw could be known.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from esxcap.errors import ParseError, RemoteCommandError
from esxcap.esxi import parsers
from esxcap.esxi.models import HostFacts, NetStatsPort, VmEntry, VmFacts, VmPort
from esxcap.esxi.parsers.lenient import read_leniently
from esxcap.esxi.pktcap_output import read_available_points
from esxcap.esxi.remote import Batch, command_line
from esxcap.inventory import HostConfig
from esxcap.plan.scope import DiscoveryScope, first_look_facts
from esxcap.ssh.transport import Connection

AVAILABLE_POINTS_ARGV = ("pktcap-uw", "-A")
CHANNELS = 4
"""Exec channels a scoped discovery keeps open at once (sshd's MaxSessions is 10 by default)."""
T = TypeVar("T")

# Leading lines of each section that are its own heading (never skipped as a refused row).
_HEADING_LINES = {"vms": 2, "nics": 2, "ipv4": 2, "portgroups": 2, "netstats": 1}
# Sections the host cannot be used without: unreadable means the host fails.
_REQUIRED = ("version", "system_version")


async def run_sections(
    conn: Connection, host: HostConfig, commands: Sequence[Sequence[str]]
) -> list[tuple[str, int | None]]:
    """Run commands in one exec; each one's output (stderr folded in) and exit status (None: never ran)."""
    batch = Batch(tuple(tuple(cmd) for cmd in commands), secrets.token_hex(8))
    result = await conn.run(batch.argv(), timeout=host.command_timeout)
    return batch.split(result.stdout.decode("utf-8", errors="replace"))


async def run_concurrently(
    conn: Connection,
    host: HostConfig,
    commands: Sequence[Sequence[str]],
    fast_done: Callable[[dict[int, tuple[str, int | None]]], None] | None = None,
) -> list[tuple[str, int | None]]:
    """Like `run_sections`, but every esxcli command in its own exec, at most CHANNELS at once, and the
    other (fast) commands together in one, asked first; `fast_done` gets their outputs (by index) as
    soon as they are in."""
    limit = asyncio.Semaphore(CHANNELS)
    fast = [i for i, cmd in enumerate(commands) if cmd[0] != "esxcli"]
    groups = ([fast] if fast else []) + [[i] for i in range(len(commands)) if i not in fast]

    async def one(group: list[int]) -> list[tuple[str, int | None]]:
        async with limit:
            outputs = await run_sections(conn, host, [commands[i] for i in group])
        if group is fast and fast_done is not None:
            fast_done(dict(zip(group, outputs, strict=True)))
        return outputs

    results: list[tuple[str, int | None]] = [("", None)] * len(commands)
    for group, outputs in zip(groups, await asyncio.gather(*(one(g) for g in groups)), strict=True):
        for index, output in zip(group, outputs, strict=True):
            results[index] = output
    return results


def failure(host: HostConfig, argv: Sequence[str], output: str, status: int | None) -> str:
    """`HOST: 'COMMAND' exited with status N: LAST LINE` for a command that failed."""
    shown = output.strip().splitlines()[-1:]
    reason = "did not finish" if status is None else f"exited with status {status}"
    return f"{host.name}: '{command_line(argv)}' {reason}: {shown[0] if shown else 'no output'}"


async def run_batch(
    conn: Connection, host: HostConfig, commands: Sequence[Sequence[str]], optional: int = 0
) -> list[str | None]:
    """Run commands in one exec; each one's output. A failing command raises, naming it, except the last
    `optional` ones, whose output is then None."""
    sections = await run_sections(conn, host, commands)
    outputs: list[str | None] = []
    required = len(commands) - optional
    for index, (cmd, (output, status)) in enumerate(zip(commands, sections, strict=True)):
        if status == 0:
            outputs.append(output)
        elif index >= required:
            outputs.append(None)
        else:
            raise RemoteCommandError(
                failure(host, cmd, output, status),
                "check that this is an ESXi host and the account may run esxcli (root or an admin role)",
            )
    return outputs


class _Reader:
    """Reads one host's sections leniently, gathering what it skipped as warnings."""

    def __init__(self, host: HostConfig) -> None:
        self.host = host
        self.warnings: list[str] = []

    def section(self, name: str, argv: Sequence[str], text: str, parser: Callable[[str], T], empty: T) -> T:
        command = command_line(argv)
        try:
            value, skipped = read_leniently(text, parser, heading_lines=_HEADING_LINES.get(name, 0))
        except ParseError as exc:
            if name in _REQUIRED:
                raise
            self.warnings.append(f"{self.host.name}: '{command}' unreadable, left out: {exc.message}")
            return empty
        self.warnings += [f"{self.host.name}: '{command}': {s}" for s in skipped]
        return value

    def ports(self, vm: VmEntry, output: str, status: int | None) -> tuple[VmPort, ...] | None:
        """The VM's ports, or None (with a warning) when its port list failed: the VM is left out."""
        argv = parsers.vm_port_list_argv(vm.world_id)
        if status != 0:
            self.warnings.append(
                f"{failure(self.host, argv, output, status)}; VM '{vm.name}' left out "
                "(it may have powered off or moved since 'esxcli network vm list')"
            )
            return None
        none: tuple[VmPort, ...] = ()
        return self.section(
            "vm_ports", argv, output, partial(parsers.parse_vm_port_list, world_id=vm.world_id), none
        )


async def discover(
    conn: Connection,
    host: HostConfig,
    *,
    capture_points: bool = False,
    scope: DiscoveryScope | None = None,
    first_look: Callable[[HostFacts], None] | None = None,
) -> HostFacts:
    """Discover one host over an open connection (two round trips). With `capture_points`, the first
    batch also asks `pktcap-uw -A` (a capture needs it; a host that cannot answer gets None). With a
    `scope`, only its sections (the others come back empty) and its VMs' ports (the other VMs come back
    without ports), the commands of each round on concurrent execs; then `first_look` (if given) gets
    the facts of the fast commands as soon as they are in (`esxcap.plan.scope.first_look_facts`), unless
    they cannot be read."""
    names = [n for n in parsers.COMMANDS if scope is None or n in scope.sections]
    commands = [parsers.COMMANDS[n][0] for n in names]
    extra = [AVAILABLE_POINTS_ARGV] if capture_points else []

    def fast_done(outputs: dict[int, tuple[str, int | None]]) -> None:
        facts = _first_look(host, dict(zip(names, commands, strict=True)), outputs, len(names))
        if facts is not None and first_look is not None:
            first_look(facts)

    if scope is None:
        sections = await run_sections(conn, host, [*commands, *extra])
    else:
        sections = await run_concurrently(conn, host, [*commands, *extra], fast_done if first_look else None)
    by_name = dict(zip(names, zip(commands, sections, strict=False), strict=False))
    read = _Reader(host)

    def get(name: str, parser: Callable[[str], T], empty: T) -> T:
        if name not in by_name:
            return empty
        argv, (output, status) = by_name[name]
        if status == 0:
            return read.section(name, argv, output, parser, empty)
        if name in _REQUIRED:
            raise RemoteCommandError(
                failure(host, argv, output, status),
                "check that this is an ESXi host and the account may run esxcli (root or an admin role)",
            )
        read.warnings.append(f"{failure(host, argv, output, status)}; left out")
        return empty

    get("version", parsers.parse_vmware_vl, None)
    version = get("system_version", parsers.parse_system_version, None)
    assert version is not None  # a required section raises instead of coming back empty
    vms = await _vms(conn, host, get("vms", parsers.parse_vm_list, ()), read, scope)
    points = None
    if capture_points:
        output, status = sections[len(names)]
        listing = read_available_points(output if status == 0 else "")
        points = listing.points or None
        read.warnings += listing.warnings(host.name)
    return HostFacts(
        version=version,
        vms=vms,
        nics=get("nics", parsers.parse_nic_list, ()),
        ip_interfaces=get("ip_interfaces", parsers.parse_ip_interface_list, ()),
        ipv4=get("ipv4", parsers.parse_ipv4_get, ()),
        standard_switches=get("standard_switches", parsers.parse_standard_switches, ()),
        portgroups=get("portgroups", parsers.parse_portgroups, ()),
        distributed_switches=get("distributed_switches", parsers.parse_dvs_list, ()),
        netstats=get("netstats", parsers.parse_net_stats, ()),
        capture_points=points,
        warnings=tuple(read.warnings),
    )


async def fill_sections(conn: Connection, host: HostConfig, facts: HostFacts) -> HostFacts:
    """`facts` of a scoped discovery with the static sections it left empty asked now (each esxcli on its
    own exec, CHANNELS at once), so that a capture records the whole host; VMs listed only now come
    without ports. A section that fails or cannot be read stays empty, with a warning."""
    fields = {f.name for f in dataclasses.fields(HostFacts)}
    names = [n for n in parsers.COMMANDS if n in fields and not getattr(facts, n)]
    commands = [parsers.COMMANDS[n][0] for n in names]
    read = _Reader(host)
    filled: dict[str, Any] = {}
    outputs = await run_concurrently(conn, host, commands) if commands else []
    for name, argv, (output, status) in zip(names, commands, outputs, strict=True):
        if status != 0:
            read.warnings.append(f"{failure(host, argv, output, status)}; left out")
            continue
        none: object = ()
        value = read.section(name, argv, output, parsers.COMMANDS[name][1], none)
        listed = cast("tuple[VmEntry, ...]", value) if name == "vms" else ()
        filled[name] = tuple(VmFacts(vm, ()) for vm in listed) if name == "vms" else value
    return dataclasses.replace(facts, **filled, warnings=(*facts.warnings, *read.warnings))


def _first_look(
    host: HostConfig,
    commands: dict[str, tuple[str, ...]],
    outputs: dict[int, tuple[str, int | None]],
    points_at: int,
) -> HostFacts | None:
    """The first look's facts from the fast commands' outputs (by index into `commands`, `pktcap-uw -A`
    at `points_at`); None when the version or the switch ports are missing or unreadable."""
    by_name = {name: outputs[i] for i, name in enumerate(commands) if i in outputs}
    version, netstats = by_name.get("version"), by_name.get("netstats")
    if version is None or netstats is None or version[1] != 0 or netstats[1] != 0:
        return None
    read = _Reader(host)
    try:
        esxi = parsers.parse_vmware_vl(version[0])
        none: tuple[NetStatsPort, ...] = ()
        ports = read.section("netstats", commands["netstats"], netstats[0], parsers.parse_net_stats, none)
    except ParseError:
        return None
    output, status = outputs.get(points_at, ("", None))
    listing = read_available_points(output if status == 0 else "")
    return first_look_facts(esxi, ports, listing.points or None, tuple(read.warnings))


async def _vms(
    conn: Connection,
    host: HostConfig,
    entries: tuple[VmEntry, ...],
    read: _Reader,
    scope: DiscoveryScope | None,
) -> tuple[VmFacts, ...]:
    """Every listed VM with its ports (the second round trip); VMs whose port list failed are left out.
    With a scope, only the VMs it wants are asked (at once), the others kept without ports."""
    wanted = list(entries) if scope is None else scope.wanted(entries)
    argvs = [parsers.vm_port_list_argv(vm.world_id) for vm in wanted]
    run = run_sections if scope is None else run_concurrently
    listed = dict(
        zip((vm.world_id for vm in wanted), await run(conn, host, argvs) if argvs else [], strict=True)
    )
    found = []
    for vm in entries:
        if vm.world_id not in listed:
            found.append(VmFacts(vm, ()))
            continue
        ports = read.ports(vm, *listed[vm.world_id])
        if ports is not None:
            found.append(VmFacts(vm, ports))
    return tuple(found)
