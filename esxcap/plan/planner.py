"""From what the admin asked for to the exact pktcap-uw runs (pure).

A `TargetRequest` ("VM web01's second NIC", "vmk1", "vmnic2") is resolved against discovered host facts
into `Target`s (host + pktcap-uw selector + labels), and each target into `Stream`s: one pktcap-uw argv
each, with the interface name and description the capture file will carry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from esxcap.errors import UsageError
from esxcap.esxi import validate
from esxcap.esxi.capabilities import Capabilities
from esxcap.esxi.directions import PacketDirection, direction_note, packet_direction
from esxcap.esxi.models import HostFacts, VmFacts
from esxcap.esxi.pktcap import (
    CaptureSpec,
    Direction,
    FlowFilter,
    Selector,
    StreamPlan,
    build_argv,
    points_for,
)
from esxcap.plan.targets import vnic_label

RequestKind = Literal["vm", "portgroup", "vmk", "uplink", "switchport", "lif", "dvfilter", "drop"]
SINGLE_HOST_KINDS = ("vmk", "uplink", "switchport", "lif", "dvfilter", "drop")


@dataclass(frozen=True)
class TargetRequest:
    """One target as typed: `--vm web01 --nic 2`, `--vmk vmk1`, `--uplink vmnic2`, `--drop`..."""

    kind: RequestKind
    value: str | None = None
    nic: str | None = None
    mac: str | None = None
    many: bool = False
    """A VM glob may match several VMs (`--many`); else it must name one."""

    @property
    def shown(self) -> str:
        return f"--{self.kind}" + (f" {self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class HostView:
    """What planning needs of one host: its name, facts and capture capabilities."""

    name: str
    facts: HostFacts
    caps: Capabilities
    complete: Awaitable[HostFacts] | None = None
    """When `facts` are a capture's first look (`esxcap.plan.scope`): the complete facts, still coming
    (an asyncio task, awaited as often as needed)."""


@dataclass(frozen=True)
class Target:
    """A resolved target on one host."""

    host: str
    kind: RequestKind
    selector: Selector
    label: str
    description: str


@dataclass(frozen=True)
class CaptureOptions:
    """What applies to every stream: direction, points, stage, count, snaplen, flow filters."""

    direction: Direction = "both"
    points: tuple[str, ...] = ()
    stage: str | None = None
    count: int | None = None
    snaplen: int = 0
    filters: FlowFilter = field(default_factory=FlowFilter)


@dataclass(frozen=True)
class Stream:
    """One pktcap-uw run: where, what, and how its packets are labelled in the capture file."""

    target: Target
    point_label: str
    direction: str
    argv: tuple[str, ...]
    packet_direction: PacketDirection | None = None
    """The direction flag every packet gets (esxcap.esxi.directions); None: none."""
    direction_note: str = ""
    """What the interface description says about direction (the flag, or that directions are mixed)."""

    @property
    def interface_name(self) -> str:
        return f"{self.target.host}:{self.target.label}:{self.point_label}:{self.direction}"

    @property
    def description(self) -> str:
        """The interface description: the target's, then the direction note."""
        return "; ".join(filter(None, (self.target.description, self.direction_note)))


def _version_text(view: HostView) -> str:
    v = view.facts.version
    return f"ESXi {v.version} build {v.build}"


def _pick_nic(request: TargetRequest, host: str, vm: VmFacts, facts: HostFacts) -> int:
    labels = [vnic_label(facts, vm, i) for i in range(len(vm.ports))]
    listed = ", ".join(
        f"{i + 1}: {lab} {p.mac} ({p.portgroup})"
        for i, (lab, p) in enumerate(zip(labels, vm.ports, strict=True))
    )
    if not vm.ports:
        raise UsageError(f"VM '{vm.entry.name}' on {host} has no connected vNIC", "pick another target")
    if request.mac is not None:
        mac = validate.mac(request.mac, "--mac")
        for i, port in enumerate(vm.ports):
            if port.mac.lower() == mac:
                return i
        raise UsageError(f"VM '{vm.entry.name}' on {host} has no vNIC with MAC {mac}", f"its vNICs: {listed}")
    if request.nic is not None:
        text = request.nic.strip()
        if text.isdigit() and 1 <= int(text) <= len(vm.ports):
            return int(text) - 1
        if text in labels:
            return labels.index(text)
        raise UsageError(
            f"--nic {text}: VM '{vm.entry.name}' has {len(vm.ports)} vNIC(s)",
            f"use --nic 1..{len(vm.ports)}, an ethN name or all; its vNICs: {listed}",
        )
    if len(vm.ports) > 1:
        raise UsageError(
            f"VM '{vm.entry.name}' on {host} has {len(vm.ports)} vNICs; which one?",
            f"add --nic N (or --nic all) or --mac MAC; its vNICs: {listed}",
        )
    return 0


ALL_NICS = "all"
"""`--nic all`: every vNIC of the VM."""


def _find_vm(request: TargetRequest, views: Sequence[HostView]) -> list[Target]:
    name = request.value or ""
    found = [(v, vm) for v in views for vm in v.facts.vms if vm.entry.name == name]
    if not found:
        found = [(v, vm) for v in views for vm in v.facts.vms if vm.entry.name.casefold() == name.casefold()]
    if not found and any(c in name for c in "*?["):
        found = [(v, vm) for v in views for vm in v.facts.vms if fnmatch.fnmatchcase(vm.entry.name, name)]
        if len(found) > 1 and not request.many:
            where = ", ".join(f"'{vm.entry.name}' on {v.name}" for v, vm in found)
            raise UsageError(
                f"--vm {name} matches {len(found)} VMs: {where}", "name exactly one VM, or add --many for all"
            )
        return [t for view, vm in found for t in _vm_targets(request, view, vm)]
    if not found:
        known = ", ".join(sorted({vm.entry.name for v in views for vm in v.facts.vms})) or "none"
        searched = ", ".join(v.name for v in views)
        raise UsageError(
            f"VM '{name}' not found on {searched}; running VMs there: {known}",
            "check the name with `esxcap find`, or name the host it runs on with --host",
        )
    if len(found) > 1:
        where = ", ".join(f"'{vm.entry.name}' on {v.name}" for v, vm in found)
        raise UsageError(f"VM name '{name}' is ambiguous: {where}", "name the host with --host HOST")
    view, vm = found[0]
    return _vm_targets(request, view, vm)


def _vm_targets(request: TargetRequest, view: HostView, vm: VmFacts) -> list[Target]:
    """The VM's vNIC the request picks, or every vNIC (`--nic all`, or a VM of several found by glob
    without --nic)."""
    every = request.nic == ALL_NICS or (request.many and request.nic is None and request.mac is None)
    if every and not vm.ports:
        return []
    indexes = range(len(vm.ports)) if every else [_pick_nic(request, view.name, vm, view.facts)]
    return [_vm_target(view, vm, index) for index in indexes]


def _vm_target(view: HostView, vm: VmFacts, index: int) -> Target:
    port = vm.ports[index]
    nic = vnic_label(view.facts, vm, index)
    return Target(
        host=view.name,
        kind="vm",
        selector=Selector("switchport", port.port_id),
        label=f"{vm.entry.name} {nic}",
        description=(
            f"VM {vm.entry.name} {nic} {port.mac}, "
            + (f"portgroup {port.portgroup}, " if port.portgroup else "")
            + f"switch {port.vswitch}, port {port.port_id}, {_version_text(view)}"
        ),
    )


def _in_portgroup(request: TargetRequest, views: Sequence[HostView]) -> list[Target]:
    """Every VM port in the portgroup named (or, for a number no portgroup is named, on that VLAN)."""
    wanted = request.value or ""
    named = any(p.portgroup == wanted for v in views for vm in v.facts.vms for p in vm.ports)
    if not named and not wanted.isdigit():
        known = sorted({p.portgroup for v in views for vm in v.facts.vms for p in vm.ports})
        raise UsageError(
            f"no VM port in portgroup '{wanted}' on {', '.join(v.name for v in views)}",
            f"portgroups with VMs: {', '.join(known) or 'none'}; or give a VLAN ID",
        )
    targets: list[Target] = []
    for view in views:
        on_vlan = {pg.name for pg in view.facts.portgroups if not named and str(pg.vlan_id) == wanted}
        for vm in view.facts.vms:
            for index, port in enumerate(vm.ports):
                if port.portgroup == wanted or port.portgroup in on_vlan:
                    targets.append(_vm_target(view, vm, index))
    if not targets:
        raise UsageError(f"no VM port on VLAN {wanted}", "see portgroups and VLANs with `esxcap discover`")
    return targets


def _on_host(request: TargetRequest, view: HostView) -> Target:
    facts = view.facts
    value = request.value
    if request.kind == "vmk":
        name = validate.vmk(value or "", "--vmk")
        iface = next((i for i in facts.ip_interfaces if i.name == name), None)
        if iface is None:
            have = ", ".join(i.name for i in facts.ip_interfaces) or "none"
            raise UsageError(
                f"{view.name} has no {name}; its vmknics: {have}", "pick one of those with --vmk"
            )
        pg = iface.portgroup or iface.vds_name or iface.portset
        return Target(
            view.name,
            "vmk",
            Selector("vmk", name),
            name,
            f"vmknic {name} {iface.mac}, portgroup {pg}, {_version_text(view)}",
        )
    if request.kind == "uplink":
        name = validate.uplink(value or "", "--uplink")
        nic = next((n for n in facts.nics if n.name == name), None)
        if nic is None:
            have = ", ".join(n.name for n in facts.nics) or "none"
            raise UsageError(
                f"{view.name} has no {name}; its uplinks: {have}", "pick one of those with --uplink"
            )
        return Target(
            view.name,
            "uplink",
            Selector("uplink", name),
            name,
            f"uplink {name} {nic.driver} {nic.speed_mbps} Mb/s link {nic.link_status}, {_version_text(view)}",
        )
    if request.kind == "switchport":
        port_id = validate.switchport(value or "", "--switchport")
        port = next((p for p in facts.netstats if p.port_num == port_id), None)
        if port is None:
            raise UsageError(
                f"{view.name} has no switch port {port_id}",
                "see `esxcap discover` for port IDs (net-stats -l)",
            )
        return Target(
            view.name,
            "switchport",
            Selector("switchport", port_id),
            f"port {port_id}",
            f"switch port {port_id} ({port.client_name} on {port.switch_name}), {_version_text(view)}",
        )
    if request.kind == "lif":
        lif = validate.lif_id(value or "", "--lif")
        return Target(
            view.name, "lif", Selector("lifID", lif), f"lif {lif}", f"VDR lif {lif}, {_version_text(view)}"
        )
    if request.kind == "dvfilter":
        name = validate.dvfilter(value or "", "--dvfilter")
        return Target(
            view.name, "dvfilter", Selector("dvfilter", name), name, f"DVFilter {name}, {_version_text(view)}"
        )
    return Target(view.name, "drop", Selector("none"), "drop", f"dropped packets, {_version_text(view)}")


@dataclass(frozen=True)
class Resolved:
    """The targets of a request, each once, and notes on what was left out (duplicates, hosts that
    lack a host-bound target)."""

    targets: list[Target]
    notes: list[str]


def resolve(requests: Sequence[TargetRequest], views: Sequence[HostView], explicit_hosts: bool) -> Resolved:
    """Every target on its host. VMs are searched on all given hosts; other targets apply to each host,
    which must then have been chosen explicitly (--host, --group or --all-hosts) unless there is one; a
    host that lacks such a target is left out with a note, unless every host lacks it."""
    if not requests:
        raise UsageError(
            "nothing to capture",
            "name a target: --vm, --vmk, --uplink, --switchport, --dvfilter, --lif or --drop",
        )
    targets: list[Target] = []
    notes: list[str] = []
    for request in requests:
        if request.kind == "vm":
            targets += _find_vm(request, views)
            continue
        if request.kind == "portgroup":
            targets += _in_portgroup(request, views)
            continue
        if len(views) > 1 and not explicit_hosts:
            raise UsageError(
                f"{request.shown}: which host? the inventory has {len(views)}",
                "add --host HOST, --group GROUP, or --all-hosts to capture on every host",
            )
        found: list[Target] = []
        missing: list[UsageError] = []
        for view in views:
            try:
                found.append(_on_host(request, view))
            except UsageError as error:
                missing.append(error)
        if not found:
            raise missing[0]
        targets += found
        notes += [f"{error.message}: captured where it exists" for error in missing]
    seen: set[tuple[str, Selector]] = set()
    kept: list[Target] = []
    for target in targets:
        if (target.host, target.selector) in seen:
            notes.append(f"{target.label} on {target.host} was asked for twice: captured once")
            continue
        seen.add((target.host, target.selector))
        kept.append(target)
    return Resolved(kept, notes)


@dataclass(frozen=True)
class _Run:
    points: tuple[str, ...]
    dir: int | None
    point_label: str
    direction: str


def _from_plans(plans: Sequence[StreamPlan]) -> tuple[_Run, ...]:
    return tuple(_Run(p.points, p.dir, p.label, p.direction) for p in plans)


def _runs(target: Target, options: CaptureOptions, caps: Capabilities) -> tuple[_Run, ...]:
    if options.points:
        return tuple(_Run((p,), None, p, "point") for p in options.points)
    if target.kind == "vm":
        return _from_plans(points_for("vnic", options.direction, caps))
    if target.kind == "vmk":
        return _from_plans(points_for("vmk", options.direction, caps))
    if target.kind == "uplink":
        return _from_plans(points_for("uplink", options.direction, caps))
    if target.kind == "switchport":
        return _from_plans(points_for("switchport", options.direction, caps))
    if target.kind == "dvfilter":
        if options.stage is not None:
            return (_Run((), None, f"stage-{options.stage}", "stage"),)
        if caps.multi_point:
            return (_Run(("PreDVFilter", "PostDVFilter"), None, "PreDVFilter,PostDVFilter", "both"),)
        return tuple(_Run((p,), None, p, "point") for p in ("PreDVFilter", "PostDVFilter"))
    if target.kind == "drop":
        return (_Run(("Drop",), None, "Drop", "drop"),)
    raise UsageError(
        f"--lif {target.label}: name the VDR points", "add --point VdrRxLeaf (or VdrTxLeaf, ...)"
    )


def streams(
    targets: Sequence[Target], options: CaptureOptions, caps_by_host: dict[str, Capabilities]
) -> list[Stream]:
    """The pktcap-uw runs for every target (validated and checked against each host's capabilities)."""
    result = []
    for target in targets:
        caps = caps_by_host[target.host]
        for run in _runs(target, options, caps):
            spec = CaptureSpec(
                selector=target.selector,
                points=run.points,
                dir=run.dir,
                stage=validate.stage_code(options.stage, "--stage") if options.stage is not None else None,
                count=options.count,
                snaplen=options.snaplen,
                filters=options.filters,
            )
            argv = build_argv(spec, caps, target.host)
            result.append(
                Stream(
                    target,
                    run.point_label,
                    run.direction,
                    tuple(argv),
                    packet_direction(run.points, run.dir),
                    direction_note(run.points, run.dir),
                )
            )
    return result
