"""The one command that reads a host's clock, and what it prints (pure; esxcap.capture.clock times it).

BusyBox `date` prints `%N` literally unless built with FEATURE_DATE_NANO, off by default (REFERENCE §9),
so nanoseconds cannot be counted on. The script prints one `date +%s.%N` reading; when that reading has
no nanoseconds, it samples `date +%s` in a loop until the second ticks over and prints
`edge SECONDS SAMPLES` at once: the client times when that line arrives, which places the host's second
edge on its own clock to within the round trip and one sampling step. POSIX sh, BusyBox ash compatible;
at most `MAX_SAMPLES` samples (a `date` that never ticks ends the loop too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SAMPLES = 20000
CLOCK_SCRIPT = (
    'd=$(date +%s.%N); echo "$d"; '
    "case $d in *.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;; *) "
    "s=${d%%.*}; t=$s; n=0; "
    f'while [ "$t" = "$s" ] && [ $n -lt {MAX_SAMPLES} ]; do t=$(date +%s); n=$((n+1)); done; '
    'echo "edge $t $n";; esac'
)
CLOCK_ARGV = ("sh", "-c", CLOCK_SCRIPT)
_EDGE = re.compile(r"edge (\d+) (\d+)")


@dataclass(frozen=True)
class Edge:
    """The second the host's clock ticked over to, and how many `date +%s` samples it took to see it."""

    seconds: int
    samples: int


def parse_edge(line: str) -> Edge | None:
    """`edge SECONDS SAMPLES` -> Edge; None for any other line."""
    match = _EDGE.fullmatch(line.strip())
    return Edge(int(match[1]), int(match[2])) if match else None
