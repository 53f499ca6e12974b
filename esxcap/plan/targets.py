"""Finding what an admin names among discovered hosts: a VM by name, a vmknic or uplink by name, or
whatever owns a MAC, an IP or an address in a prefix.

Names match exactly first, then case-insensitively, then as a glob; every match is returned (a name on
two hosts is never silently the first one).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from esxcap.esxi.facts import uplinks, vmknics, vnic_client
from esxcap.esxi.models import HostFacts, VmFacts

MatchKind = Literal["vm", "vmknic", "uplink"]
_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


@dataclass(frozen=True)
class Match:
    """One thing that matched: where it runs and which switch port it sits on."""

    host: str
    kind: MatchKind
    name: str
    nic: str | None
    port_id: int | None
    mac: str | None
    ip: str | None
    portgroup: str | None
    matched_by: str


def normalize_mac(text: str) -> str | None:
    """`00-50-56-AB-CD-EF` or `00:50:56:ab:cd:ef` -> `00:50:56:ab:cd:ef`; None when text is no MAC."""
    lowered = text.strip().lower()
    return lowered.replace("-", ":") if _MAC_RE.match(lowered) else None


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def vnic_label(facts: HostFacts, vm: VmFacts, index: int) -> str:
    """The vNIC's name as net-stats shows it (`ethN` of `<VM>.ethN`, `eth0` for the bare VM name), else
    `eth<index>`."""
    port_id = vm.ports[index].port_id
    for port in facts.netstats:
        if port.port_num == port_id:
            client = vnic_client(port.client_name, (vm.entry.name,))
            if client is not None:
                return f"eth{client[1]}"
    return f"eth{index}"


def _vm_rows(host: str, facts: HostFacts, vm: VmFacts, how: str, only: int | None = None) -> list[Match]:
    if not vm.ports:
        return [Match(host, "vm", vm.entry.name, None, None, None, None, None, how)]
    return [
        Match(host, "vm", vm.entry.name, vnic_label(facts, vm, i), p.port_id, p.mac, p.ip, p.portgroup, how)
        for i, p in enumerate(vm.ports)
        if only is None or i == only
    ]


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def find(text: str, hosts: Sequence[tuple[str, HostFacts]]) -> list[Match]:
    """What `text` names on these hosts: a MAC, an IP or prefix, VM names (exact > any case > glob),
    else vmknic and uplink names."""
    mac = normalize_mac(text)
    if mac is not None:
        return _find_address(hosts, "mac", lambda m: m.lower() == mac, None)
    ip = _ip(text)
    if ip is not None:
        return _find_address(hosts, "ip", None, lambda a: _ip(a) == ip)
    network = _network(text)
    if network is not None:
        return _find_address(
            hosts,
            "prefix",
            None,
            lambda a: (found := _ip(a)) is not None and ipaddress.ip_address(found) in network,
        )
    tiers = (
        ("exact", lambda name: name == text),
        ("case-insensitive", lambda name: name.casefold() == text.casefold()),
        ("glob", lambda name: fnmatch.fnmatchcase(name.casefold(), text.casefold())),
    )
    for how, test in tiers:
        found = [
            row
            for host, facts in hosts
            for vm in facts.vms
            if test(vm.entry.name)
            for row in _vm_rows(host, facts, vm, how)
        ]
        if found:
            return found
    return _find_interfaces(hosts, text)


def _find_interfaces(hosts: Sequence[tuple[str, HostFacts]], name: str) -> list[Match]:
    """vmknics and uplinks by name (`vmk0`, `vmnic2`) on every host."""
    found: list[Match] = []
    for host, facts in hosts:
        found += [
            Match(host, "vmknic", v.name, None, v.port_id, v.mac, v.ipv4, v.portgroup, "name")
            for v in vmknics(facts)
            if v.name == name
        ]
        found += [
            Match(host, "uplink", u.nic.name, None, u.port_id, u.nic.mac, None, None, "name")
            for u in uplinks(facts)
            if u.nic.name == name
        ]
    return found


def _find_address(
    hosts: Sequence[tuple[str, HostFacts]],
    how: str,
    mac: Callable[[str], bool] | None,
    ip: Callable[[str], bool] | None,
) -> list[Match]:
    found: list[Match] = []
    for host, facts in hosts:
        for vm in facts.vms:
            for i, port in enumerate(vm.ports):
                if (mac and mac(port.mac)) or (ip and port.ip and ip(port.ip)):
                    found += _vm_rows(host, facts, vm, how, only=i)
        for vmk in vmknics(facts):
            if (mac and mac(vmk.mac)) or (ip and vmk.ipv4 and ip(vmk.ipv4)):
                found.append(
                    Match(host, "vmknic", vmk.name, None, vmk.port_id, vmk.mac, vmk.ipv4, vmk.portgroup, how)
                )
        for up in uplinks(facts):
            if mac and mac(up.nic.mac):
                found.append(
                    Match(host, "uplink", up.nic.name, None, up.port_id, up.nic.mac, None, None, how)
                )
    return found
