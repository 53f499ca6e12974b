"""What is in a capture, by tshark's own dissectors: packets and bytes per interface and per capture
point (merged files), the protocol hierarchy, top conversations, TCP problems (retransmissions, duplicate
ACKs, resets, zero windows, failed handshakes), DNS errors and ICMP unreachables.

One tshark pass does the dissecting: its protocol hierarchy (`-z io,phs`) and a Lua script
(analyze.lua) that prints only the packets that may be problems and, at the end, the conversations, so
the time is about tshark's own statistics pass over the same file (`bench/analyze_speed.py`). esxcap's
own pass reads the file at the same time for the packets per interface and the copies below; memory is
counters, the last second's packet digests and one byte per packet.

A merged file holds the same packet once per capture point it passed (VnicTx, then the uplink...), and
tshark takes each later copy for a retransmission or a duplicate ACK. TCP problems are therefore
counted once per packet: a copy of a packet seen shortly before at another interface of the same file
(same bytes from the IP header on, TTL and checksum aside; within COPY_WINDOW_NS) adds nothing to them.
A packet repeated at one interface is a real repeat and counts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, Record
from esxcap.pcap.records import CaptureFormatError

INSTALL_HINT = (
    "install Wireshark's command-line tools: apt install tshark (Debian/Ubuntu), "
    "dnf install wireshark-cli (Fedora/RHEL), brew install wireshark (macOS)"
)
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10
DNS_RESPONSE = 0x8000
DNS_RCODES = {1: "FormErr", 2: "ServFail", 3: "NXDomain", 4: "NotImp", 5: "Refused"}
COPY_WINDOW_NS = 1_000_000_000
"""How far apart two sightings of one packet at different capture points may be (esxcap's reorder window)."""
PROGRESS_EVERY = 50_000
"""Packets between two progress reports (counted by tshark, which takes most of the time: esxcap's own
pass runs ahead of it)."""
Progress = Callable[[str, int], None]


IPV4, IPV6 = b"\x08\x00", b"\x86\xdd"
TCP = 6


def _packet_key(data: bytes | memoryview) -> tuple[bytes, bool] | None:
    """What stays the same when one packet passes several capture points: a digest of its bytes from the
    IP header on (a VLAN tag added or removed on the way, TTL and header checksum aside), and whether it
    carries TCP; None for non-IP."""
    offset, ethertype = 12, bytes(data[12:14])
    while ethertype in (b"\x81\x00", b"\x88\xa8"):
        offset += 4
        ethertype = bytes(data[offset : offset + 2])
    packet = bytearray(data[offset + 2 :])
    if ethertype == IPV4 and len(packet) >= 20:
        packet[8] = packet[10] = packet[11] = 0
        tcp = packet[9] == TCP
    elif ethertype == IPV6 and len(packet) >= 40:
        packet[7] = 0
        tcp = packet[6] == TCP
    else:
        return None
    return hashlib.blake2b(packet, digest_size=16).digest(), tcp


class _Sightings:
    """esxcap's own pass over a file, beside tshark's: packets and bytes per interface, and which packets
    are copies of one seen within COPY_WINDOW_NS before at another interface (memory: the packets of the
    last COPY_WINDOW_NS, and one byte per packet for the answer)."""

    def __init__(self, path: Path, tally: _Tally, max_packets: int | None) -> None:
        self._handle = path.open("rb")
        self._source = CaptureFile(self._handle, str(path))
        self._records = iter(self._source)
        self._file = str(path)
        self._tally = tally
        self._max = max_packets
        self._recent: dict[bytes, int] = {}
        self._order: deque[tuple[int, bytes]] = deque()
        self._copies = bytearray()
        self._counts: dict[int, list[Any]] = {}
        self.done = False

    @property
    def read(self) -> int:
        return len(self._copies)

    def is_copy(self, number: int) -> bool:
        """Whether packet `number` (1 = the first) is such a copy; False for one not read."""
        return number <= len(self._copies) and bool(self._copies[number - 1])

    def close(self) -> None:
        self._handle.close()

    def step(self, packets: int) -> None:
        """Read up to `packets` more packets (up to max_packets: the tally says whether more follow)."""
        before = self.read
        for _ in range(packets):
            if self._next() is None:
                self.done = True
                break
        self._tally.packets += self.read - before

    def _record(self) -> Record | None:
        """The next record; None at the end or where the file breaks its format (a read error, as tshark
        has at a file cut short: what comes before is counted)."""
        try:
            return next(self._records, None)
        except CaptureFormatError as exc:
            self._tally.read_errors.append(f"{exc.message} (what comes before is counted)")
            return None

    def _next(self) -> Record | None:
        if self._max is not None and self.read >= self._max:
            self._tally.truncated = self._tally.truncated or self._record() is not None
            return None
        record = self._record()
        if record is None:
            return None
        interface, size = record.interface, record.origlen
        counts = self._counts.get(interface)
        if counts is None:
            counts = self._counts[interface] = self._interface_counts(interface)
        counts[1] += 1
        counts[2] += size
        self._tally.bytes += size
        self._copies.append(self._seen_elsewhere(record))
        return record

    def _interface_counts(self, interface: int) -> list[Any]:
        """[name, packets, bytes] of an interface of this file, in the tally."""
        known = self._source.interfaces
        name = known[interface].name if interface < len(known) else ""
        shown = name or Path(self._file).name
        return self._tally.interfaces.setdefault((self._file, str(interface)), [shown, 0, 0])

    def _seen_elsewhere(self, record: Record) -> bool:
        # away from this packet's time either way: a file whose clock runs backwards (or jumps) keeps no
        # more digests than one whose clock runs forwards
        while self._order and abs(self._order[0][0] - record.ts_ns) > COPY_WINDOW_NS:
            _, old = self._order.popleft()
            self._recent.pop(old, None)
        found = _packet_key(record.data)
        if found is None:
            return False
        key, tcp = found
        seen = self._recent.get(key)
        if seen is None:
            self._recent[key] = record.interface
            self._order.append((record.ts_ns, key))
            return False
        copy = seen != record.interface
        self._tally.copies += copy and tcp
        return copy


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def require_tshark() -> None:
    if not tshark_available():
        raise UsageError("analysis needs tshark, which is not installed", INSTALL_HINT)


@dataclass
class _Tally:
    """Counters filled packet by packet."""

    packets: int = 0
    bytes: int = 0
    interfaces: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    protocols: Counter[str] = field(default_factory=Counter)
    protocol_bytes: Counter[str] = field(default_factory=Counter)
    conversations: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    retransmissions: int = 0
    duplicate_acks: int = 0
    resets: int = 0
    zero_windows: int = 0
    copies: int = 0
    syn_streams: set[tuple[str, str]] = field(default_factory=set)
    synack_streams: set[tuple[str, str]] = field(default_factory=set)
    beyond_handshake: set[tuple[str, str]] = field(default_factory=set)
    """TCP streams that carried a packet other than a SYN or a reset."""
    dns_errors: Counter[str] = field(default_factory=Counter)
    unreachable: Counter[str] = field(default_factory=Counter)
    truncated: bool = False
    read_errors: list[str] = field(default_factory=list)


SCRIPT_STARTED = "esxcap-analyze 1"
"""analyze.lua's first line: tshark ran the script."""
PROBLEM_FIELDS = (
    "number",
    "tcp.stream",
    "tcp.flags",
    "retransmission",
    "duplicate_ack",
    "zero_window",
    "dns.flags",
    "dns.qry.name",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "src",
    "dst",
)
"""A "P" line of analyze.lua, after its tag."""
EMPTY = ("",) * len(PROBLEM_FIELDS)
PHS_LINE = re.compile(r"^(?P<indent> *)(?P<name>\S+)\s+frames:(?P<frames>\d+)\s+bytes:(?P<bytes>\d+)\s*$")


def _int(value: str, base: int = 10) -> int:
    try:
        return int(value, base)
    except ValueError:
        return 0


def _tshark_argv(path: Path, script: Path, max_packets: int | None) -> list[str]:
    # a file named "-" is tshark's standard input unless it has a directory in front
    target = str(path) if path.is_absolute() else os.path.join(os.curdir, path)
    argv = ["tshark", "-n", "-q", "-X", f"lua_script:{script}", "-X", f"lua_script1:{PROGRESS_EVERY}"]
    argv += ["-z", "io,phs", "-r", target]
    return argv if max_packets is None else [*argv, "-c", str(max_packets)]


def _problem(tally: _Tally, file: str, values: dict[str, str], copy: bool) -> None:
    """One packet analyze.lua printed: the TCP problems it shows, DNS errors, ICMP unreachables (nothing
    for a copy of a packet seen at another capture point)."""
    if copy:
        return
    src, dst = values["src"], values["dst"]
    flags = _int(values["tcp.flags"])
    if values["tcp.stream"]:
        stream = (file, values["tcp.stream"])
        tally.resets += bool(flags & TCP_RST)
        if flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
            tally.syn_streams.add(stream)
        elif flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            tally.synack_streams.add(stream)
        tally.retransmissions += bool(values["retransmission"])
        tally.duplicate_acks += bool(values["duplicate_ack"])
        tally.zero_windows += bool(values["zero_window"])
    dns = _int(values["dns.flags"])
    if dns & DNS_RESPONSE and dns & 0xF:
        name = values["dns.qry.name"] or "?"
        tally.dns_errors[f"{DNS_RCODES.get(dns & 0xF, f'rcode {dns & 0xF}')} {name}"] += 1
    if values["icmp.type"] == "3" and src:
        tally.unreachable[f"{src} -> {dst} code {values['icmp.code']}"] += 1
    elif values["icmpv6.type"] == "1" and src:
        tally.unreachable[f"{src} -> {dst} code {values['icmpv6.code']}"] += 1


def _conversation(tally: _Tally, file: str, line: str) -> None:
    """A "C" line: proto, tshark's stream index, one end, the other, packets, bytes, and for TCP whether
    it carried more than SYNs and resets (either direction of a stream adds up; a port pair reused by a
    later connection is another conversation, as in tshark's)."""
    proto, stream, a, b, packets, size, beyond_handshake = line.split("\t")
    if beyond_handshake == "1":
        tally.beyond_handshake.add((file, stream))
    first, second = sorted((a, b))
    entry = tally.conversations.setdefault((proto, stream, first, second), [0, 0])
    entry[0] += _int(packets)
    entry[1] += _int(size)


def _hierarchy(tally: _Tally, lines: Sequence[str]) -> None:
    """tshark's Protocol Hierarchy Statistics, each protocol by its path below the frame
    ("eth:ip:tcp")."""
    path: list[str] = []
    for line in lines:
        match = PHS_LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 2
        path[depth:] = [match["name"]]
        if depth == 0:
            continue  # "frame": every packet
        key = ":".join(path[1:])
        tally.protocols[key] += int(match["frames"])
        tally.protocol_bytes[key] += int(match["bytes"])


def _read(paths: Sequence[Path], max_packets: int | None, progress: Progress | None) -> _Tally:
    tally = _Tally()
    with resources.as_file(resources.files(__package__).joinpath("analyze.lua")) as script:
        for path in paths:
            _read_file(tally, path, script, max_packets, progress)
    return tally


def _read_file(
    tally: _Tally, path: Path, script: Path, max_packets: int | None, progress: Progress | None
) -> None:
    """One tshark pass over `path` (analyze.lua and the protocol hierarchy) while esxcap's own pass reads
    the same file; a packet tshark names waits for esxcap's pass to reach it."""
    before = tally.packets
    sightings = _Sightings(path, tally, max_packets)
    output = _TsharkOutput(tally, str(path), sightings, progress)
    with tempfile.TemporaryFile() as stderr:
        argv = _tshark_argv(path, script, max_packets)
        tshark = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        assert tshark.stdout is not None
        try:
            lines = _Lines(tshark.stdout.fileno())
            while not sightings.done:
                sightings.step(SIGHTINGS_STEP)
                output.take(lines.available())
            for taken in lines.rest():
                output.take(taken)
        finally:
            tshark.stdout.close()
            status = tshark.wait()
            sightings.close()
        stderr.seek(0)
        said = stderr.read().decode("utf-8", "replace")
    if status == 0 and not output.started:
        raise UsageError(
            "this tshark did not run esxcap's Lua script (a build without Lua?)",
            "install a tshark built with Lua (Wireshark's own packages and the Linux distributions' are)",
        )
    if status != 0:
        problem = f"tshark could not read {path}: {_last_line(said) or f'exit status {status}'}"
        if tally.packets == before:
            raise UsageError(problem, "check the file with capinfos")
        tally.read_errors.append(f"{problem} (what comes before is counted)")
    _hierarchy(tally, output.hierarchy)


SIGHTINGS_STEP = 4096
"""Packets esxcap's pass reads between two looks at tshark's output."""


class _Lines:
    """Lines from a pipe: those already there (without waiting), or all the rest as they come."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._tail = b""
        os.set_blocking(fd, False)

    def available(self) -> list[str]:
        chunks = [self._tail]
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return self._split(b"".join(chunks))

    def rest(self) -> Iterator[list[str]]:
        """All the rest, a pipe's read at a time (tshark may still print a line per packet of a long
        file after esxcap's pass has ended: they are never all held at once)."""
        os.set_blocking(self._fd, True)
        while chunk := os.read(self._fd, 1 << 16):
            yield self._split(self._tail + chunk)
        yield self._split(self._tail + b"\n")

    def _split(self, data: bytes) -> list[str]:
        *whole, self._tail = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in whole]


class _TsharkOutput:
    """What analyze.lua and -z io,phs print, taken into the tally; a packet line waits until esxcap's
    pass has read that packet (or has ended); tshark's packet counts go to `progress`."""

    def __init__(self, tally: _Tally, file: str, sightings: _Sightings, progress: Progress | None) -> None:
        self._tally = tally
        self._progress = progress
        self._file = file
        self._sightings = sightings
        self._waiting: deque[dict[str, str]] = deque()
        self._skipped = 0
        """Records tshark numbered that are no packets ("S" lines so far): tshark's frame number less
        these is esxcap's packet number."""
        self.started = False
        self.hierarchy: list[str] = []

    def take(self, lines: Sequence[str]) -> None:
        for line in lines:
            tag, _, rest = line.partition("\t")
            if tag == "P":
                values = dict(zip(PROBLEM_FIELDS, [*rest.split("\t"), *EMPTY], strict=False))
                values["number"] = str(_int(values["number"]) - self._skipped)
                self._waiting.append(values)
            elif tag == "S":
                self._skipped += 1
            elif tag == "C":
                _conversation(self._tally, self._file, rest)
            elif tag == "N":
                if self._progress is not None:
                    self._progress(Path(self._file).name, _int(rest))
            elif line == SCRIPT_STARTED:
                self.started = True
            elif line:
                self.hierarchy.append(line)
            self._settle()

    def _settle(self) -> None:
        """The waiting packet lines esxcap's pass has reached, taken into the tally (line by line: a
        million SYNs are never a million waiting lines once esxcap's pass has read their packets)."""
        sightings = self._sightings
        while self._waiting and (sightings.done or _int(self._waiting[0]["number"]) <= sightings.read):
            values = self._waiting.popleft()
            _problem(self._tally, self._file, values, sightings.is_copy(_int(values["number"])))


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and "Running as user" not in line]
    return lines[-1].strip().removeprefix("tshark: ") if lines else ""


def _document(paths: Sequence[Path], tally: _Tally, top: int) -> dict[str, Any]:
    points: Counter[str] = Counter()
    for (_, _), (name, packets, _) in tally.interfaces.items():
        parts = str(name).split(":")
        points[parts[2] if len(parts) >= 4 else str(name)] += packets
    conversations = sorted(tally.conversations.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "files": [str(p) for p in paths],
        "packets": tally.packets,
        "bytes": tally.bytes,
        "partial": tally.truncated,
        "read_errors": tally.read_errors,
        "interfaces": [
            {"file": f, "id": int(i), "name": n, "packets": p, "bytes": b}
            for (f, i), (n, p, b) in tally.interfaces.items()
        ],
        "capture_points": dict(points),
        "protocols": [
            {"path": k, "packets": v, "bytes": tally.protocol_bytes[k]}
            for k, v in sorted(tally.protocols.items())
        ],
        "conversations": [
            {"proto": proto, "a": a, "b": b, "packets": packets, "bytes": size}
            for (proto, _, a, b), (packets, size) in conversations[:top]
        ],
        "conversation_count": {
            proto: sum(1 for k in tally.conversations if k[0] == proto) for proto in ("tcp", "udp")
        },
        "tcp": {
            "retransmissions": tally.retransmissions,
            "duplicate_acks": tally.duplicate_acks,
            "resets": tally.resets,
            "zero_windows": tally.zero_windows,
            "failed_handshakes": len(tally.syn_streams - tally.synack_streams - tally.beyond_handshake),
        },
        "tcp_copies_not_counted": tally.copies,
        "dns_errors": dict(tally.dns_errors),
        "icmp_unreachable": dict(tally.unreachable),
    }


def analyze_files(
    paths: Sequence[Path],
    top: int = 10,
    max_packets: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The analysis document of one or more captures (each at most `max_packets` packets read);
    `progress` hears (file name, packets read) every PROGRESS_EVERY packets."""
    require_tshark()
    return _document(paths, _read(paths, max_packets, progress), top)


def highlights(doc: dict[str, Any]) -> list[str]:
    """A few lines for the bundle README."""
    tcp = doc["tcp"]
    lines = [
        f"{doc['packets']} packets, {doc['bytes']} bytes"
        + (" (first packets only)" if doc["partial"] else "")
    ]
    problems = [f"{v} {k.replace('_', ' ')}" for k, v in tcp.items() if v]
    lines.append(
        "TCP: "
        + (", ".join(problems) if problems else "no retransmissions, resets or zero windows")
        + " (each packet counted once, however many capture points saw it)"
    )
    lines += [f"not read to the end: {problem}" for problem in doc["read_errors"]]
    if doc["dns_errors"]:
        lines.append(f"DNS errors: {sum(doc['dns_errors'].values())}")
    if doc["icmp_unreachable"]:
        lines.append(f"ICMP unreachables: {sum(doc['icmp_unreachable'].values())}")
    lines += [
        f"top conversation: {c['proto']} {c['a']} <-> {c['b']}, {c['packets']} packets"
        for c in doc["conversations"][:1]
    ]
    return lines
