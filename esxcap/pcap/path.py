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
import statistics
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from esxcap.pcap import Interface, Record
from esxcap.pcap.comments import parse_clock_comment

MATCH_WINDOW_NS = 1_000_000_000
MIN_MARGIN_NS = 20_000_000
PACKETS_SHOWN = 50
_VLAN_TYPES = (0x8100, 0x88A8)
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


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

    key: tuple[object, ...]
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


@dataclass
class _Packet:
    identity: Identity
    sightings: list[tuple[int, int]] = field(default_factory=list)
    """(corrected ts ns, point index), in time order."""

    @property
    def first_ns(self) -> int:
        return self.sightings[0][0]


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
    data = bytes(frame)
    if len(data) < 14:
        return None
    etype, at = struct.unpack_from("!H", data, 12)[0], 14
    while etype in _VLAN_TYPES and len(data) >= at + 4:
        etype, at = struct.unpack_from("!H", data, at + 2)[0], at + 4
    body = data[at:]
    if etype == 0x0800 and len(body) >= 20 and body[0] >> 4 == 4:
        return _ipv4(body)
    if etype == 0x0806 and len(body) >= 28:
        a, b = ".".join(map(str, body[14:18])), ".".join(map(str, body[24:28]))
        ends = sorted((a, b))
        return Identity(("arp", body), f"arp {ends[0]} <-> {ends[1]}", f"{a} -> {b}", [a, b] == ends)
    name = f"ethertype 0x{etype:04x}"
    return Identity(("eth", etype, zlib.crc32(body), len(body)), name, name, True)


def _ipv4(body: bytes) -> Identity:
    ihl = (body[0] & 0x0F) * 4
    total = struct.unpack_from("!H", body, 2)[0] or len(body)
    ident, proto = struct.unpack_from("!H", body, 4)[0], body[9]
    src, dst = ".".join(map(str, body[12:16])), ".".join(map(str, body[16:20]))
    payload = body[ihl : min(total, len(body))]
    a, b = src, dst
    if proto in (6, 17) and len(payload) >= 4:
        sport, dport = struct.unpack_from("!HH", payload, 0)
        a, b = f"{src}:{sport}", f"{dst}:{dport}"
    ends = sorted((a, b))
    proto_name = _PROTOS.get(proto, f"proto {proto}")
    key = ("ipv4", src, dst, proto, ident, zlib.crc32(payload), len(payload))
    return Identity(key, f"{proto_name} {ends[0]} <-> {ends[1]}", f"{a} -> {b}", [a, b] == ends)


def analyze(interfaces: Sequence[Interface], records: Iterable[Record]) -> list[DirectionPath]:
    """Every flow direction seen in `records` (which refer to `interfaces` by index)."""
    points = [point_of(i) for i in interfaces]
    correction = [clock_correction(i) for i in interfaces]
    seen = []
    for record in records:
        identity = identify(record.data)
        if identity is not None:
            seen.append((record.ts_ns - correction[record.interface], record.interface, identity))
    seen.sort(key=lambda s: s[0])
    packets: list[_Packet] = []
    latest: dict[tuple[object, ...], _Packet] = {}
    active: dict[int, tuple[int, int]] = {}
    for ts, iface, identity in seen:
        first, _ = active.get(iface, (ts, ts))
        active[iface] = (first, ts)
        packet = latest.get(identity.key)
        if (
            packet is None
            or ts - packet.first_ns > MATCH_WINDOW_NS
            or any(i == iface for _, i in packet.sightings)
        ):
            packet = _Packet(identity)
            latest[identity.key] = packet
            packets.append(packet)
        packet.sightings.append((ts, iface))
    groups: dict[tuple[str, bool], list[_Packet]] = {}
    for packet in packets:
        groups.setdefault((packet.identity.flow, packet.identity.forward), []).append(packet)
    if seen:
        whole = (seen[0][0], seen[-1][0])
        active = {i: active.get(i, whole) for i in range(len(points))}
    orders = {key: _order(group, points) for key, group in groups.items()}
    result = []
    for (flow, forward), group in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        order = orders[flow, forward]
        other = list(
            dict.fromkeys(_counterpart(i, points) for i in reversed(orders.get((flow, not forward), [])))
        )
        after = max((other.index(i) + 1 for i in order if i in other), default=0)
        expected = order + [i for i in other[after:] if i not in order]
        result.append(_direction(group, order, expected, points, active))
    return result


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


def _order(group: Sequence[_Packet], points: Sequence[Point]) -> list[int]:
    """The direction's (non-Drop) points in path order: by median delay after each packet's first sighting."""
    delays: dict[int, list[int]] = {}
    for packet in group:
        for ts, iface in packet.sightings:
            if not points[iface].drop:
                delays.setdefault(iface, []).append(ts - packet.first_ns)
    return sorted(delays, key=lambda i: (statistics.median(delays[i]), -len(delays[i]), i))


def _direction(
    group: Sequence[_Packet],
    order: Sequence[int],
    expected: Sequence[int],
    points: Sequence[Point],
    active: dict[int, tuple[int, int]],
) -> DirectionPath:
    first = group[0].identity
    hops = []
    for a, b in itertools.pairwise(order):
        gaps = []
        for packet in group:
            at = {i: ts for ts, i in reversed(packet.sightings)}
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
    spans = [p.sightings[-1][0] - p.first_ns for p in group]
    margin = max(MIN_MARGIN_NS, 2 * max(spans))
    losses: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], int] = {}
    for packet in group:
        got = [i for _, i in packet.sightings if not points[i].drop]
        drops = tuple(points[i].shown for _, i in packet.sightings if points[i].drop)
        last = max((expected.index(i) for i in got if i in expected), default=-1)
        missing = tuple(
            points[i].shown
            for i in expected[last + 1 :]
            if i not in got
            and i in active
            and active[i][0] <= packet.first_ns
            and packet.sightings[-1][0] + margin <= active[i][1]
        )
        if missing or drops:
            key = (tuple(points[i].shown for i in dict.fromkeys(got)), missing, drops)
            losses[key] = losses.get(key, 0) + 1
    examples = tuple(
        tuple((points[i].shown, ts) for ts, i in packet.sightings) for packet in group[:PACKETS_SHOWN]
    )
    return DirectionPath(
        first.flow,
        first.direction,
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
