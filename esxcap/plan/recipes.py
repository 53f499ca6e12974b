"""Recipes: the common questions as multi-host, multi-point capture plans (pure).

- vm-to-vm A B: A's vNIC, A's uplink, B's uplink, B's vNIC - each place once per direction, filtered on
  the two IPs (A -> B streams `--srcip A --dstip B`, B -> A the reverse), so the path view sees every
  packet of the conversation at each place in order. On one host: the two vNICs, plus the uplink when
  the traffic leaves the switch (other switch or other /24).
- vmk HOST vmkN: the vmknic both ways (what it sends and receives), plus every linked uplink of its
  switch both ways, filtered on its IPv4 address when it has one.
- dvfilter VM: each DVFilter of the VM's vNIC at PreDVFilter and PostDVFilter, and the host's Drop point.
- uplink HOST vmnicN [--vlan ID]: the uplink's receive and send points, filtered on the VLAN.

A recipe is a list of `Leg`s (one target request on one host, its direction or points, its filter);
`plan` turns them into the same `Stream`s `capture` runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from esxcap.errors import UsageError
from esxcap.esxi import validate
from esxcap.esxi.models import VmFacts, VmPort
from esxcap.esxi.pktcap import Direction, FlowFilter
from esxcap.plan.planner import CaptureOptions, HostView, Stream, TargetRequest, resolve, streams
from esxcap.plan.targets import vnic_label

NO_UPLINK = ("", "void")


@dataclass(frozen=True)
class Leg:
    """One place of a recipe: a target on a host, the direction (or exact points), the flow filter."""

    host: str
    request: TargetRequest
    direction: Direction = "both"
    points: tuple[str, ...] = ()
    filters: FlowFilter = field(default_factory=FlowFilter)


@dataclass(frozen=True)
class Recipe:
    """A named plan: `name` also names the merged file."""

    name: str
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class _Vm:
    view: HostView
    vm: VmFacts
    index: int

    @property
    def port(self) -> VmPort:
        return self.vm.ports[self.index]

    @property
    def request(self) -> TargetRequest:
        return TargetRequest("vm", self.vm.entry.name, str(self.index + 1))

    @property
    def ip(self) -> str:
        ip = self.port.ip
        if not ip or ip == "0.0.0.0":  # noqa: S104 - what esxcli prints when the guest reports no IP
            raise UsageError(
                f"VM '{self.vm.entry.name}' reports no IP address (VMware Tools not running?)",
                "give its address with --ip-a/--ip-b, or capture with `esxcap capture --vm ... --ip ...`",
            )
        return ip

    @property
    def uplink(self) -> str:
        uplink = self.port.team_uplink or ""
        if uplink in NO_UPLINK:
            raise UsageError(
                f"VM '{self.vm.entry.name}' on {self.view.name} has no active uplink",
                "check its portgroup's teaming and the uplinks' link state (esxcap discover)",
            )
        return uplink


def _view(views: Sequence[HostView], host: str) -> HostView:
    for view in views:
        if view.name == host:
            return view
    raise UsageError(f"no host {host} among {', '.join(v.name for v in views)}", "check the host name")


def _find_vm(views: Sequence[HostView], name: str, nic: str | None) -> _Vm:
    found = [(v, vm) for v in views for vm in v.facts.vms if vm.entry.name == name]
    if not found:
        found = [(v, vm) for v in views for vm in v.facts.vms if vm.entry.name.casefold() == name.casefold()]
    if len(found) != 1:
        where = ", ".join(v.name for v, _ in found) or "no host"
        raise UsageError(f"VM '{name}' found on {where}", "name the host with --host, or check `esxcap find`")
    view, vm = found[0]
    if not vm.ports:
        raise UsageError(f"VM '{vm.entry.name}' has no connected vNIC", "pick another VM")
    labels = [vnic_label(view.facts, vm, i) for i in range(len(vm.ports))]
    if nic is None:
        if len(vm.ports) > 1:
            raise UsageError(
                f"VM '{vm.entry.name}' has {len(vm.ports)} vNICs ({', '.join(labels)})",
                "say which vNIC: --nic-a/--nic-b for vm-to-vm, --nic for dvfilter (1 = first, or ethN)",
            )
        return _Vm(view, vm, 0)
    if nic.isdigit() and 1 <= int(nic) <= len(vm.ports):
        return _Vm(view, vm, int(nic) - 1)
    if nic in labels:
        return _Vm(view, vm, labels.index(nic))
    raise UsageError(f"VM '{vm.entry.name}' has no vNIC {nic}", f"its vNICs: {', '.join(labels)}")


def _both_ways(host: str, request: TargetRequest, a_ip: str, b_ip: str, a_side: bool) -> list[Leg]:
    """Two legs at one place: A -> B and B -> A, each in the direction it passes this place."""
    a_to_b = FlowFilter(srcip=a_ip, dstip=b_ip)
    b_to_a = FlowFilter(srcip=b_ip, dstip=a_ip)
    out: Direction = "out" if a_side else "in"
    inward: Direction = "in" if a_side else "out"
    return [Leg(host, request, out, filters=a_to_b), Leg(host, request, inward, filters=b_to_a)]


def _same_net(a: str, b: str) -> bool:
    return ipaddress.ip_network(f"{a}/24", strict=False) == ipaddress.ip_network(f"{b}/24", strict=False)


def vm_to_vm(
    views: Sequence[HostView],
    vm_a: str,
    vm_b: str,
    nic_a: str | None = None,
    nic_b: str | None = None,
    ip_a: str | None = None,
    ip_b: str | None = None,
) -> Recipe:
    """A's vNIC, A's uplink out, B's uplink in, B's vNIC (both directions each), filtered on both IPs
    (`ip_a`/`ip_b` stand in for a guest that reports none)."""
    a, b = _find_vm(views, vm_a, nic_a), _find_vm(views, vm_b, nic_b)
    if (a.view.name, a.vm.entry.name, a.index) == (b.view.name, b.vm.entry.name, b.index):
        raise UsageError(
            f"vm-to-vm needs two ends: A and B are both {a.vm.entry.name} on {a.view.name}",
            "name the VM it talks to as B (or the other vNIC with --nic-b)",
        )
    a_ip = validate.ipv4(ip_a, "--ip-a") if ip_a else a.ip
    b_ip = validate.ipv4(ip_b, "--ip-b") if ip_b else b.ip
    legs = _both_ways(a.view.name, a.request, a_ip, b_ip, True)
    if a.view.name != b.view.name:
        legs += _both_ways(a.view.name, TargetRequest("uplink", a.uplink), a_ip, b_ip, True)
        legs += _both_ways(b.view.name, TargetRequest("uplink", b.uplink), a_ip, b_ip, False)
    elif a.port.vswitch != b.port.vswitch or not _same_net(a_ip, b_ip):
        legs += _both_ways(a.view.name, TargetRequest("uplink", a.uplink), a_ip, b_ip, True)
        if b.uplink != a.uplink:
            legs += _both_ways(b.view.name, TargetRequest("uplink", b.uplink), a_ip, b_ip, False)
    legs += _both_ways(b.view.name, b.request, a_ip, b_ip, False)
    return Recipe(f"vm-to-vm-{a.vm.entry.name}-{b.vm.entry.name}", tuple(legs))


def vmk(views: Sequence[HostView], host: str, name: str) -> Recipe:
    """The vmknic both ways plus its switch's linked uplinks, filtered on its IPv4 address."""
    view = _view(views, host)
    facts = view.facts
    name = validate.vmk(name, "VMK")
    iface = next((i for i in facts.ip_interfaces if i.name == name), None)
    if iface is None:
        have = ", ".join(i.name for i in facts.ip_interfaces) or "none"
        raise UsageError(
            f"{host} has no {name}; its vmknics: {have}", f"name one of those: esxcap recipe vmk {host} VMK"
        )
    address = next((v.address for v in facts.ipv4 if v.name == name and v.address), None)
    filters = FlowFilter(ip=address) if address else FlowFilter()
    request = TargetRequest("vmk", name)
    legs = [Leg(host, request, "in", filters=filters), Leg(host, request, "out", filters=filters)]
    switch = iface.vds_name or iface.portset
    uplinks = [
        *(u for s in facts.standard_switches if s.name == switch for u in s.uplinks),
        *(u for s in facts.distributed_switches if s.name == switch for u in s.uplinks),
    ]
    linked = {n.name for n in facts.nics if n.link_status.lower() == "up"}
    for uplink in (u for u in uplinks if u in linked):
        up = TargetRequest("uplink", uplink)
        legs += [Leg(host, up, "in", filters=filters), Leg(host, up, "out", filters=filters)]
    return Recipe(f"vmk-{host}-{name}", tuple(legs))


def dvfilter(views: Sequence[HostView], vm_name: str, nic: str | None = None) -> Recipe:
    """Each DVFilter of the vNIC at PreDVFilter and PostDVFilter, and the host's Drop point."""
    vm = _find_vm(views, vm_name, nic)
    filters = [f.strip() for f in (vm.port.active_filters or "").split(",") if f.strip()]
    if not filters:
        raise UsageError(
            f"VM '{vm.vm.entry.name}' {vnic_label(vm.view.facts, vm.vm, vm.index)} has no DVFilter",
            "see Active Filters in `esxcli network vm port list` (esxcap discover)",
        )
    label = vnic_label(vm.view.facts, vm.vm, vm.index)
    host = vm.view.name
    legs = [
        Leg(
            host,
            TargetRequest("dvfilter", f"nic-{vm.vm.entry.world_id}-{label}-{name}"),
            points=("PreDVFilter", "PostDVFilter"),
        )
        for name in filters
    ]
    legs.append(Leg(host, TargetRequest("drop")))
    return Recipe(f"dvfilter-{vm.vm.entry.name}", tuple(legs))


def uplink(views: Sequence[HostView], host: str, vmnic: str, vlan: str | None = None) -> Recipe:
    """The uplink's receive and send points, on one VLAN when given."""
    view = _view(views, host)
    vmnic = validate.uplink(vmnic, "VMNIC")
    if not any(nic.name == vmnic for nic in view.facts.nics):
        have = ", ".join(nic.name for nic in view.facts.nics) or "none"
        raise UsageError(
            f"{host} has no {vmnic}; its uplinks: {have}",
            f"name one of those: esxcap recipe uplink {host} VMNIC",
        )
    filters = FlowFilter(vlan=vlan) if vlan is not None else FlowFilter()
    request = TargetRequest("uplink", vmnic)
    legs = (Leg(host, request, "in", filters=filters), Leg(host, request, "out", filters=filters))
    return Recipe(f"uplink-{host}-{vmnic}" + (f"-vlan{vlan}" if vlan is not None else ""), legs)


def plan(recipe: Recipe, views: Sequence[HostView], base: CaptureOptions) -> list[Stream]:
    """The recipe's streams, each leg with its own direction, points and filter (count, snaplen from
    `base`)."""
    caps = {v.name: v.caps for v in views}
    result: list[Stream] = []
    for leg in recipe.legs:
        targets = resolve([leg.request], [_view(views, leg.host)], True).targets
        options = replace(base, direction=leg.direction, points=leg.points, filters=leg.filters)
        result += streams(targets, options, caps)
    return result
