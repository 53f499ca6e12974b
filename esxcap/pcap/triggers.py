"""Trigger conditions (`--trigger EXPR`): the expression parsed, and the native conditions checked on the
Enhanced Packet Blocks a sink already holds, without a Record per packet (pure: no I/O).

    tcp-rst                   a TCP segment with RST set
    tcp-syn-noreply[:S]       a SYN with no SYN/ACK back within S seconds (3); needs both directions
    icmp-unreach              an ICMP destination unreachable (type 3, any code)
    drop                      any packet of a stream at the Drop point
    gap:S                     a stream silent for S seconds (seen when it resumes, or by the other streams'
                              clocks); the trigger packet is the last one before the silence
    bytes:HEX@OFFSET          these bytes at this offset of the frame (from the Ethernet header)
    count:N:CONDITION         the Nth match of a condition (a packet seen at several points counts once)
    df:DISPLAY_FILTER         a Wireshark display filter, checked by tshark on the live stream

Times are compared in this machine's time: each stream's timestamps plus its `to_local_ns` (minus its
host's measured clock offset), so streams of different hosts meet on one clock.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from esxcap.errors import UsageError

NATIVE = ("tcp-rst", "tcp-syn-noreply", "icmp-unreach", "drop", "gap", "bytes")
SYN_NOREPLY_DEFAULT_S = 3.0
MAX_PATTERN = 64
MAX_OFFSET = 65535
SAME_PACKET_NS = 1_000_000_000
"""count:N: one packet seen at several points within this time counts once."""
_HINT = (
    "use tcp-rst, tcp-syn-noreply[:SECONDS], icmp-unreach, drop, gap:SECONDS, bytes:HEX@OFFSET, "
    "count:N:CONDITION or df:DISPLAY_FILTER"
)
_EPB_HEAD = struct.Struct("<8xIIII")
"""Interface, timestamp high and low words, caplen of an Enhanced Packet Block at its start."""
_DATA = 28
"""Where the packet data starts in an Enhanced Packet Block."""
_VLAN_TPIDS = (0x8100, 0x88A8)
_TCP, _ICMP = 6, 1
_SYN, _RST, _ACK = 0x02, 0x04, 0x10
_SYN_RST = _SYN | _RST
_PLAIN_TCP = slice(_DATA + 12, _DATA + 15)
_PLAIN_TCP_VALUES = b"\x08\x00\x45"
"""EtherType IPv4 and an IPv4 header of 20 bytes, where an untagged frame has them."""
_PLAIN_FLAGS = _DATA + 14 + 20 + 13


@dataclass(frozen=True)
class Condition:
    """A parsed trigger expression."""

    kind: str
    text: str
    seconds: float = 0.0
    pattern: bytes = b""
    offset: int = 0
    display_filter: str = ""
    count: int = 1

    @property
    def late_ns(self) -> int:
        """How long after its packet this condition can fire (its packet is still needed then)."""
        return round(self.seconds * 1e9) if self.kind in ("tcp-syn-noreply", "gap") else 0


def _bad(expr: str, part: str, why: str) -> UsageError:
    return UsageError(f"--trigger {expr!r}: {part!r} {why}", _HINT)


def _seconds(expr: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(expr, text, "is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise _bad(expr, text, "must be more than 0 and at most 86400 seconds")
    return value


def parse_trigger(expr: str) -> Condition:
    """The condition `expr` names; a UsageError names the part that is wrong."""
    text = expr.strip()
    name, _, arg = text.partition(":")
    if name == "df":
        if not arg.strip():
            raise _bad(expr, text, "needs a display filter, e.g. df:tcp.analysis.retransmission")
        return Condition("df", text, display_filter=arg)
    if name == "count":
        number, _, inner = arg.partition(":")
        if not number.isdigit() or not 1 <= int(number) <= 1_000_000:
            raise _bad(expr, number, "must be a count of 1 to 1000000, as in count:3:tcp-rst")
        if not inner:
            raise _bad(expr, text, "needs a condition after the count, as in count:3:tcp-rst")
        if inner.startswith(("count:", "df:")):
            raise _bad(expr, inner, "cannot be counted (count a native condition)")
        counted = parse_trigger(inner)
        return Condition(**{**counted.__dict__, "count": int(number), "text": text})
    if name in ("tcp-rst", "icmp-unreach", "drop"):
        if arg:
            raise _bad(expr, arg, f"is not expected: {name} takes no value")
        return Condition(name, text)
    if name == "tcp-syn-noreply":
        return Condition(name, text, seconds=_seconds(expr, arg) if arg else SYN_NOREPLY_DEFAULT_S)
    if name == "gap":
        if not arg:
            raise _bad(expr, text, "needs the silence in seconds, as in gap:5")
        return Condition(name, text, seconds=_seconds(expr, arg))
    if name == "bytes":
        return _bytes_condition(expr, text, arg)
    raise _bad(expr, name or text, "is not a trigger condition")


def _bytes_condition(expr: str, text: str, arg: str) -> Condition:
    hex_text, at, offset_text = arg.partition("@")
    if not at:
        raise _bad(expr, arg or text, "needs HEX@OFFSET, as in bytes:0806@12")
    hex_text = hex_text.removeprefix("0x")
    try:
        pattern = bytes.fromhex(hex_text)
    except ValueError:
        raise _bad(expr, hex_text, "is not hexadecimal bytes (an even number of hex digits)") from None
    if not 1 <= len(pattern) <= MAX_PATTERN:
        raise _bad(expr, hex_text, f"must be 1 to {MAX_PATTERN} bytes")
    if not offset_text.isdigit() or int(offset_text) > MAX_OFFSET:
        raise _bad(expr, offset_text, f"must be a byte offset of 0 to {MAX_OFFSET}")
    return Condition("bytes", text, pattern=pattern, offset=int(offset_text))


@dataclass(frozen=True)
class Hit:
    """A packet that fired the condition: its stream, its timestamp as written, its local time, and
    what was seen."""

    iface: int
    ts_ns: int
    local_ns: int
    what: str


def _ip_header(block: Sequence[int] | memoryview, caplen: int) -> int:
    """Where the IPv4 header of the frame in `block` starts, or -1 (not IPv4, or cut short)."""
    pos = _DATA + 12
    end = _DATA + caplen
    if pos + 2 > end:
        return -1
    ethtype = block[pos] << 8 | block[pos + 1]
    while ethtype in _VLAN_TPIDS and pos + 6 <= end:
        pos += 4
        ethtype = block[pos] << 8 | block[pos + 1]
    if ethtype != 0x0800 or pos + 22 > end or block[pos + 2] >> 4 != 4:
        return -1
    return pos + 2


def _l4(block: memoryview, caplen: int, proto: int) -> tuple[int, int]:
    """Where the IPv4 header and the transport header of an unfragmented IPv4 packet of `proto` start,
    or (-1, -1)."""
    ip = _ip_header(block, caplen)
    if ip < 0 or block[ip + 9] != proto or (block[ip + 6] & 0x1F) | block[ip + 7]:
        return -1, -1
    start = ip + (block[ip] & 0x0F) * 4
    return (ip, start) if start + 14 <= _DATA + caplen else (-1, -1)


def _packet_key(block: memoryview, caplen: int, iface: int, ts_ns: int) -> bytes:
    """What stays the same for one packet at every point: its IPv4 addresses, id and protocol (or the
    stream and time of a packet that is no IPv4)."""
    ip = _ip_header(block, caplen)
    if ip < 0:
        return struct.pack("<IQ", iface, ts_ns)
    return bytes(block[ip + 4 : ip + 6]) + bytes(block[ip + 9 : ip + 10]) + bytes(block[ip + 12 : ip + 20])


@dataclass
class TriggerScanner:
    """Checks the packets of every stream of one capture against a native condition.

    `add_stream` registers each stream (its interface id, its shift to local time, whether it is a
    Drop-point stream); `scan` takes one stream's packets as (timestamps, blocks) and returns the hits.
    """

    condition: Condition
    _to_local: dict[int, int] = field(default_factory=dict)
    _drop: set[int] = field(default_factory=set)
    _last: dict[int, tuple[int, int]] = field(default_factory=dict)
    """gap: each stream's last packet (timestamp, local time)."""
    _silent: set[int] = field(default_factory=set)
    _syns: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)
    """tcp-syn-noreply: (src, dst, ports) of unanswered SYNs -> (interface, timestamp, local time)."""
    _recent: dict[bytes, int] = field(default_factory=dict)
    _matches: int = 0
    newest_ns: int | None = None

    def add_stream(self, iface: int, to_local_ns: int, drop_point: bool) -> None:
        self._to_local[iface] = to_local_ns
        if drop_point:
            self._drop.add(iface)

    def scan(self, iface: int, stamps: Sequence[int], blocks: Sequence[memoryview | bytes]) -> list[Hit]:
        """The hits among one stream's packets (in stream order), and those their times reveal."""
        if not stamps:
            return []
        shift = self._to_local.get(iface, 0)
        kind = self.condition.kind
        found: list[tuple[int, int, str, memoryview | None]] = []
        if kind == "drop":
            if iface in self._drop:
                found.append((iface, stamps[0], "a packet at the Drop point", None))
        elif kind == "gap":
            found += self._gaps(iface, stamps, shift)
        else:
            found += self._packets(iface, stamps, blocks, shift)
        newest = stamps[-1] + shift
        if self.newest_ns is None or newest > self.newest_ns:
            self.newest_ns = newest
        hits = [Hit(i, ts, ts + self._to_local.get(i, 0), what) for i, ts, what, _ in found if i >= 0]
        if kind == "tcp-syn-noreply":
            hits += self._unanswered()
        elif kind == "gap":
            hits += self._silent_streams()
        return self._counted(hits, found)

    def _packets(
        self, iface: int, stamps: Sequence[int], blocks: Sequence[memoryview | bytes], shift: int
    ) -> list[tuple[int, int, str, memoryview | None]]:
        kind, cond = self.condition.kind, self.condition
        unpack = _EPB_HEAD.unpack_from
        found: list[tuple[int, int, str, memoryview | None]] = []
        for ts, raw in zip(stamps, blocks, strict=True):
            block = raw if isinstance(raw, memoryview) else memoryview(raw)
            caplen = unpack(block, 0)[3]
            if kind == "bytes":
                start = _DATA + cond.offset
                end = start + len(cond.pattern)
                if end <= _DATA + caplen and block[start:end] == cond.pattern:
                    found.append((iface, ts, f"bytes {cond.pattern.hex()} at offset {cond.offset}", block))
            elif kind == "icmp-unreach":
                _ip, l4 = _l4(block, caplen, _ICMP)
                if l4 >= 0 and block[l4] == 3:
                    found.append((iface, ts, f"ICMP destination unreachable (code {block[l4 + 1]})", block))
            else:
                plain = caplen >= 48 and block[_PLAIN_TCP] == _PLAIN_TCP_VALUES
                if plain and not block[_PLAIN_FLAGS] & _SYN_RST:
                    continue  # the usual packet: untagged IPv4 without options, neither SYN nor RST
                ip, l4 = _l4(block, caplen, _TCP)
                if l4 < 0:
                    continue
                flags = block[l4 + 13]
                if kind == "tcp-rst":
                    if flags & _RST:
                        found.append((iface, ts, "TCP RST", block))
                elif flags & (_SYN | _RST) == _SYN:
                    self._syn(block, ip, l4, flags, (iface, ts, ts + shift))
        return found

    def _syn(self, block: memoryview, ip: int, l4: int, flags: int, seen: tuple[int, int, int]) -> None:
        """A SYN waits for its SYN/ACK (a retransmitted SYN keeps the first one's time)."""
        src, dst = bytes(block[ip + 12 : ip + 16]), bytes(block[ip + 16 : ip + 20])
        ports = bytes(block[l4 : l4 + 4])
        if flags & _ACK:
            self._syns.pop(dst + src + ports[2:] + ports[:2], None)
        else:
            self._syns.setdefault(src + dst + ports, seen)

    def _unanswered(self) -> list[Hit]:
        if self.newest_ns is None:
            return []
        wait = self.condition.late_ns
        hits = []
        while self._syns:
            key, (iface, ts, local) = next(iter(self._syns.items()))
            if local + wait > self.newest_ns:
                break
            del self._syns[key]
            hits.append(Hit(iface, ts, local, f"TCP SYN with no SYN/ACK within {self.condition.seconds:g} s"))
        return hits

    def _gaps(self, iface: int, stamps: Sequence[int], shift: int) -> list[tuple[int, int, str, None]]:
        wait = self.condition.late_ns
        found: list[tuple[int, int, str, None]] = []
        before = self._last.get(iface)
        previous = before[0] if before else None
        for ts in stamps:
            if previous is not None and ts - previous >= wait and iface not in self._silent:
                found.append((iface, previous, self._gap_text(ts - previous), None))
            self._silent.discard(iface)
            previous = ts
        self._last[iface] = (stamps[-1], stamps[-1] + shift)
        return found

    def _gap_text(self, silent_ns: int) -> str:
        return f"a gap: silent {silent_ns / 1e9:.3f} s after this packet (gap:{self.condition.seconds:g})"

    def _silent_streams(self) -> list[Hit]:
        """Streams the others show silent for the gap already (it need not resume to be seen)."""
        if self.newest_ns is None:
            return []
        hits = []
        for iface, (ts, local) in self._last.items():
            if iface not in self._silent and self.newest_ns - local >= self.condition.late_ns:
                self._silent.add(iface)
                hits.append(Hit(iface, ts, local, self._gap_text(self.newest_ns - local)))
        return hits

    def _counted(self, hits: list[Hit], found: list[tuple[int, int, str, memoryview | None]]) -> list[Hit]:
        """count:N: every Nth distinct packet among the hits."""
        count = self.condition.count
        if count == 1 or not hits:
            return hits
        blocks = {(i, ts): block for i, ts, _what, block in found}
        horizon = (self.newest_ns or 0) - SAME_PACKET_NS
        self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        fired = []
        for hit in hits:
            block = blocks.get((hit.iface, hit.ts_ns))
            if block is not None:
                key = _packet_key(block, _EPB_HEAD.unpack_from(block, 0)[3], hit.iface, hit.ts_ns)
            else:
                key = struct.pack("<IQ", hit.iface, hit.ts_ns)
            if key in self._recent:
                continue
            self._recent[key] = hit.local_ns
            self._matches += 1
            if self._matches % count == 0:
                fired.append(Hit(hit.iface, hit.ts_ns, hit.local_ns, f"{hit.what} (match {self._matches})"))
        return fired


@dataclass(frozen=True)
class TriggerPlan:
    """What `--trigger` asked for: the condition, the window around each event (seconds before and
    after the trigger packet), the memory the before-window may use, and how many events to keep."""

    condition: Condition
    before_s: float
    after_s: float
    before_bytes: int
    events: int = 1
