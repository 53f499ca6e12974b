"""What `esxcap doctor` found, remembered per ESXi build in the user's cache
($XDG_CACHE_HOME/esxcap/doctor/BUILD.json, else ~/.cache/esxcap/doctor/BUILD.json), for captures to use:
hosts of one build behave alike (the same pktcap-uw, BusyBox and sshd).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esxcap.ssh.doctor import HostReport

SCHEMA = "esxcap-doctor/1"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "esxcap" / "doctor"


def _path(build: str, env: Mapping[str, str] | None) -> Path | None:
    return cache_dir(env) / f"{build}.json" if build.isdigit() else None


def remember(report: HostReport, env: Mapping[str, str] | None = None) -> Path | None:
    """Store one host's report under its build (the newest check of a build wins); its path, or None
    when the build is unknown."""
    path = None if report.version is None else _path(report.version.build, env)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": SCHEMA,
        "checked_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **report.as_dict(),
    }
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def recall(build: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The remembered report of a build, or None (never checked, or unreadable)."""
    path = _path(build, env)
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None


def finding_data(build: str, check: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The data of one remembered finding (e.g. "sigint": {"stops": False, ...}), or None."""
    doc = recall(build, env)
    for finding in doc.get("findings", []) if doc else []:
        if (
            isinstance(finding, dict)
            and finding.get("check") == check
            and isinstance(finding.get("data"), dict)
        ):
            return dict(finding["data"])
    return None


def int_ignored(build: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether `doctor` found on this build that INT does not stop pktcap-uw under the wrapper."""
    data = finding_data(build, "sigint", env)
    return data is not None and data.get("stops") is False
