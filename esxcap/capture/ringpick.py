"""`bundle --last N / --around TIME`: finding the rings of finished `--ring` captures (folders, bases,
segments) and picking their segments."""

from __future__ import annotations

import calendar
import contextlib
import datetime
import math
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from esxcap.capture.ring import SEGMENT_NAME
from esxcap.errors import UsageError


def find_rings(path: Path, skip: Callable[[str], None] = lambda _said: None) -> dict[Path, list[Path]]:
    """The rings at `path` (base -> its segments, oldest first): every ring in a folder, the ring of a
    base (`<base>` or its sidecar `<base>.json`), or the ring a segment belongs to. Only regular files
    of this user count as segments (esxcap writes them so): a link or another user's file named like
    one, in a shared folder, is left out and said to `skip`."""
    if path.is_dir():
        candidates, wanted = list(path.iterdir()), None
    else:
        match = SEGMENT_NAME.match(path.name)
        wanted = match.group("base") if match else path.name.removesuffix(".json")
        candidates = list(path.parent.iterdir()) if path.parent.is_dir() else []
    rings: dict[Path, list[tuple[int, Path]]] = {}
    for candidate in candidates:
        match = SEGMENT_NAME.match(candidate.name)
        if not match or wanted not in (None, match.group("base")):
            continue
        foreign = _not_own_file(candidate)
        if foreign is not None:
            skip(f"skipped {candidate.name}: {foreign}, not a segment esxcap wrote")
        else:
            base = candidate.with_name(match.group("base"))
            rings.setdefault(base, []).append((int(match.group("number")), candidate))
    return {base: [p for _n, p in sorted(found)] for base, found in sorted(rings.items())}


def _not_own_file(path: Path) -> str | None:
    """Why `path` cannot be a segment of this user's ring (None when it can)."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return "gone"
    if stat.S_ISLNK(status.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_uid != os.getuid():
        return "owned by another user"
    return None


def segment_start(segment: Path) -> float:
    """When a segment's first packet came (seconds since 1970, from its name)."""
    match = SEGMENT_NAME.match(segment.name)
    assert match is not None
    return calendar.timegm(time.strptime(match.group("utc"), "%Y%m%dT%H%M%SZ"))


def parse_time(text: str) -> float:
    """`2026-12-07T01:15:30Z`, `2026-12-07 01:15:30` (UTC unless an offset is given) or seconds since
    1970 -> seconds since 1970."""
    with contextlib.suppress(ValueError):
        seconds = float(text)
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--around {text}: not a time",
            "e.g. --around 2026-12-07T01:15:30Z (UTC unless an offset is given)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def around(segments: Sequence[Path], moment: float, neighbours: int = 1) -> list[Path]:
    """The segment holding `moment` (it runs until the next one starts; the last until it was closed)
    with `neighbours` on each side; [] when the ring does not reach that time."""
    starts = [segment_start(s) for s in segments]
    ends = [*starts[1:], segments[-1].stat().st_mtime + 1] if segments else []
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if start <= moment < end:
            return list(segments[max(0, index - neighbours) : index + neighbours + 1])
    return []


def pick_segments(
    paths: Sequence[Path], last: int | None, at: str | None, skip: Callable[[str], None] = lambda _said: None
) -> list[Path]:
    """`bundle`'s inputs with --last N / --around TIME: those segments of every ring found at `paths`
    (folders, bases, segments); a clear error when no ring is there or no segment matches; files named
    like segments but not this user's are said to `skip`."""
    moment = parse_time(at) if at is not None else None
    picked: list[Path] = []
    for path in paths:
        rings = find_rings(path, skip)
        if not rings:
            raise UsageError(
                f"no ring segments (<base>_00001_<UTC>.pcapng) at {path}",
                "give the folder of a --ring capture or its base name",
            )
        for base, segments in rings.items():
            chosen = segments[-last:] if last is not None else segments
            if moment is not None:
                chosen = around(chosen, moment)
                if not chosen:
                    span = segments[-last:] if last is not None else segments
                    first = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(segment_start(span[0])))
                    latest = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(span[-1].stat().st_mtime))
                    which = f"its last {last} segments run" if last is not None else "its segments run"
                    raise UsageError(
                        f"ring {base}: no segment covers {at} ({which} from {first} to {latest})",
                        "give a time within that span, or --last N" if last is None else "drop --last",
                    )
            picked += chosen
    return picked
