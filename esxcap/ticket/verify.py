"""`esxcap verify`: re-check a bundle archive (zip or tar.gz, whole or as `.001`... parts) against its own
SHA256SUMS and manifest.json, and name every file that is missing, altered or not listed.

An archive is read as untrusted: members that are not plain files or folders (symlinks, hard links,
FIFOs, devices), names that are absolute or climb out with `..`, and names given twice (or shadowing
one another once normalised) are refused with the reason. The work is bounded: a zip whose entries
overlap (one compressed stream counted many times) or that declares more than MAX_RATIO times its own
size is refused before anything is decompressed, and reading a tar.gz stops past the same bound.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from esxcap.errors import UsageError
from esxcap.ticket.bundle import MANIFEST, PARTS_SUFFIX, SUMS, join_parts, parse_sums, sha256_file

_CHUNK = 1 << 20
MAX_RATIO = 1100
"""Declared bytes per archive byte above which an archive is refused unread (deflate and gzip cannot
go past about 1032:1; more means entries share data or sizes are forged)."""
_ZIP_LOCAL_HEADER = 30


@dataclass(frozen=True)
class VerifyReport:
    archive: Path
    checked: tuple[str, ...]
    problems: tuple[str, ...]
    ticket: str | None

    @property
    def ok(self) -> bool:
        return not self.problems


def _name_problem(name: str) -> str | None:
    """Why a member name is unsafe to unpack, or None."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"unsafe member: {name} (an absolute name)"
    if ".." in parts:
        return f"unsafe member: {name} (climbs out of the archive with ..)"
    return None


class _Names:
    """The member names seen so far: refuses unsafe names and names that repeat or shadow one another
    once normalised (`a/./b`, `a//b`, `a/b/` are all `a/b`)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.seen: dict[str, str] = {}

    def accept(self, name: str) -> bool:
        unsafe = _name_problem(name)
        if unsafe:
            self.problems.append(unsafe)
            return False
        key = posixpath.normpath(name.replace("\\", "/")).removeprefix("./")
        first = self.seen.get(key)
        if first is not None:
            what = "is in the archive twice" if first == name else f"and {first} are the same path"
            self.problems.append(f"duplicate member: {name} {what} (one would hide the other)")
            return False
        self.seen[key] = name
        return True


def _zip_layout_problems(infos: list[zipfile.ZipInfo], archive_size: int) -> list[str]:
    """Overlapping entries and forged sizes, found from the central directory alone."""
    problems = []
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for info, following in itertools.pairwise(ordered):
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        name_size = len(info.filename.encode(encoding, errors="replace"))
        end = info.header_offset + _ZIP_LOCAL_HEADER + name_size + info.compress_size
        if following.header_offset < end:
            problems.append(f"unsafe archive: entries {info.filename} and {following.filename} overlap")
            break
    declared = sum(i.file_size for i in infos)
    if declared > MAX_RATIO * max(archive_size, 1):
        problems.append(
            f"unsafe archive: it declares {declared} bytes from {archive_size} (more than {MAX_RATIO}:1)"
        )
    for info in infos:
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"unsafe member: {info.filename} (a symbolic link)")
    return problems


_TAR_KINDS = (
    (tarfile.TarInfo.issym, "a symbolic link"),
    (tarfile.TarInfo.islnk, "a hard link"),
    (tarfile.TarInfo.isfifo, "a FIFO"),
    (tarfile.TarInfo.ischr, "a character device"),
    (tarfile.TarInfo.isblk, "a block device"),
)


def _members(path: Path, problems: list[str]) -> Iterator[tuple[str, IO[bytes] | None]]:
    """(name, reader) for every regular file of the archive, whatever its format; what makes the
    archive unsafe goes to `problems` (a zip's layout problems stop it before any member is read)."""
    names = _Names(problems)
    size = path.stat().st_size
    with path.open("rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    if zipped:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            layout = _zip_layout_problems(infos, size)
            if layout:
                problems += layout
                return
            for info in infos:
                if names.accept(info.filename) and not info.is_dir():
                    with archive.open(info) as member:
                        yield info.filename, member
        return
    budget = MAX_RATIO * max(size, 1)
    with tarfile.open(path, "r:*") as tar:
        for tinfo in tar:
            kind = next((what for test, what in _TAR_KINDS if test(tinfo)), None)
            if kind is not None:
                problems.append(f"unsafe member: {tinfo.name} ({kind})")
                continue
            if not names.accept(tinfo.name):
                continue
            budget -= tinfo.size
            if budget < 0:
                problems.append(f"unsafe archive: it declares more than {MAX_RATIO} bytes per byte; stopped")
                return
            if tinfo.isfile():
                yield tinfo.name, tar.extractfile(tinfo)


def _digest(reader: IO[bytes] | None) -> tuple[str, bytes]:
    """SHA-256 of a member, and its bytes when small (the sums and the manifest are read too)."""
    digest, head = hashlib.sha256(), bytearray()
    while reader is not None and (chunk := reader.read(_CHUNK)):
        digest.update(chunk)
        if len(head) < 16 * _CHUNK:
            head += chunk
    return digest.hexdigest(), bytes(head)


def _parts_of(path: Path) -> list[Path] | None:
    first = path if path.name.endswith(".001") else path.with_name(path.name + ".001")
    if not first.is_file() or (path.is_file() and first != path):
        return None
    stem = first.name.removesuffix(".001")
    parts, n = [], 1
    while (part := first.with_name(f"{stem}.{n:03d}")).is_file():
        parts.append(part)
        n += 1
    return parts


def _check_parts(parts: list[Path]) -> list[str]:
    stem = parts[0].name.removesuffix(".001")
    listing = parts[0].with_name(stem + PARTS_SUFFIX)
    if not listing.is_file():
        return []
    listed = {k: v for k, v in parse_sums(listing.read_text(errors="replace")).items() if k != stem}
    part_name = re.compile(re.escape(stem) + r"\.\d{3}")
    problems = [
        f"not a part of {stem} in {listing.name}: {name}" for name in listed if not part_name.fullmatch(name)
    ]
    expected = {k: v for k, v in listed.items() if part_name.fullmatch(k)}
    problems += [f"missing part: {n}" for n in sorted(expected) if not parts[0].with_name(n).is_file()]
    problems += [
        f"altered part: {p.name}" for p in parts if p.name in expected and sha256_file(p) != expected[p.name]
    ]
    return problems + [
        f"part not listed in {listing.name}: {p.name}" for p in parts if p.name not in expected
    ]


def verify_archive(path: Path) -> VerifyReport:
    """Every checksum and manifest entry of the archive re-checked."""
    parts = _parts_of(path)
    if parts is None and not path.is_file():
        raise UsageError(f"no such archive: {path}", "give the .zip/.tar.gz, or the first part (.001)")
    if parts is None:
        return _verify_whole(path, [])
    with tempfile.NamedTemporaryFile(prefix="esxcap-verify-") as joined:
        join_parts(parts, joined)
        joined.flush()
        return _verify_whole(Path(joined.name), _check_parts(parts), shown=path)


def _verify_whole(path: Path, problems: list[str], shown: Path | None = None) -> VerifyReport:
    digests: dict[str, str] = {}
    texts: dict[str, bytes] = {}
    try:
        for name, reader in _members(path, problems):
            top, _, rel = name.partition("/")
            rel = rel or top
            try:
                digests[rel], head = _digest(reader)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                problems.append(f"altered: {rel} (unreadable in the archive: {exc})")
                continue
            if rel in (SUMS, MANIFEST):
                texts[rel] = head
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        problems.append(f"archive unreadable: {exc}")
    sums = parse_sums(texts.get(SUMS, b"").decode(errors="replace"))
    if SUMS not in digests:
        problems.append(f"missing: {SUMS}")
    for name, expected in sums.items():
        if name not in digests and not any(p.startswith(f"altered: {name} ") for p in problems):
            problems.append(f"missing: {name}")
        elif name in digests and digests[name] != expected:
            problems.append(f"altered: {name} (SHA-256 differs from {SUMS})")
    ticket = None
    if MANIFEST not in texts:
        if MANIFEST not in sums:
            problems.append(f"missing: {MANIFEST}")
    else:
        try:
            manifest = json.loads(texts[MANIFEST])
            ticket = manifest.get("ticket")
            for entry in manifest.get("files", []):
                name = entry.get("path")
                if name not in sums:
                    problems.append(f"not in {SUMS}: {name} (listed in {MANIFEST})")
                if entry.get("sha256") != sums.get(name, entry.get("sha256")):
                    problems.append(f"manifest and {SUMS} disagree on {name}")
                if name not in digests and name not in sums:
                    problems.append(f"missing: {name}")
        except (ValueError, AttributeError) as exc:
            problems.append(f"altered: {MANIFEST} (not valid JSON: {exc})")
    problems += [f"not listed in {SUMS}: {n}" for n in sorted(digests) if n not in sums and n != SUMS]
    return VerifyReport(shown or path, tuple(sorted(digests)), tuple(dict.fromkeys(problems)), ticket)
