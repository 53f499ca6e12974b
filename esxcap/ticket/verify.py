"""`esxcap verify`: re-check a bundle archive (zip or tar.gz, whole or as `.001`... parts) against its own
SHA256SUMS and manifest.json, and name every file that is missing, altered or not listed."""

from __future__ import annotations

import hashlib
import json
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


@dataclass(frozen=True)
class VerifyReport:
    archive: Path
    checked: tuple[str, ...]
    problems: tuple[str, ...]
    ticket: str | None

    @property
    def ok(self) -> bool:
        return not self.problems


def _members(path: Path) -> Iterator[tuple[str, IO[bytes] | None]]:
    """(name, reader) for every regular file of the archive, whatever its format."""
    with path.open("rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    if zipped:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as member:
                        yield info.filename, member
        return
    with tarfile.open(path, "r:*") as tar:
        for tinfo in tar:
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
    expected = {k: v for k, v in parse_sums(listing.read_text()).items() if k != stem}
    problems = [f"missing part: {n}" for n in sorted(expected) if not parts[0].with_name(n).is_file()]
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
        for name, reader in _members(path):
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
