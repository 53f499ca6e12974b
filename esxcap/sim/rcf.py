"""The simulated pktcap-uw's `--rcf '<pcap filter expression>'` (7.0+, REFERENCE §1.4, §9): a subset of
pcap-filter(7) compiled to a predicate on a frame's `Fields`.

Understood: `and`/`&&`, `or`/`||`, `not`/`!`, parentheses; `[src|dst] host A.B.C.D`, `[src|dst] net
CIDR` (or `net A.B.C.D mask M`), `[tcp|udp] [src|dst] port N`, `ether [src|dst] host MAC`, `vlan [N]`,
and the protocol words `ip`, `ip6`, `arp`, `tcp`, `udp`, `icmp`. Anything else is refused before the
capture starts, the way a filter compiler refuses a syntax error (the real message was never seen:
INFERRED `error: Failed to compile the rcf filter: ...`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

from esxcap.sim.frames import ETH_ARP, ETH_IPV4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Fields

Predicate = Callable[[Fields], bool]
ETH_IPV6 = 0x86DD
_TOKEN = re.compile(r"\s*(&&|\|\||[()!]|[^\s()!]+)")
_PROTOCOLS: dict[str, Predicate] = {
    "ip": lambda f: f.ethtype == ETH_IPV4,
    "ip6": lambda f: f.ethtype == ETH_IPV6,
    "arp": lambda f: f.ethtype == ETH_ARP,
    "tcp": lambda f: f.proto == PROTO_TCP,
    "udp": lambda f: f.proto == PROTO_UDP,
    "icmp": lambda f: f.proto == PROTO_ICMP,
}


class RcfError(Exception):
    """The expression is outside the understood subset or malformed; the message says where."""


def compile_filter(text: str) -> Predicate:
    """The predicate for `text`; RcfError when it cannot be compiled."""
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != re.sub(r"\s+", "", text) or not tokens:
        raise RcfError(f"cannot read {text!r}")
    parser = _Parser(tokens)
    predicate = parser.alternatives()
    if parser.pos != len(tokens):
        raise RcfError(f"unexpected {tokens[parser.pos]!r}")
    return predicate


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos].lower() if self.pos < len(self.tokens) else ""

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise RcfError("expression ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def alternatives(self) -> Predicate:
        return self._chain(("or", "||"), self.conjunction, any)

    def conjunction(self) -> Predicate:
        return self._chain(("and", "&&"), self.factor, all)

    def _chain(
        self,
        words: tuple[str, str],
        operand: Callable[[], Predicate],
        combine: Callable[[Iterable[bool]], bool],
    ) -> Predicate:
        parts = [operand()]
        while self.peek() in words:
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else lambda f: combine(p(f) for p in parts)

    def factor(self) -> Predicate:
        word = self.peek()
        if word in ("not", "!"):
            self.take()
            inner = self.factor()
            return lambda f: not inner(f)
        if word == "(":
            self.take()
            inner = self.alternatives()
            if self.take() != ")":
                raise RcfError("missing ')'")
            return inner
        return self.primitive()

    def primitive(self) -> Predicate:
        word = self.take().lower()
        if word in ("tcp", "udp") and self.peek() in ("port", "src", "dst"):
            proto = _PROTOCOLS[word]
            ported = self.primitive()
            return lambda f: proto(f) and ported(f)
        if word in _PROTOCOLS:
            return _PROTOCOLS[word]
        if word == "vlan":
            if self.peek().isdigit():
                vlan = int(self.take())
                return lambda f: f.vlan == vlan
            return lambda f: f.vlan != 0
        if word == "ether":
            return self._ether()
        side = word if word in ("src", "dst") else None
        if side:
            word = self.take().lower()
        if word == "host":
            return _ip_match(side, self._network(self.take(), "32"))
        if word == "net":
            net = self.take()
            if self.peek() == "mask":
                self.take()
                net = f"{net}/{self.take()}"
            return _ip_match(side, self._network(net, None))
        if word == "port":
            port = self._port(self.take())
            return lambda f: f.proto in (PROTO_TCP, PROTO_UDP) and _sides(side, f.src_port, f.dst_port, port)
        raise RcfError(f"unknown or unsupported word {word!r}")

    def _ether(self) -> Predicate:
        side = self.take().lower() if self.peek() in ("src", "dst") else None
        if self.take().lower() != "host":
            raise RcfError("expected 'ether [src|dst] host MAC'")
        mac = self.take().lower().replace("-", ":")
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
            raise RcfError(f"not a MAC address: {mac!r}")
        return lambda f: _sides(side, f.src_mac, f.dst_mac, mac)

    @staticmethod
    def _network(text: str, prefix: str | None) -> tuple[int, int]:
        try:
            net = ipaddress.IPv4Network(f"{text}/{prefix}" if prefix else text, strict=False)
        except ValueError:
            raise RcfError(f"not an IPv4 address or network: {text!r}") from None
        return int(net.network_address), int(net.broadcast_address)

    @staticmethod
    def _port(text: str) -> int:
        if not text.isdigit() or int(text) > 65535:
            raise RcfError(f"not a port number: {text!r}")
        return int(text)


def _sides(side: str | None, src: object, dst: object, wanted: object) -> bool:
    if side == "src":
        return src == wanted
    if side == "dst":
        return dst == wanted
    return wanted in (src, dst)


def _ip_match(side: str | None, bounds: tuple[int, int]) -> Predicate:
    lo, hi = bounds

    def inside(ip: int | None) -> bool:
        return ip is not None and lo <= ip <= hi

    if side == "src":
        return lambda f: inside(f.src_ip)
    if side == "dst":
        return lambda f: inside(f.dst_ip)
    return lambda f: inside(f.src_ip) or inside(f.dst_ip)
