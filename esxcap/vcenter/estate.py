"""What esxcap reads from vCenter, as plain records, and finding a VM among them (no I/O)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from esxcap.errors import UsageError


@dataclass(frozen=True)
class VcNic:
    """A VM's network adapter as vCenter sees it: MAC, and the network it is backed by (a standard
    portgroup's name, a distributed portgroup's key and port key, or an opaque network's id)."""

    label: str
    mac: str
    network: str
    port_key: str | None = None


@dataclass(frozen=True)
class VcVm:
    name: str
    host: str | None
    power_state: str
    nics: tuple[VcNic, ...]


@dataclass(frozen=True)
class VcHost:
    name: str
    cluster: str | None
    connection_state: str


def locate(name: str, vms: Sequence[VcVm]) -> list[VcVm]:
    """The VMs `name` names (exact, then any case, then glob), powered on: where a capture must go."""
    for test in (
        lambda n: n == name,
        lambda n: n.casefold() == name.casefold(),
        lambda n: fnmatch.fnmatchcase(n.casefold(), name.casefold()),
    ):
        found = [vm for vm in vms if test(vm.name)]
        if found:
            break
    else:
        raise UsageError(
            f"vCenter knows no VM named '{name}'", "check the name (esxcap find --vcenter 'part*')"
        )
    running = [vm for vm in found if vm.power_state == "poweredOn" and vm.host]
    if not running:
        states = ", ".join(f"{vm.name}: {vm.power_state}" for vm in found)
        raise UsageError(f"no VM named '{name}' is running ({states})", "power it on, or pick another VM")
    return running


def hosts_running(text: str, vms: Sequence[VcVm]) -> list[str] | None:
    """The hosts running VMs that `text` names (by name tiers, or a vNIC's MAC); None when vCenter's
    answer cannot say (an IP address or prefix: vCenter is not asked for guest addresses)."""
    lowered = text.strip().lower().replace("-", ":")
    if any(c.isdigit() for c in lowered) and ("." in lowered or "/" in lowered) and ":" not in lowered:
        return None
    by_mac = {vm.host for vm in vms for nic in vm.nics if nic.mac.lower() == lowered and vm.host}
    if by_mac:
        return sorted(by_mac)
    try:
        return sorted({vm.host for vm in locate(text, vms) if vm.host})
    except UsageError:
        return []
