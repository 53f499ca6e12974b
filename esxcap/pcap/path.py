"""Packet paths: the same packet seen at several capture points and hosts, in order, with the latency
between points and the points it never reached (pure; the caller reads the file).

A packet is recognised by what does not change on its way: for IPv4 the addresses, protocol, IP
identification and the IP payload (so VLAN tags, MACs rewritten by a router, TTL and the header checksum
are ignored); for ARP and other frames, everything after the Ethernet and VLAN headers. Identical frames
sent again later (ARP repeats) are told apart by time: a sighting joins the latest earlier packet with that
identity only if that packet was not yet seen at the same interface and is at most MATCH_WINDOW_NS old.

A flow is the two endpoints (and ports), both directions together; each direction is reported on its
own: its points in path order (by median delay from a packet's first sighting), the latency of each hop,
and packets seen at an earlier point but never at a later one. The later points of a direction are the
ones its packets reached plus those the reverse direction passed (in reverse order, each replaced by the
other interface of its place when in and out are captured apart) beyond the last point both share: that
is how a flow dropped before its last point is still found. A point is only expected to see a packet
when the point was capturing then: between its first and last packet, with a margin (a point that saw
nothing is taken to have captured over the whole file, as the streams of one esxcap capture do).
Sightings at a `Drop` point say where the packet was dropped.

Interfaces named by esxcap (`host:target:points:dir`) show as `host target points`; an interface whose
comment records a clock offset with timestamps "as read" is corrected by that offset here.
"""

from __future__ import annotations

import itertools
import operator
import statistics
import struct
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import cast

from esxcap.pcap import Interface, Record, RecordSource
from esxcap.pcap.comments import parse_clock_comment

MATCH_WINDOW_NS = 1_000_000_000
MIN_MARGIN_NS = 20_000_000
PACKETS_SHOWN = 50
_VLAN_TYPES = (0x8100, 0x88A8)
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
PRUNE_EVERY = 1 << 16
"""Sightings between two prunings of the packets that left the match window."""


@dataclass(frozen=True)
class Point:
    """One capture interface as a place on a path."""

    host: str
    target: str
    points: str
    drop: bool

    @property
    def shown(self) -> str:
        return " ".join(p for p in (self.host, self.target, self.points) if p)


@dataclass(frozen=True)
class Identity:
    """What a frame is: the packet (`key`), its flow and direction, for display `flow` and `direction`."""

    key: object
    flow: str
    direction: str
    forward: bool


@dataclass(frozen=True)
class Hop:
    """Latency from one point to the next along a direction, over the packets seen at both."""

    src: str
    dst: str
    packets: int
    min_ns: int
    median_ns: int
    max_ns: int


@dataclass(frozen=True)
class Loss:
    """Packets seen at `seen` (in order) but never at `missing` (the later points); `dropped_at`: the Drop
    points that saw them."""

    packets: int
    seen: tuple[str, ...]
    missing: tuple[str, ...]
    dropped_at: tuple[str, ...]

    @property
    def sentence(self) -> str:
        text = f"{self.packets} packet(s) seen at {' and '.join(self.seen)}"
        if self.missing:
            text += f", never at {' and '.join(self.missing)}"
        if self.dropped_at:
            text += f"; dropped at {' and '.join(self.dropped_at)}"
        return text


@dataclass(frozen=True)
class DirectionPath:
    """One direction of one flow."""

    flow: str
    direction: str
    packets: int
    points: tuple[str, ...]
    hops: tuple[Hop, ...]
    losses: tuple[Loss, ...]
    examples: tuple[tuple[tuple[str, int], ...], ...]
    """The first PACKETS_SHOWN packets: (point, corrected timestamp ns) in order."""


class _Sightings:
    """Every sighting of every packet, in columns (no object per packet): sighting s has `stamps[s]`
    (corrected ns) and `ifaces[s]`; packet p's sightings, in time order, are
    `by_packet[starts[p]:starts[p + 1]]`, the first at `first_ns[p]`."""

    def __init__(
        self,
        stamps: array[int],
        ifaces: array[int],
        order: Sequence[int],
        packet_of: array[int],
        counts: array[int],
    ) -> None:
        self.stamps, self.ifaces = stamps, ifaces
        self.starts = array("q", [0, *accumulate(counts)])
        next_slot = self.starts[:-1]
        by_packet = array("L", [0]) * len(order)
        for sighting in order:
            packet = packet_of[sighting]
            by_packet[next_slot[packet]] = sighting
            next_slot[packet] += 1
        self.by_packet = by_packet
        self.first_ns = array("q", (stamps[by_packet[start]] for start in self.starts[:-1]))

    def of(self, packet: int) -> list[tuple[int, int]]:
        """(corrected ts ns, point index) of one packet, in time order."""
        stamps, ifaces = self.stamps, self.ifaces
        chosen = self.by_packet[self.starts[packet] : self.starts[packet + 1]]
        return [(stamps[s], ifaces[s]) for s in chosen]


def point_of(interface: Interface) -> Point:
    """`host:target:points:dir` -> Point; another name is the host part alone."""
    host, sep, rest = interface.name.partition(":")
    if not sep:
        return Point(interface.name, "", "", False)
    parts = rest.rsplit(":", 2)
    target, points = (parts[0], parts[1]) if len(parts) == 3 else (rest, "")
    return Point(host, target, points, points == "Drop" or target == "drop")


def clock_correction(interface: Interface) -> int:
    """Nanoseconds to subtract from this interface's timestamps (its recorded offset, if not aligned)."""
    for comment in interface.comments:
        parsed = parse_clock_comment(comment)
        if parsed is not None:
            offset, aligned = parsed
            return 0 if aligned else offset
    return 0


def identify(frame: bytes | memoryview) -> Identity | None:
    """The packet's identity, flow and direction; None for a frame too short to tell."""
    classified = _classify(frame)
    if classified is None:
        return None
    key, flow = classified
    return Identity(key, *_describe(flow))


FlowKey = tuple[object, ...]
"""(ethertype, ...): IPv4 (0x0800, addresses, protocol, ports or -1), ARP (0x0806, sender, target)."""


def _classify(frame: bytes | memoryview) -> tuple[object, FlowKey] | None:
    """(packet key, flow key) of a frame without building text: the key is an int for IPv4 (addresses,
    protocol, IP id, payload CRC and length), the ARP body, or (ethertype, CRC, length)."""
    data = memoryview(frame)
    if len(data) < 14:
        return None
    etype, at = _U16.unpack_from(data, 12)[0], 14
    while etype in _VLAN_TYPES and len(data) >= at + 4:
        etype, at = _U16.unpack_from(data, at + 2)[0], at + 4
    size = len(data) - at
    if etype == 0x0800 and size >= 20 and data[at] >> 4 == 4:
        total = _U16.unpack_from(data, at + 2)[0] or size
        ident, proto = _U16.unpack_from(data, at + 4)[0], data[at + 9]
        addresses = int.from_bytes(data[at + 12 : at + 20], "big")
        payload = data[at + (data[at] & 0x0F) * 4 : at + min(total, size)]
        ports = _U32.unpack_from(payload)[0] if proto in (6, 17) and len(payload) >= 4 else -1
        key = (((addresses << 8 | proto) << 16 | ident) << 32 | zlib.crc32(payload)) << 32 | len(payload)
        return key, (0x0800, addresses, proto, ports)
    if etype == 0x0806 and size >= 28:
        body = bytes(data[at:])
        return body, (0x0806, body[14:18], body[24:28])
    return (etype, zlib.crc32(data[at:]), size), (etype,)


def _describe(flow: FlowKey) -> tuple[str, str, bool]:
    """(flow, direction, forward) of a flow key from _classify."""
    kind = flow[0]
    if kind == 0x0806:
        a, b = (".".join(map(str, bytes(address))) for address in flow[1:] if isinstance(address, bytes))
        ends = sorted((a, b))
        return f"arp {ends[0]} <-> {ends[1]}", f"{a} -> {b}", [a, b] == ends
    if kind != 0x0800:
        name = f"ethertype 0x{kind:04x}"
        return name, name, True
    addresses, proto, ports = cast(tuple[int, int, int], flow[1:])
    src, dst = (
        ".".join(map(str, part.to_bytes(4, "big"))) for part in (addresses >> 32, addresses & 0xFFFFFFFF)
    )
    a, b = src, dst
    if ports >= 0:
        a, b = f"{src}:{ports >> 16}", f"{dst}:{ports & 0xFFFF}"
    ends = sorted((a, b))
    proto_name = _PROTOS.get(proto, f"proto {proto}")
    return f"{proto_name} {ends[0]} <-> {ends[1]}", f"{a} -> {b}", [a, b] == ends


def analyze(interfaces: Sequence[Interface], records: Iterable[Record]) -> list[DirectionPath]:
    """Every flow direction seen in `records` (which refer to `interfaces` by index)."""
    return _analyze(records, lambda: interfaces)


def analyze_source(source: RecordSource) -> list[DirectionPath]:
    """`analyze` of a capture read once, front to back (its interfaces as they become known)."""
    return _analyze(source, lambda: source.interfaces)


def _analyze(records: Iterable[Record], interfaces: Callable[[], Sequence[Interface]]) -> list[DirectionPath]:
    stamps, ifaces, flow_of, keys, flows = _read(records, interfaces)
    points = [point_of(i) for i in interfaces()]
    order = _time_order(stamps)
    packet_of, counts, packet_flow, active = _match(order, stamps, ifaces, flow_of, keys)
    del keys
    sightings = _Sightings(stamps, ifaces, order, packet_of, counts)
    groups: dict[tuple[str, bool], list[int]] = {}
    described = [_describe(flow) for flow in flows]
    for packet, flow_index in enumerate(packet_flow):
        name, _direction_name, forward = described[flow_index]
        groups.setdefault((name, forward), []).append(packet)
    if order:
        whole = (stamps[order[0]], stamps[order[-1]])
        active = {i: active.get(i, whole) for i in range(len(points))}
    del order
    orders = {key: _order(group, sightings, points) for key, group in groups.items()}
    result = []
    for (flow, forward), group in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        order = orders[flow, forward]
        other = list(
            dict.fromkeys(_counterpart(i, points) for i in reversed(orders.get((flow, not forward), [])))
        )
        after = max((other.index(i) + 1 for i in order if i in other), default=0)
        expected = order + [i for i in other[after:] if i not in order]
        name, direction, _forward = described[packet_flow[group[0]]]
        result.append(_direction(name, direction, group, sightings, order, expected, points, active))
    return result


def _time_order(stamps: array[int]) -> Sequence[int]:
    """Sighting indexes in time order (ties: file order); a range when the file is in order already,
    as esxcap's files are unless a clock correction moves an interface."""
    if all(itertools.starmap(operator.le, itertools.pairwise(stamps))):
        return range(len(stamps))
    return sorted(range(len(stamps)), key=stamps.__getitem__)


def _read(
    records: Iterable[Record], interfaces: Callable[[], Sequence[Interface]]
) -> tuple[array[int], array[int], array[int], list[object], list[FlowKey]]:
    """Columns of every identified sighting: corrected timestamps, interfaces, flow indexes, packet
    keys; and the flows (keys) in order of first appearance."""
    stamps, ifaces, flow_of = array("q"), array("H"), array("L")
    keys: list[object] = []
    flows: dict[FlowKey, int] = {}
    corrections: dict[int, int] = {}
    for record in records:
        classified = _classify(record.data)
        if classified is None:
            continue
        key, flow = classified
        index = flows.get(flow)
        if index is None:
            index = flows[flow] = len(flows)
        iface = record.interface
        correction = corrections.get(iface)
        if correction is None:
            correction = corrections[iface] = clock_correction(interfaces()[iface])
        stamps.append(record.ts_ns - correction)
        ifaces.append(iface)
        flow_of.append(index)
        keys.append(key)
    return stamps, ifaces, flow_of, keys, list(flows)


def _match(
    order: Sequence[int], stamps: array[int], ifaces: array[int], flow_of: array[int], keys: list[object]
) -> tuple[array[int], array[int], array[int], dict[int, tuple[int, int]]]:
    """Sightings (in time order) joined into packets: (packet of each sighting, sightings per packet,
    flow of each packet, each interface's first and last sighting). Only the packets still inside the
    match window are held by key."""
    packet_of = array("L", [0]) * len(stamps)
    counts, first_ns, packet_flow = array("L"), array("q"), array("L")
    latest: dict[object, int] = {}
    seen_at: dict[int, int] = {}
    active: dict[int, tuple[int, int]] = {}
    for done, sighting in enumerate(order, 1):
        ts, iface, key = stamps[sighting], ifaces[sighting], keys[sighting]
        first, _ = active.get(iface, (ts, ts))
        active[iface] = (first, ts)
        packet = latest.get(key)
        bit = 1 << iface
        if packet is None or ts - first_ns[packet] > MATCH_WINDOW_NS or seen_at[packet] & bit:
            packet = len(counts)
            latest[key] = packet
            seen_at[packet] = bit
            counts.append(1)
            first_ns.append(ts)
            packet_flow.append(flow_of[sighting])
        else:
            seen_at[packet] |= bit
            counts[packet] += 1
        packet_of[sighting] = packet
        if not done % PRUNE_EVERY:
            cutoff = ts - MATCH_WINDOW_NS
            latest = {k: p for k, p in latest.items() if first_ns[p] >= cutoff}
            seen_at = {p: seen_at[p] for p in latest.values()}
    return packet_of, counts, packet_flow, active


def _counterpart(iface: int, points: Sequence[Point]) -> int:
    """The interface at the same place that sees the other direction: the one other interface of that
    host and target when there is exactly one (separate in/out streams), else the interface itself."""
    here = points[iface]
    others = [
        i
        for i, p in enumerate(points)
        if i != iface and not p.drop and (p.host, p.target) == (here.host, here.target)
    ]
    return others[0] if len(others) == 1 else iface


def _order(group: Sequence[int], sightings: _Sightings, points: Sequence[Point]) -> list[int]:
    """The direction's (non-Drop) points in path order: by median delay after each packet's first sighting."""
    delays: dict[int, list[int]] = {}
    for packet in group:
        first = sightings.first_ns[packet]
        for ts, iface in sightings.of(packet):
            if not points[iface].drop:
                delays.setdefault(iface, []).append(ts - first)
    return sorted(delays, key=lambda i: (statistics.median(delays[i]), -len(delays[i]), i))


def _direction(
    flow: str,
    direction: str,
    group: Sequence[int],
    sightings: _Sightings,
    order: Sequence[int],
    expected: Sequence[int],
    points: Sequence[Point],
    active: dict[int, tuple[int, int]],
) -> DirectionPath:
    hops = []
    for a, b in itertools.pairwise(order):
        gaps = []
        for packet in group:
            at = {i: ts for ts, i in reversed(sightings.of(packet))}
            if a in at and b in at:
                gaps.append(at[b] - at[a])
        if gaps:
            hops.append(
                Hop(
                    points[a].shown,
                    points[b].shown,
                    len(gaps),
                    min(gaps),
                    round(statistics.median(gaps)),
                    max(gaps),
                )
            )
    first_ns = sightings.first_ns
    spans = [sightings.of(p)[-1][0] - first_ns[p] for p in group]
    margin = max(MIN_MARGIN_NS, 2 * max(spans))
    losses: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], int] = {}
    for packet, span in zip(group, spans, strict=True):
        seen = sightings.of(packet)
        got = [i for _, i in seen if not points[i].drop]
        drops = tuple(points[i].shown for _, i in seen if points[i].drop)
        last = max((expected.index(i) for i in got if i in expected), default=-1)
        first = first_ns[packet]
        missing = tuple(
            points[i].shown
            for i in expected[last + 1 :]
            if i not in got
            and i in active
            and active[i][0] <= first
            and first + span + margin <= active[i][1]
        )
        if missing or drops:
            key = (tuple(points[i].shown for i in dict.fromkeys(got)), missing, drops)
            losses[key] = losses.get(key, 0) + 1
    examples = tuple(
        tuple((points[i].shown, ts) for ts, i in sightings.of(packet)) for packet in group[:PACKETS_SHOWN]
    )
    return DirectionPath(
        flow,
        direction,
        len(group),
        tuple(points[i].shown for i in order),
        tuple(hops),
        tuple(Loss(n, seen, missing, drops) for (seen, missing, drops), n in losses.items()),
        examples,
    )


def as_dict(paths: Sequence[DirectionPath]) -> dict[str, object]:
    """The JSON form of `analyze`'s result."""
    return {
        "flows": [
            {
                "flow": p.flow,
                "direction": p.direction,
                "packets": p.packets,
                "points": list(p.points),
                "hops": [
                    {
                        "from": h.src,
                        "to": h.dst,
                        "packets": h.packets,
                        "min_us": h.min_ns / 1000,
                        "median_us": h.median_ns / 1000,
                        "max_us": h.max_ns / 1000,
                    }
                    for h in p.hops
                ],
                "lost": [
                    {
                        "packets": loss.packets,
                        "seen_at": list(loss.seen),
                        "never_at": list(loss.missing),
                        "dropped_at": list(loss.dropped_at),
                        "text": loss.sentence,
                    }
                    for loss in p.losses
                ],
                "examples": [[{"point": pt, "ts_ns": ts} for pt, ts in ex] for ex in p.examples],
            }
            for p in paths
        ]
    }
