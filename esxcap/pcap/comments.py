"""The comment formats esxcap reads back from its own pcapng files (pure).

A capture records each host's measured clock offset in the comment of every interface of that host
(`esxcap.capture.clock.clock_comment` writes it); the path view reads it back here to correct
timestamps that were kept as read.
"""

from __future__ import annotations

import re

_CLOCK = re.compile(
    r"clock offset (?P<offset>[+-]\d+\.\d+) ms ±(?P<bound>\d+\.\d+) ms "
    r".*timestamps (?P<state>aligned|as read)"
)


def parse_clock_comment(text: str) -> tuple[int, bool] | None:
    """(offset ns, timestamps already aligned) from a clock comment, or None for any other text."""
    m = _CLOCK.search(text)
    if not m:
        return None
    return round(float(m.group("offset")) * 1e6), m.group("state") == "aligned"
