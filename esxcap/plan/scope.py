"""What a capture needs discovered on each host (pure): the sections its targets read and the VMs whose
switch ports it needs. Real `esxcli` calls take 0.5-1 s each and every VM's port list is one more, so a
capture asks only for these; `discover` still asks for everything.

The first look: targets that need no esxcli to be located (a VM by its name, a switch port, a DVFilter,
a lif, drops) are planned from what one exec of fast commands shows (`vmware -vl`, `net-stats -l`,
`pktcap-uw -A`; `first_look_facts`), so pktcap-uw starts without waiting on esxcli. The esxcli sections
still come, concurrently, and complete the facts the capture records; `unconfirmed` names a target they
place elsewhere. Whatever the first look cannot settle (a name it does not show, two VMs of one name,
several vNICs and no --nic) is planned again from the complete facts, with the errors of a full
discovery.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from esxcap.esxi.facts import vms_in_net_stats
from esxcap.esxi.models import EsxiVersion, HostFacts, NetStatsPort, VmEntry
from esxcap.plan.planner import ALL_NICS, RequestKind, Target, TargetRequest
from esxcap.plan.targets import vnic_label

ALWAYS = ("version", "system_version", "netstats")
"""Every capture: the version (capabilities, labels) and `net-stats -l` (vNIC names, port checks)."""

SECTIONS: dict[RequestKind, tuple[str, ...]] = {
    "vm": ("vms",),
    "portgroup": ("vms", "portgroups"),
    "vmk": ("ip_interfaces", "ipv4"),
    "uplink": ("nics",),
    "switchport": (),
    "lif": (),
    "dvfilter": (),
    "drop": (),
}
"""The discovery sections (keys of `esxcap.esxi.parsers.COMMANDS`) each kind of target reads."""

FIRST_LOOK_KINDS = ("vm", "switchport", "lif", "dvfilter", "drop")
"""Targets the first look can locate: a VM from its `net-stats -l` ClientNames, the others need nothing."""
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class DiscoveryScope:
    """The sections to ask for and the VMs whose ports to list: those `vm_names` can resolve to (as the
    planner matches them), or every VM (`all_vms`: a portgroup is searched among all VM ports)."""

    sections: frozenset[str]
    vm_names: tuple[str, ...] = ()
    all_vms: bool = False
    first_look: bool = False
    """The targets may be planned from the first look (FIRST_LOOK_KINDS, none of them wide: a wide
    selection is shown and confirmed once, from the complete facts)."""

    def wanted(self, entries: Sequence[VmEntry]) -> list[VmEntry]:
        """The running VMs whose ports the targets may need: for each name the exact matches, else those
        of any case, else (a glob) those it matches; a superset of what the planner picks."""
        if self.all_vms:
            return list(entries)
        chosen: list[VmEntry] = []
        for name in self.vm_names:
            exact = [e for e in entries if e.name == name]
            any_case = [e for e in entries if e.name.casefold() == name.casefold()]
            globbed = [e for e in entries if fnmatch.fnmatchcase(e.name, name)] if _is_glob(name) else []
            chosen += exact or any_case or globbed
        return [e for e in entries if e in chosen]


def _is_glob(name: str) -> bool:
    return any(c in name for c in GLOB_CHARACTERS)


def scope_for(requests: Sequence[TargetRequest]) -> DiscoveryScope:
    """The discovery these targets need on every host searched."""
    sections = {*ALWAYS, *(s for r in requests for s in SECTIONS[r.kind])}
    names = tuple(dict.fromkeys(r.value or "" for r in requests if r.kind == "vm"))
    first_look = all(r.kind in FIRST_LOOK_KINDS and not r.many and r.nic != ALL_NICS for r in requests)
    return DiscoveryScope(
        frozenset(sections), names, any(r.kind == "portgroup" for r in requests), first_look
    )


def first_look_facts(
    version: EsxiVersion,
    netstats: tuple[NetStatsPort, ...],
    points: tuple[str, ...] | None,
    warnings: tuple[str, ...],
) -> HostFacts:
    """A host as the first look sees it: version (`vmware -vl`), switch ports, the VMs they show."""
    return HostFacts(
        version=version,
        vms=vms_in_net_stats(netstats),
        nics=(),
        ip_interfaces=(),
        ipv4=(),
        standard_switches=(),
        portgroups=(),
        distributed_switches=(),
        netstats=netstats,
        capture_points=points,
        warnings=warnings,
    )


def unconfirmed(targets: Sequence[Target], complete: HostFacts) -> list[str]:
    """What the complete facts of one host say against the first look: VM targets whose port is not
    that VM's vNIC there (a ClientName read wrongly); empty when all agree."""
    said = []
    for target in targets:
        if target.kind != "vm":
            continue
        owners = [
            f"{vm.entry.name} {vnic_label(complete, vm, index)}"
            for vm in complete.vms
            for index, port in enumerate(vm.ports)
            if port.port_id == target.selector.value
        ]
        if target.label not in owners:
            owner = f"is {owners[0]}" if owners else "belongs to no VM there"
            said.append(
                f"{target.host}: switch port {target.selector.value}, captured as {target.label} "
                f"(from net-stats -l), {owner} according to esxcli"
            )
    return said
