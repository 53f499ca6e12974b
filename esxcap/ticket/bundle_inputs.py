"""What a bundle is made from and what it is called: the capture files behind the paths given (folders
for their captures, default ./captures), the archive's format (from --format or the name's ending),
its default name and the size of its parts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from esxcap.errors import UsageError
from esxcap.plan.sizes import SIZE_FORMS, size_in_bytes

FORMATS = ("zip", "tar.gz")
CAPTURE_SUFFIXES = (".pcapng", ".pcap")
DEFAULT_CAPTURES = Path("captures")
_BUNDLE_FILE = re.compile(r"\.(zip|tar\.gz|tgz)(\.\d{3}|\.parts\.sha256|\.mapping\.json)?$")
"""An archive and the files written beside it: its parts, their checksum list, its address mapping."""


def collect_captures(paths: Sequence[Path], warn: Callable[[str], None]) -> list[Path]:
    """The capture files to bundle: files as given, folders (default ./captures) for their `.pcapng`
    and `.pcap` files; sidecars, `.part` files and other files in folders are skipped with a note (earlier
    bundles written there, with their parts and mappings, without one), a `.part` given by name is kept
    with a warning, a file given twice is bundled once."""
    found: list[Path] = []
    for path in paths or [DEFAULT_CAPTURES]:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file())
            found += [p for p in inside if p.suffix in CAPTURE_SUFFIXES]
            skipped = [
                p.name for p in inside if p.suffix not in CAPTURE_SUFFIXES and not _BUNDLE_FILE.search(p.name)
            ]
            if skipped:
                warn(
                    f"{path}: skipped {len(skipped)} files that are not captures ({', '.join(skipped[:5])}"
                    f"{', ...' if len(skipped) > 5 else ''}): sidecars are read with their capture"
                )
            continue
        if not path.is_file():
            raise UsageError(
                f"no such capture file or folder: {path}", "check the path (default: ./captures)"
            )
        if path.name.endswith(".part"):
            warn(f"{path} is a capture still being written or cut short: bundled as it is")
        found.append(path)
    unique: dict[tuple[int, int], Path] = {}
    for path in found:
        info = path.stat()
        first = unique.setdefault((info.st_dev, info.st_ino), path)
        if first is not path:
            warn(f"{path} is the same file as {first}: bundled once")
    if not unique:
        raise UsageError(
            f"no capture files in {', '.join(map(str, paths or [DEFAULT_CAPTURES]))}",
            "give capture files or a folder holding .pcapng/.pcap files",
        )
    return list(unique.values())


def archive_format(out: Path, fmt: str | None) -> str:
    """The archive's format: --format, else the name's ending (`.zip`, `.tar.gz`, `.tgz`; zip when it
    has none); a name whose ending says another format than --format is refused."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: not an archive format", "use --format zip or tar.gz")
    named = "tar.gz" if out.name.endswith((".tar.gz", ".tgz")) else "zip" if out.suffix == ".zip" else None
    if fmt is not None and named is not None and fmt != named:
        raise UsageError(
            f"{out} is named as a {named} archive but --format is {fmt}",
            f"drop --format (the name decides), or name the file .{fmt}",
        )
    return fmt or named or "zip"


def archive_stem(name: str) -> str:
    """The archive's name without its format ending (the top folder inside it)."""
    for ending in (".tar.gz", ".tgz", ".zip"):
        if name.endswith(ending):
            return name.removesuffix(ending)
    return name


def parse_size(text: str) -> int:
    """--split-size TEXT in bytes (see esxcap.plan.sizes), at least 1 KiB."""
    size = size_in_bytes(text)
    if size is None:
        raise UsageError(f"--split-size {text}: not a size", f"give {SIZE_FORMS}")
    if size < 1024:
        raise UsageError(f"--split-size {text}: parts must hold at least 1 KiB", "e.g. --split-size 10M")
    return size


def default_name(ticket: str, fmt: str) -> str:
    safe = re.sub(r"[^\w.-]+", "_", ticket).strip("_") or "bundle"
    return f"{safe}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{fmt}"
