"""What a capture needs discovered on each host (pure): the sections its targets read and the VMs whose
switch ports it needs. Real `esxcli` calls take 0.5-1 s each and every VM's port list is one more, so a
capture asks only for these; `discover` still asks for everything.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from esxcap.esxi.models import VmEntry
from esxcap.plan.planner import RequestKind, TargetRequest

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

GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class DiscoveryScope:
    """The sections to ask for and the VMs whose ports to list: those `vm_names` can resolve to (as the
    planner matches them), or every VM (`all_vms`: a portgroup is searched among all VM ports)."""

    sections: frozenset[str]
    vm_names: tuple[str, ...] = ()
    all_vms: bool = False

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
    return DiscoveryScope(frozenset(sections), names, any(r.kind == "portgroup" for r in requests))
