"""Sizes as admins write them (`500k`, `10M`, `1.5GiB`, `2048`) and as esxcap shows them (`9.5 MiB`).

One reading for every size option (--max-bytes, bundle --split-size, ring file sizes): K, M, G and T are
powers of 1024, with or without `iB`/`B` (`10M` = `10MiB` = `10MB` = 10 x 1024 x 1024 bytes).
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
SIZE_FORMS = "a number of bytes, or with K, M, G, T (powers of 1024, e.g. 500K, 10M, 1.5GiB)"
"""What a size option accepts, for messages."""


def size_in_bytes(text: str) -> int | None:
    """`500k`, `10M`, `1.5GiB`, `2048` -> bytes; None when `text` is no size."""
    match = _SIZE.match(text)
    if not match:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    return int(number * 1024 ** ("kmgt".index(unit) + 1)) if unit else int(number)


def human_size(count: int) -> str:
    """Bytes as a person reads them: `98 B`, `9.5 MiB`, `4.0 EiB`."""
    value, unit = float(count), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{count} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"
