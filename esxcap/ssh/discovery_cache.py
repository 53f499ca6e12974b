"""The discovery cache: per host, what a picker needs without SSH (ESXi version and build, the capture
points for that build, the targets), written by `discover`, by Wireshark's reload and by every extcap
capture, read by the extcap's `--extcap-config`.

One JSON file per host in `$XDG_CACHE_HOME/esxcap/discovery` (else `~/.cache/esxcap/discovery`), folder
0700 and files 0600 (target names are site information); each file is written whole under a private
temporary name and renamed. A missing, unreadable or foreign file reads as "not discovered yet".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from esxcap.esxi.capabilities import Capabilities
from esxcap.esxi.models import HostFacts
from esxcap.plan.choices import Choice, target_choices

SCHEMA = "esxcap-discovery-cache/1"


@dataclass(frozen=True)
class CachedHost:
    """What the cache keeps of one host."""

    host: str
    version: str
    build: str
    points: tuple[str, ...]
    points_from_host: bool
    targets: tuple[Choice, ...]
    written: float


def cache_dir(env: Mapping[str, str], home: Path) -> Path:
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else home / ".cache"
    return root / "esxcap" / "discovery"


def cached_host(host: str, facts: HostFacts) -> CachedHost:
    """The cache entry of freshly discovered facts (points from the host's own list, else its version)."""
    caps = Capabilities.for_version(facts.version.version_tuple)
    if facts.capture_points:
        caps = caps.with_points(facts.capture_points)
    return CachedHost(
        host=host,
        version=facts.version.version,
        build=facts.version.build,
        points=caps.points,
        points_from_host=caps.points_from_host,
        targets=tuple(target_choices(facts)),
        written=time.time(),
    )


def _file(folder: Path, host: str) -> Path:
    return folder / f"{quote(host, safe='')}.json"


def save(folder: Path, entry: CachedHost) -> Path:
    """Write one host's entry (raises OSError when the folder cannot be written)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "host": entry.host,
        "version": entry.version,
        "build": entry.build,
        "points": list(entry.points),
        "points_from_host": entry.points_from_host,
        "targets": [[c.value, c.display] for c in entry.targets],
        "written": entry.written,
    }
    fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False)
        path = _file(folder, entry.host)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def load(folder: Path, host: str) -> CachedHost | None:
    """One host's entry, or None when it was never written or cannot be read."""
    try:
        document = json.loads(_file(folder, host).read_text(encoding="utf-8"))
        if document.get("schema") != SCHEMA or document.get("host") != host:
            return None
        return CachedHost(
            host=host,
            version=str(document["version"]),
            build=str(document["build"]),
            points=tuple(str(p) for p in document["points"]),
            points_from_host=bool(document["points_from_host"]),
            targets=tuple(Choice(str(v), str(d)) for v, d in document["targets"]),
            written=float(document["written"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(folder: Path, discovered: Iterable[tuple[str, HostFacts]]) -> dict[str, CachedHost]:
    """Save freshly discovered hosts; a cache that cannot be written only costs the next dialog a reload."""
    entries = {}
    for host, facts in discovered:
        entries[host] = entry = cached_host(host, facts)
        with contextlib.suppress(OSError):
            save(folder, entry)
    return entries
