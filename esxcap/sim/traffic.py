"""The traffic model shared by all simulated hosts: which packets appear where, and when (pure).

Every flow of the topology (`flows:`) is resolved to its two ends (a VM's vNIC or a vmknic, with the
host, switch port, MAC and IP) and, per direction, to the ordered list of capture points ("hops") a
packet passes. The order, with the point names of the host's version:

  sender:   VnicTx (Vmxnet3Tx up to 6.5; vNICs only) -> PortInput @ sender port
            -> PreDVFilter -> PostDVFilter @ each DVFilter of the sender vNIC
  same host and switch, same /24:
            PortOutput @ receiver port -> Pre/PostDVFilter of the receiver vNIC -> VnicRx (Vmxnet3Rx)
  otherwise, leaving by the sender port's team uplink:
            PortOutput -> EtherswitchOutput -> UplinkSndKernel (6.7+) -> UplinkSnd @ uplink port
            -- wire (link latency; through a router when the two IPs are not in one /24) --
            UplinkRcv -> UplinkRcvKernel (6.7+) -> EtherswitchDispath -> PortInput @ receiver's uplink port
            -> PortOutput @ receiver port -> Pre/PostDVFilter -> VnicRx

A flow with `drop: true` is dropped by the first DVFilter on its way: it shows at PreDVFilter, then at
the host's `Drop` point, and nowhere after. Frames carry an 802.1Q tag (the portgroup's VLAN) at the
uplink points only (the four Uplink*, Etherswitch* and the uplink port's PortInput/PortOutput); routed
frames get the router's MACs and TTL - 1 after the wire. Each in-host hop adds a fixed delay drawn from
`latency.hop_us` (fixed per flow, direction and hop, so it can be checked); the wire adds `link_us`.
Timestamps are each host's clock: true time + the host's `clock_skew_ms`.

A `Tap` is what one pktcap-uw session listens to (host, places, points); `Tap.window(t0, t1)` lists
the packets that reached it in that host-clock interval, computed from the flows' schedules.
DVFilter names are `nic-<world id>-eth<N>-<filter>` as `summarize-dvfilter` prints them.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass

from esxcap.errors import ConfigError
from esxcap.sim import frames
from esxcap.sim.flows import Address, Conversation
from esxcap.sim.topology import Flow, FlowEnd, Host, SwitchPort, Topology

Place = int | str
"""Where a point sits: a switch port id, a DVFilter name, or DROP."""
DROP = "drop"
UPLINK_POINTS = frozenset(
    {
        "UplinkSnd",
        "UplinkSndKernel",
        "UplinkRcv",
        "UplinkRcvKernel",
        "EtherswitchDispath",
        "EtherswitchOutput",
    }
)
NEW_NAMES = (6, 7)


@dataclass(frozen=True)
class End:
    """A resolved flow end."""

    host: Host
    port: SwitchPort
    address: Address
    dvfilters: tuple[str, ...]


@dataclass(frozen=True)
class Hop:
    host: str
    place: Place
    point: str
    offset_ns: int
    vlan: int
    routed_side: bool


@dataclass(frozen=True)
class Seen:
    """A packet at a capture point: host-clock time, the frame as captured there, its flow."""

    ts_ns: int
    point: str
    frame: bytes
    flow: str


def dvfilter_name(world_id: int, nic: int, name: str) -> str:
    return f"nic-{world_id}-eth{nic}-{name}"


def _end(topology: Topology, end: FlowEnd, flow: Flow) -> End:
    where = f"{topology.source}: flows: {flow.name}"
    if end.vm is None:
        try:
            host = topology.host(end.host or "")
        except KeyError:
            raise ConfigError(f"{where}: no host {end.host!r}") from None
        vmk = next((v for v in host.vmknics if v.name == end.vmk), None)
        port = host.port_of_client(end.vmk or "")
        if vmk is None or port is None:
            raise ConfigError(f"{where}: {host.name} has no vmknic {end.vmk!r} on a switch")
        return End(host, port, Address(vmk.mac, vmk.ipv4), ())
    for host in topology.hosts:
        for vm in host.running_vms():
            if vm.name != end.vm:
                continue
            vnic = next((n for n in vm.vnics if n.index == end.nic), None)
            ports = [p for p in host.vnic_ports(vm) if p.vnic_index == end.nic]
            if vnic is None or not ports:
                raise ConfigError(f"{where}: VM {vm.name!r} has no eth{end.nic}")
            if vnic.ip is None:
                raise ConfigError(f"{where}: {end} has no IP address (set `ip:` on the vNIC)")
            filters = tuple(dvfilter_name(vm.world_id, vnic.index, f) for f in vnic.filters)
            return End(host, ports[0], Address(vnic.mac, vnic.ip), filters)
    raise ConfigError(f"{where}: no running VM named {end.vm!r}")


def _routed(a: Address, b: Address) -> bool:
    return ipaddress.ip_network(f"{a.ip}/24", strict=False) != ipaddress.ip_network(
        f"{b.ip}/24", strict=False
    )


def _name(host: Host, new: str, old: str) -> str:
    """The vNIC point's name on this host (a 6.7 host may keep the Vmxnet3 names: `vnic_points`)."""
    return new if host.version_tuple[:2] >= NEW_NAMES and host.faults.vnic_points != "Vmxnet3" else old


class _PathBuilder:
    def __init__(self, rng: random.Random, hop_us: tuple[int, int], drop: bool) -> None:
        self.rng = rng
        self.hop_us = hop_us
        self.drop = drop
        self.hops: list[Hop] = []
        self.t = 0
        self.dropped = False

    def add(self, host: Host, place: Place, point: str, vlan: int = 0, routed_side: bool = False) -> None:
        if self.dropped:
            return
        self.hops.append(Hop(host.name, place, point, self.t, vlan, routed_side))
        self.t += self.rng.randint(*self.hop_us) * 1000

    def filters(self, host: Host, names: Iterable[str], routed_side: bool) -> None:
        for name in names:
            self.add(host, name, "PreDVFilter", routed_side=routed_side)
            if self.drop:
                self.add(host, DROP, "Drop", routed_side=routed_side)
                self.dropped = True
            self.add(host, name, "PostDVFilter", routed_side=routed_side)


def _path(src: End, dst: End, flow: Flow, topology: Topology, forward: bool) -> tuple[Hop, ...]:
    rng = random.Random(f"{flow.name}/{forward}")
    b = _PathBuilder(rng, topology.latency.hop_us, flow.drop)
    sh, dh = src.host, dst.host
    if src.port.kind == "vnic":
        b.add(sh, src.port.port_id, _name(sh, "VnicTx", "Vmxnet3Tx"))
    b.add(sh, src.port.port_id, "PortInput")
    b.filters(sh, src.dvfilters, False)
    routed = _routed(src.address, dst.address)
    if sh.name != dh.name or src.port.portset != dst.port.portset or routed:
        up_s, up_d = _uplink_port(sh, src.port, flow), _uplink_port(dh, dst.port, flow)
        vlan_s, vlan_d = src.port.vlan, dst.port.vlan
        b.add(sh, up_s, "PortOutput", vlan_s)
        b.add(sh, up_s, "EtherswitchOutput", vlan_s)
        if sh.version_tuple[:2] >= NEW_NAMES:
            b.add(sh, up_s, "UplinkSndKernel", vlan_s)
        b.add(sh, up_s, "UplinkSnd", vlan_s)
        b.t += topology.latency.link_us * 1000
        b.add(dh, up_d, "UplinkRcv", vlan_d, routed)
        if dh.version_tuple[:2] >= NEW_NAMES:
            b.add(dh, up_d, "UplinkRcvKernel", vlan_d, routed)
        b.add(dh, up_d, "EtherswitchDispath", vlan_d, routed)
        b.add(dh, up_d, "PortInput", vlan_d, routed)
    b.add(dh, dst.port.port_id, "PortOutput", routed_side=routed)
    b.filters(dh, dst.dvfilters, routed)
    if dst.port.kind == "vnic":
        b.add(dh, dst.port.port_id, _name(dh, "VnicRx", "Vmxnet3Rx"), routed_side=routed)
    return tuple(b.hops)


def _uplink_port(host: Host, port: SwitchPort, flow: Flow) -> int:
    uplink = host.port_of_client(port.team_uplink or "")
    if uplink is None:
        raise ConfigError(
            f"flows: {flow.name}: {port.client} on {host.name} has no uplink with link up to leave by"
        )
    return uplink.port_id


@dataclass(frozen=True)
class Route:
    """One direction of one flow: its conversation and the hops its packets pass."""

    conversation: Conversation
    forward: bool
    hops: tuple[Hop, ...]


def resolve_flows(topology: Topology) -> tuple[Route, ...]:
    """Every flow's two directions (bulk: client -> server only); ConfigError for a bad reference."""
    routes = []
    for flow in topology.flows:
        client, server = _end(topology, flow.src, flow), _end(topology, flow.dst, flow)
        conversation = Conversation(
            flow, client.address, server.address, _routed(client.address, server.address)
        )
        routes.append(Route(conversation, True, _path(client, server, flow, topology, True)))
        if flow.kind != "bulk":
            routes.append(Route(conversation, False, _path(server, client, flow, topology, False)))
    return tuple(routes)


@dataclass(frozen=True)
class _Listen:
    route: Route
    hop: Hop
    skew_ns: int


class Tap:
    """The packets one capture session sees: at `points` of `places` on one host."""

    def __init__(self, listens: list[_Listen]) -> None:
        self._timed = [x for x in listens if x.route.conversation.flow.kind != "bulk"]
        self._bulk = [x for x in listens if x.route.conversation.flow.kind == "bulk"]

    @property
    def empty(self) -> bool:
        return not self._timed and not self._bulk

    def bulk_frames(self) -> list[tuple[str, bytes]]:
        """(point, frame) of the bulk flows passing here: a reader takes as many as it can."""
        return [(x.hop.point, _as_captured(x, 0)) for x in self._bulk]

    def window(self, t0_ns: int, t1_ns: int) -> list[Seen]:
        """Packets that reached the tap at host-clock times t0 <= t < t1, in time order."""
        out: list[Seen] = []
        for x in self._timed:
            conv = x.route.conversation
            shift = x.hop.offset_ns + x.skew_ns
            n = conv.first_at_or_after(t0_ns - shift)
            while True:
                ts = conv.send_time(n) + shift
                if ts >= t1_ns:
                    break
                if conv.forward(n) == x.route.forward:
                    out.append(Seen(ts, x.hop.point, _as_captured(x, n), conv.flow.name))
                n += 1
        out.sort(key=lambda s: s.ts_ns)
        return out


def _as_captured(x: _Listen, n: int) -> bytes:
    frame = x.route.conversation.frame(n, x.hop.routed_side)
    return frames.tag_vlan(frame, x.hop.vlan)


class TrafficModel:
    """All flows of a topology; `tap` gives the view of one capture session."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.routes = resolve_flows(topology)
        self._skew = {h.name: h.clock_skew_ms * 1_000_000 for h in topology.hosts}
        self._index: dict[tuple[str, Place, str], list[tuple[Route, Hop]]] = {}
        for route in self.routes:
            for hop in route.hops:
                self._index.setdefault((hop.host, hop.place, hop.point), []).append((route, hop))

    def skew_ns(self, host: str) -> int:
        return self._skew[host]

    def tap(self, host: str, places: Iterable[tuple[Place, str]]) -> Tap:
        """A tap on (place, point) pairs of one host."""
        listens = []
        for place, point in places:
            for route, hop in self._index.get((host, place, point), ()):
                listens.append(_Listen(route, hop, self._skew[host]))
        return Tap(listens)

    def hops_of(self, flow: str) -> list[Hop]:
        """Every hop of a flow's packets, both directions (tests and the path view check against it)."""
        return [hop for route in self.routes if route.conversation.flow.name == flow for hop in route.hops]
