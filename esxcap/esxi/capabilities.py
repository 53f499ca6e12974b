"""What pktcap-uw can do on a given ESXi version, and the `pktcap-uw -A` capture-point listing.

The table follows REFERENCE.md §1.1/§1.5/§9. Where the reference marks a feature [INFERRED] or [REPORTED]
(`--dir 2`, several points per `--capture`, the Tcpip/UplinkKernel/overlay/ENS points, the later port
filters), this table enables it from 6.7, the first version with evidence. A host that lists its points
(`pktcap-uw -A`) overrides the point list: `Capabilities.with_points`.

Evidence behind the rows that changed with later sources (REFERENCE §9):

* Vmxnet3Rx/Tx was renamed VnicRx/Tx *within* 6.7 (the 6.7 English guide says Vmxnet3Rx/Tx, 6.7 U2+
  transcripts use VnicRx): the 6.7 row lists both, the planner prefers VnicRx, and a host's own `-A`
  listing decides. 8.0's guide mixes both names; 7.0+ hosts are only seen with VnicRx/Tx.
* 8.x lists about 45 points with `-A`, e.g. `ENSInput` (the only new name seen in public output; the
  others are known only from a host's own listing, which then wins).
* `UplinkRcv` is reported "marked obsoleted" in 8.x's `-A` listing, yet still listed (PreDVFilter and
  PostDVFilter are entries 12 and 13 on 8.0.3 only with it): it stays in the 8.x row and is accepted
  when asked for by name, but esxcap plans UplinkRcvKernel wherever that exists (6.7+).
* `--capture Drop --switchport X` is used on 8.x (`drop_with_port`); before, Drop stands alone.
* `-K/--kernelside` is used with `--switchport` as well as with `--uplink`.
* `--rcf '<pcap filter expression>'` exists from vSphere 7 (`rcf`).

The real `-A` text was never seen; `render_available_points` prints the inferred layout (a header, then
`\\tN: Name -- description`) and the simulator uses it, so parser and simulator agree by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from esxcap.errors import ParseError

Version = tuple[int, ...]

PKTCAP_FIRST = (5, 5)
V6_0 = (6, 0)
V6_7 = (6, 7)
V7_0 = (7, 0)
V8_0 = (8, 0)

# (name, first version, last version or None, description) in `pktcap-uw -A` order.
_POINTS: tuple[tuple[str, Version, Version | None, str], ...] = (
    ("Dynamic", PKTCAP_FIRST, None, "The dynamic inserted runtime capture point."),
    ("UplinkRcv", PKTCAP_FIRST, None, "The function that receives packets from uplink dev."),
    ("UplinkSnd", PKTCAP_FIRST, None, "Function to Tx packets on uplink."),
    ("Vmxnet3Tx", PKTCAP_FIRST, V6_7, "Function in vnic backend to Tx packets from guest."),
    ("Vmxnet3Rx", PKTCAP_FIRST, V6_7, "Function in vnic backend to Rx packets to guest."),
    ("VnicTx", V6_7, None, "Function in vnic backend to Tx packets from guest."),
    ("VnicRx", V6_7, None, "Function in vnic backend to Rx packets to guest."),
    ("PortInput", PKTCAP_FIRST, None, "Port_Input function of any given port."),
    ("IOChain", PKTCAP_FIRST, None, "The virtual switch port iochain capture point."),
    ("EtherswitchDispath", PKTCAP_FIRST, None, "Function that receives packets for switch."),
    ("EtherswitchOutput", PKTCAP_FIRST, None, "Function that sends out packets, from switch."),
    ("PortOutput", PKTCAP_FIRST, None, "Port_Output function of any given port."),
    ("TcpipDispatch", PKTCAP_FIRST, None, "Tcpip Dispatch function."),
    ("PreDVFilter", PKTCAP_FIRST, None, "The DVFIlter capture point."),
    ("PostDVFilter", PKTCAP_FIRST, None, "The DVFilter capture point."),
    ("Drop", PKTCAP_FIRST, None, "Dropped Packets capture point."),
    ("VdrRxLeaf", PKTCAP_FIRST, None, "The Leaf Rx IOChain for VDR."),
    ("VdrTxLeaf", PKTCAP_FIRST, None, "The Leaf Tx IOChain for VDR."),
    ("VdrRxTerminal", PKTCAP_FIRST, None, "Terminal Rx IOChain for VDR."),
    ("VdrTxTerminal", PKTCAP_FIRST, None, "Terminal Tx IOChain for VDR."),
    ("PktFree", PKTCAP_FIRST, None, "Packets freed point."),
    ("TcpipRx", V6_7, None, "Tcpip Rx point."),
    ("TcpipTx", V6_7, None, "Tcpip Tx point."),
    ("UplinkRcvKernel", V6_7, None, "Uplink Rx point in kernel."),
    ("UplinkSndKernel", V6_7, None, "Uplink Tx point in kernel."),
    ("PreOverlayInput", V6_7, None, "Before overlay input processing."),
    ("PostOverlayInput", V6_7, None, "After overlay input processing."),
    ("PreOverlayOutput", V6_7, None, "Before overlay output processing."),
    ("PostOverlayOutput", V6_7, None, "After overlay output processing."),
    ("EnsPortReaderRx", V6_7, None, "ENS port reader Rx point."),
    ("EnsPortWriterTx", V6_7, None, "ENS port writer Tx point."),
    ("EnsPortWriterQueue", V6_7, None, "ENS port writer queue point."),
    ("EnsPortWriterFlush", V6_7, None, "ENS port writer flush point."),
    ("ENSInput", V8_0, None, "ENS input point."),
)

KNOWN_POINTS: tuple[str, ...] = tuple(name for name, *_ in _POINTS)
DESCRIPTIONS: dict[str, str] = {name: text for name, _, _, text in _POINTS}
AVAILABLE_POINTS_HEADER = "Supported capture points:"

_NUMBERED = re.compile(r"\s*[0-9]+:\s+(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:\s+--(?:\s.*)?)?\s*")
_BARE = re.compile(r"\s*(?P<name>[A-Za-z][A-Za-z0-9_]*)\s*")


def version_label(version: Version) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class Capabilities:
    """pktcap-uw features of one ESXi version; `points` in `-A` order, from the table or from the host."""

    version: Version
    points: tuple[str, ...]
    points_from_host: bool
    dir_both: bool
    dir_words: bool
    stage_words: bool
    multi_point: bool
    later_port_filters: bool
    pcapng: bool
    function_offset: bool
    drop_with_port: bool
    rcf: bool

    @classmethod
    def for_version(cls, version: Version) -> Capabilities:
        """The table's view of `version` (newer versions than the table knows get the newest row)."""
        return cls(
            version=tuple(version),
            points=tuple(
                name
                for name, first, last, _ in _POINTS
                if first <= version[:2] and (last is None or version[:2] <= last)
            ),
            points_from_host=False,
            dir_both=version >= V6_7,
            dir_words=version >= V6_7,
            stage_words=version >= V8_0,
            multi_point=version >= V6_7,
            later_port_filters=version >= V6_7,
            pcapng=version >= V6_0,
            function_offset=version >= V8_0,
            drop_with_port=version >= V8_0,
            rcf=version >= V7_0,
        )

    def with_points(self, points: Iterable[str]) -> Capabilities:
        """The same host with the points it listed itself (`pktcap-uw -A`); they win over the table."""
        return replace(self, points=tuple(points), points_from_host=True)

    @property
    def has_pktcap(self) -> bool:
        return self.version >= PKTCAP_FIRST

    @property
    def label(self) -> str:
        return f"ESXi {version_label(self.version)}"

    def has_point(self, name: str) -> bool:
        return name in self.points


def render_available_points(points: Iterable[str]) -> str:
    """`pktcap-uw -A` as esxcap reads it: a header line, then `\\tN: Name -- description` per point."""
    lines = [AVAILABLE_POINTS_HEADER]
    for number, name in enumerate(points, start=1):
        lines.append(f"\t{number}: {name} -- {DESCRIPTIONS.get(name, 'Capture point.')}")
    return "\n".join(lines) + "\n"


def point_name(line: str) -> str | None:
    """The point a `pktcap-uw -A` line names (`N: Name -- description` or a bare `Name`), else None."""
    match = _NUMBERED.fullmatch(line) or _BARE.fullmatch(line)
    return match.group("name") if match else None


def is_listing_header(line: str) -> bool:
    """A `...:` title line such as `Supported capture points:`."""
    return line.rstrip().endswith(":") and "--" not in line


def parse_available_points(text: str) -> tuple[str, ...]:
    """Point names from `pktcap-uw -A`: `N: Name -- desc` or bare `Name` lines, an optional `...:` header.

    Anything else, a repeated name or an empty list raises ParseError (the strict reading; discovery uses
    the tolerant `esxcap.esxi.pktcap_output.read_available_points`).
    """
    command = "pktcap-uw -A"
    names: list[str] = []
    seen_content = False
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name = point_name(line)
        if name is None:
            if not seen_content and is_listing_header(line):
                seen_content = True
                continue
            raise ParseError(command, line_no, line, "not a capture point line")
        seen_content = True
        if name in names:
            raise ParseError(command, line_no, line, f"capture point {name} listed twice")
        names.append(name)
    if not names:
        raise ParseError(command, 0, text[:80], "no capture points listed")
    return tuple(names)
