"""What esxcap reads from pktcap-uw's own text: the `-A` capture-point listing and the closing trailer.

Both are read leniently, because neither was ever seen in full from every version (REFERENCE §1.5, §9):

* `-A`: point lines (`N: Name -- description` or a bare `Name`) are taken; a `pktcap: ` prefix (7.x
  status lines, folded in by `2>&1`) is removed first; blank lines and one leading `...:` title are
  expected; any other line, or a point listed twice, is skipped and reported. A listing with no point at
  all is unreadable: the caller falls back to the version's table (`Capabilities.for_version`).
* Trailer: `Dumped N packet(s) to ..., dropped M packets.` (6.0+) or 5.5's
  `Dump: N, broken : B, drop: D, file err: E` (the last one printed wins: 5.5 also prints it as a live
  counter in file mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from esxcap.esxi.capabilities import is_listing_header, point_name

STATUS_PREFIX = "pktcap: "
_DUMPED = re.compile(rb"Dumped (\d+) packets? to .*?, dropped (\d+) packets?")
_DUMP_55 = re.compile(rb"Dump: (\d+), broken ?: ?(\d+), drop: (\d+), file err: (\d+)")


@dataclass(frozen=True)
class PointListing:
    """The points a host listed (empty when none could be read) and what was skipped, for warnings."""

    points: tuple[str, ...]
    skipped: tuple[str, ...]

    def warnings(self, host: str) -> list[str]:
        said = [f"{host}: pktcap-uw -A: skipped {text}" for text in self.skipped]
        if not self.points:
            said.append(f"{host}: pktcap-uw -A listed no capture point: using the table for its ESXi version")
        return said


def read_available_points(text: str) -> PointListing:
    """`pktcap-uw -A` read leniently (see the module docstring); never raises."""
    names: list[str] = []
    skipped: list[str] = []
    header_seen = False
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.removeprefix(STATUS_PREFIX)
        if not line.strip():
            continue
        name = point_name(line)
        if name is None:
            if not header_seen and not names and is_listing_header(line):
                header_seen = True
                continue
            skipped.append(f"line {line_no} (not a capture point): {raw.strip()[:120]!r}")
        elif name in names:
            skipped.append(f"line {line_no} ({name} listed twice): {raw.strip()[:120]!r}")
        else:
            names.append(name)
    return PointListing(tuple(names), tuple(skipped))


@dataclass(frozen=True)
class Trailer:
    """pktcap-uw's closing counts; `broken` and `file_errors` only from 5.5's form."""

    dumped: int
    dropped: int
    broken: int | None = None
    file_errors: int | None = None


def parse_trailer(stderr: bytes) -> Trailer | None:
    """The last trailer in pktcap-uw's stderr, in either form; None when it never printed one."""
    found: list[tuple[int, Trailer]] = []
    for match in _DUMPED.finditer(stderr):
        found.append((match.start(), Trailer(int(match[1]), int(match[2]))))
    for match in _DUMP_55.finditer(stderr):
        trailer = Trailer(int(match[1]), int(match[3]), int(match[2]), int(match[4]))
        found.append((match.start(), trailer))
    return max(found, key=lambda item: item[0])[1] if found else None
