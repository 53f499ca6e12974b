"""What each kind of flow says: packet number n of a flow -> its direction and its frame (pure).

A flow sends one packet every 1/rate_pps seconds, forever, from a fixed phase; packet n is a pure
function of n, so any capture at any time computes exactly the packets it would have seen.

- icmp: echo request (client -> server), echo reply;
- arp: who-has (broadcast), is-at;
- dns: A query from a changing client port to `port` (53), response with one answer;
- tcp: connections of SYN, SYN/ACK, ACK, a request and two responses with their ACKs, then FIN/ACK,
  FIN/ACK, ACK; every fifth connection is reset by the server after the data instead; with the flow's
  `retransmit_every` N, every Nth connection sends its request twice (the second a retransmission);
  with `unanswered_every` N, every Nth connection is a SYN sent twice that nobody answers;
- udp-closed: a UDP datagram to a port nobody listens on (client -> server), answered by ICMP port
  unreachable quoting its IP header and first 8 bytes;
- bulk: maximum-size UDP frames client -> server, as many as a reader accepts (no rate).

Frames leave the client addressed to `next_hop` (the server, or the router when the flow is routed);
`Conversation.frame(n, routed_side=True)` is the same packet after the router (`frames.route`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

from esxcap.sim import frames
from esxcap.sim.topology import Flow

ROUTER_MAC = "00:00:5e:00:01:01"
BULK_FRAME = 1514
EPHEMERAL = 49152


@dataclass(frozen=True)
class Address:
    mac: str
    ip: str


@dataclass(frozen=True)
class _Step:
    forward: bool
    flags: int
    length: int
    repeat: bool = False
    """The same segment as the step before (same sequence numbers): a retransmission."""


_OPEN = (
    _Step(True, frames.TCP_SYN, 0),
    _Step(False, frames.TCP_SYN | frames.TCP_ACK, 0),
    _Step(True, frames.TCP_ACK, 0),
)
_DATA = (
    _Step(True, frames.TCP_PSH | frames.TCP_ACK, 120),
    _Step(False, frames.TCP_PSH | frames.TCP_ACK, 600),
    _Step(True, frames.TCP_ACK, 0),
    _Step(False, frames.TCP_PSH | frames.TCP_ACK, 400),
    _Step(True, frames.TCP_ACK, 0),
)
_CLOSE = (
    _Step(True, frames.TCP_FIN | frames.TCP_ACK, 0),
    _Step(False, frames.TCP_FIN | frames.TCP_ACK, 0),
    _Step(True, frames.TCP_ACK, 0),
)
_RESET = (_Step(False, frames.TCP_RST | frames.TCP_ACK, 0),)
_UNANSWERED = (_OPEN[0], replace(_OPEN[0], repeat=True))
_REPEAT = (_DATA[0], replace(_DATA[0], repeat=True), *_DATA[1:])
_NORMAL = _OPEN + _DATA + _CLOSE
_ABORTED = _OPEN + _DATA + _RESET
RESET_EVERY = 5


def _connections(retransmit_every: int, unanswered_every: int = 0) -> tuple[tuple[_Step, ...], ...]:
    """One cycle of connections: every RESET_EVERY-th reset, every `retransmit_every`-th retransmitting,
    every `unanswered_every`-th a SYN nobody answers."""
    count = math.lcm(RESET_EVERY, retransmit_every or 1, unanswered_every or 1)
    cycle: list[tuple[_Step, ...]] = []
    for i in range(count):
        if unanswered_every and i % unanswered_every == unanswered_every - 1:
            cycle.append(_UNANSWERED)
            continue
        data = _REPEAT if retransmit_every and i % retransmit_every == retransmit_every - 1 else _DATA
        cycle.append(_OPEN + data + (_RESET if i % RESET_EVERY == RESET_EVERY - 1 else _CLOSE))
    return tuple(cycle)


def _sequence_numbers(steps: tuple[_Step, ...]) -> list[tuple[int, int]]:
    """(client bytes sent, server bytes sent) before each step, SYN and FIN counting one."""
    client = server = 0
    out: list[tuple[int, int]] = []
    for step in steps:
        if step.repeat:
            out.append(out[-1])
            continue
        out.append((client, server))
        used = step.length + (1 if step.flags & (frames.TCP_SYN | frames.TCP_FIN) else 0)
        if step.forward:
            client += used
        else:
            server += used
    return out


class Conversation:
    """The packets of one flow between a client and a server address."""

    def __init__(self, flow: Flow, client: Address, server: Address, routed: bool) -> None:
        self.flow = flow
        self.client = client
        self.server = server
        self.routed = routed
        self.period_ns = max(1, round(1e9 / flow.rate_pps))
        self.phase_ns = zlib.crc32(flow.name.encode()) % self.period_ns
        self.ident = zlib.crc32(flow.name.encode()) & 0xFFFF
        self._connections = _connections(flow.retransmit_every, flow.unanswered_every)
        self._super = sum(len(c) for c in self._connections)
        self._seqs = [_sequence_numbers(c) for c in self._connections]

    def send_time(self, n: int) -> int:
        """True time (ns since the epoch) when packet n leaves its sender."""
        return self.phase_ns + n * self.period_ns

    def first_at_or_after(self, t_ns: int) -> int:
        return max(0, -(-(t_ns - self.phase_ns) // self.period_ns))

    def forward(self, n: int) -> bool:
        """True when packet n goes client -> server."""
        kind = self.flow.kind
        if kind == "bulk":
            return True
        if kind == "tcp":
            return self._tcp_step(n)[1].forward
        return n % 2 == 0

    def frame(self, n: int, routed_side: bool = False) -> bytes:
        """Packet n as its sender puts it on the wire; `routed_side`: as it arrives after the router."""
        forward = self.forward(n)
        src, dst = (self.client, self.server) if forward else (self.server, self.client)
        next_hop = ROUTER_MAC if self.routed else dst.mac
        raw = self._build(n, forward, src, dst, next_hop)
        if routed_side and self.routed and self.flow.kind != "arp":
            return frames.route(raw, ROUTER_MAC, dst.mac)
        return raw

    def _build(self, n: int, forward: bool, src: Address, dst: Address, next_hop: str) -> bytes:
        kind = self.flow.kind
        ident = (self.ident + n) & 0xFFFF
        if kind == "arp":
            return frames.arp(src.mac, src.ip, dst.mac, dst.ip, reply=not forward)
        if kind == "icmp":
            payload = frames.icmp_echo(self.ident, n // 2, reply=not forward)
            return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_ICMP, payload, ident)
        if kind == "dns":
            qid = (self.ident + n // 2) & 0xFFFF
            name = f"host{(n // 2) % 100}.example.test"
            body = frames.dns(qid, name, None if forward else "192.0.2." + str(1 + (n // 2) % 250))
            cport = EPHEMERAL + (n // 2) % 16000
            sport, dport = (cport, self.flow.port) if forward else (self.flow.port, cport)
            payload = frames.udp(src.ip, dst.ip, sport, dport, body)
            return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_UDP, payload, ident)
        if kind == "udp-closed":
            return self._closed_port(n, forward, src, dst, next_hop, ident)
        if kind == "bulk":
            body = bytes(BULK_FRAME - 14 - 20 - 8)
            payload = frames.udp(src.ip, dst.ip, EPHEMERAL, self.flow.port, body)
            return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_UDP, payload, ident)
        return self._tcp(n, src, dst, next_hop, ident)

    def _closed_port(
        self, n: int, forward: bool, src: Address, dst: Address, next_hop: str, ident: int
    ) -> bytes:
        """A datagram to the closed port, or the ICMP port unreachable quoting it."""
        cport = EPHEMERAL + (n // 2) % 16000
        probe_ident = (self.ident + n - (0 if forward else 1)) & 0xFFFF
        client, server = (src, dst) if forward else (dst, src)
        datagram = frames.udp(client.ip, server.ip, cport, self.flow.port, bytes(32))
        if forward:
            return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_UDP, datagram, ident)
        probe = frames.ipv4(
            client.mac, server.mac, client.ip, server.ip, frames.PROTO_UDP, datagram, probe_ident
        )
        payload = frames.icmp_unreachable(probe[14 : 14 + 28])
        return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_ICMP, payload, ident)

    def _tcp_step(self, n: int) -> tuple[int, _Step, tuple[int, int], tuple[_Step, ...]]:
        cycle, rest = divmod(n, self._super)
        for number, steps in enumerate(self._connections):
            if rest < len(steps):
                return cycle * len(self._connections) + number, steps[rest], self._seqs[number][rest], steps
            rest -= len(steps)
        raise AssertionError("unreachable: rest < the cycle's length")

    def _tcp(self, n: int, src: Address, dst: Address, next_hop: str, ident: int) -> bytes:
        conn, step, (client_sent, server_sent), _ = self._tcp_step(n)
        client_isn = zlib.crc32(f"{self.flow.name}/c/{conn}".encode())
        server_isn = zlib.crc32(f"{self.flow.name}/s/{conn}".encode())
        cport = EPHEMERAL + conn % 16000
        syn_only = step.flags == frames.TCP_SYN
        if step.forward:
            seq, ack = client_isn + client_sent, 0 if syn_only else server_isn + server_sent
            sport, dport = cport, self.flow.port
        else:
            seq, ack = server_isn + server_sent, client_isn + client_sent
            sport, dport = self.flow.port, cport
        data = bytes((i * 7 + conn) & 0xFF for i in range(step.length))
        segment = frames.tcp(src.ip, dst.ip, sport, dport, seq, ack, step.flags, data)
        return frames.ipv4(src.mac, next_hop, src.ip, dst.ip, frames.PROTO_TCP, segment, ident)
