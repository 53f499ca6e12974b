"""Switch-port numbering: which port every uplink, vmknic and running vNIC gets, deterministically.

Port ids are `portset_id << 24 | index` (bit 31 set on uplink ports from 7.0 on, REFERENCE §2.3). Within a
switch, explicitly given `port_index` values are kept; the rest are numbered from 2 upwards in the order
uplinks, vmknics, vNICs (file order). DVPorts are taken from the DVPortgroup's list when not given.
The team uplink of a port is the switch's link-up uplinks[index % count] (INFERRED: route based on
originating port id).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from esxcap.errors import ConfigError
from esxcap.sim.topology import UPLINK_BIT, Host, PortKind, SwitchPort, Uplink

FIRST_INDEX = 2


@dataclass(frozen=True)
class Member:
    """Something that wants a port: a vmknic or a running vNIC (uplinks are added per switch)."""

    kind: PortKind
    client: str
    mac: str
    portgroup: str
    dvport: str | None
    port_index: int | None
    path: str
    world_id: int | None = None
    vnic_index: int | None = None
    subtype: int = 0


@dataclass(frozen=True)
class _Network:
    switch: str
    vlan: int
    dvports: tuple[str, ...] | None


@dataclass(frozen=True)
class _Switch:
    name: str
    portset: str
    portset_id: int
    uplinks: tuple[str, ...]


class PortPlan:
    """Collects switches, portgroups and members while a host is loaded; checks references as they come."""

    def __init__(self, version: tuple[int, ...], uplinks: tuple[Uplink, ...], source: str) -> None:
        self.version = version
        self.uplinks = {u.name: u for u in uplinks}
        self.source = source
        self.networks: dict[str, _Network] = {}
        self.switches: list[_Switch] = []
        self.members: list[Member] = []
        self.claimed: set[str] = set()

    def error(self, path: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {reason}")

    def add_portgroup(
        self, name: str, switch: str, vlan: int, dvports: tuple[str, ...] | None, path: str
    ) -> None:
        if name in self.networks:
            raise self.error(path, f"portgroup {name!r} is defined twice on this host")
        if dvports is not None and len(set(dvports)) != len(dvports):
            raise self.error(path, f"DVPortgroup {name!r} lists a DVPort twice")
        self.networks[name] = _Network(switch, vlan, dvports)

    def claim_uplinks(self, names: tuple[str, ...], switch: str, path: str) -> tuple[str, ...]:
        for name in names:
            if name not in self.uplinks:
                raise self.error(path, f"uplink {name!r} of {switch} is not in this host's uplinks")
            if name in self.claimed:
                raise self.error(path, f"uplink {name!r} is already used by another switch")
            self.claimed.add(name)
        return names

    def add_switch(
        self, name: str, portset: str, portset_id: int, uplinks: tuple[str, ...], path: str
    ) -> None:
        if any(s.name == name for s in self.switches):
            raise self.error(path, f"switch name {name!r} is used twice")
        if any(s.portset_id == portset_id for s in self.switches):
            raise self.error(path, f"portset id {portset_id} is used twice")
        self.switches.append(_Switch(name, portset, portset_id, uplinks))

    def require_portgroup(self, name: str, dvport: str | None, path: str) -> _Network:
        network = self.networks.get(name)
        if network is None:
            known = ", ".join(sorted(self.networks)) or "none"
            raise self.error(f"{path}.portgroup", f"unknown portgroup {name!r} (portgroups here: {known})")
        if dvport is not None and (network.dvports is None or dvport not in network.dvports):
            raise self.error(f"{path}.dvport", f"DVPort {dvport!r} is not a port of {name!r}")
        return network

    def add_member(self, member: Member) -> None:
        self.require_portgroup(member.portgroup, member.dvport, member.path)
        self.members.append(member)


def build_ports(host: Host, plan: PortPlan) -> Host:
    """The host with its `ports` filled in."""
    ports: list[SwitchPort] = []
    for switch in plan.switches:
        ports += _switch_ports(switch, plan)
    return dataclasses.replace(host, ports=tuple(ports))


def _switch_ports(switch: _Switch, plan: PortPlan) -> list[SwitchPort]:
    uplink_members = [
        Member("uplink", u, plan.uplinks[u].mac, "", None, plan.uplinks[u].port_index, f"uplinks[{u}]")
        for u in switch.uplinks
    ]
    others = [m for m in plan.members if plan.networks[m.portgroup].switch == switch.name]
    members = uplink_members + others
    dvports = _assign_dvports(others, plan)
    indexes = _assign_indexes(members, plan)
    active = [u for u in switch.uplinks if plan.uplinks[u].link == "Up"]
    uplink_ids = {m.client: _port_id(switch, indexes[i], True, plan) for i, m in enumerate(uplink_members)}
    ports = []
    for i, member in enumerate(members):
        index = indexes[i]
        is_uplink = member.kind == "uplink"
        network = None if is_uplink else plan.networks[member.portgroup]
        team = member.client if is_uplink else (active[index % len(active)] if active else None)
        ports.append(
            SwitchPort(
                port_id=uplink_ids[member.client] if is_uplink else _port_id(switch, index, False, plan),
                kind=member.kind,
                subtype=member.subtype,
                switch=switch.name,
                portset=switch.portset,
                mac=member.mac,
                client=member.client,
                portgroup=None if is_uplink else member.portgroup,
                vlan=network.vlan if network else 0,
                dvport=dvports.get(id(member)),
                team_uplink=team,
                world_id=member.world_id,
                vnic_index=member.vnic_index,
            )
        )
    ports.sort(key=lambda p: p.port_id & 0xFFFFFF)
    return ports


def _port_id(switch: _Switch, index: int, uplink: bool, plan: PortPlan) -> int:
    port_id = switch.portset_id << 24 | index
    return port_id | UPLINK_BIT if uplink and plan.version >= (7,) else port_id


def _assign_indexes(members: list[Member], plan: PortPlan) -> list[int]:
    taken: dict[int, Member] = {}
    for m in members:
        if m.port_index is not None:
            if m.port_index in taken:
                raise plan.error(
                    f"{m.path}.port_index",
                    f"port index {m.port_index} is already used by {taken[m.port_index].client}",
                )
            taken[m.port_index] = m
    out = []
    next_free = FIRST_INDEX
    for m in members:
        if m.port_index is not None:
            out.append(m.port_index)
            continue
        while next_free in taken:
            next_free += 1
        taken[next_free] = m
        out.append(next_free)
    return out


def _assign_dvports(members: list[Member], plan: PortPlan) -> dict[int, str]:
    """DVPort key per member (by id) for members on DVPortgroups: explicit ones first, then first free."""
    used: dict[tuple[str, str], Member] = {}
    out: dict[int, str] = {}
    for m in members:
        if m.dvport is not None:
            if (m.portgroup, m.dvport) in used:
                other = used[m.portgroup, m.dvport].client
                raise plan.error(f"{m.path}.dvport", f"DVPort {m.dvport} is already used by {other}")
            used[m.portgroup, m.dvport] = m
            out[id(m)] = m.dvport
    for m in members:
        dvports = plan.networks[m.portgroup].dvports
        if m.dvport is not None or dvports is None:
            continue
        free = [d for d in dvports if (m.portgroup, d) not in used]
        if not free:
            raise plan.error(f"{m.path}.portgroup", f"DVPortgroup {m.portgroup!r} has no free DVPort left")
        used[m.portgroup, free[0]] = m
        out[id(m)] = free[0]
    return out
