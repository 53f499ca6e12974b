"""Creating and placing the files esxcap writes (captures, sidecars, split files, merged files,
bundles), safely in folders other users can write to.

Every file is created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600): a symlink or file planted under
the name is never followed, truncated or chmod-ed. A file being written is a `NAME.<random>.part`
unique to this run, so two runs never share one; when it is complete it gets its name without
replacing anything that is there (hard link, then the `.part` is removed), or, with `--force`, by
replacing a regular file. `check_destination()` says before anything connects whether a file can be
written where the user asked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from esxcap.errors import UsageError
from esxcap.pcap import is_capture_start

FILE_MODE = 0o600
WRITE_BUFFER = 64 * 1024
"""Small writes (block headers, statistics) are gathered; a chunk's packets (hundreds of KiB, one write)
are larger and go to the file directly instead of being copied through this buffer first."""
MAX_NUMBERED = 1000
"""How many `NAME-N` alternatives are tried when NAME is taken at the end of a run."""


def create_private(path: Path, buffering: int = WRITE_BUFFER) -> IO[bytes]:
    """Create `path` for writing, 0600 (captures hold other people's traffic); fails if anything,
    a symlink included, is already there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb", buffering=buffering)


def create_part(path: Path) -> tuple[Path, IO[bytes]]:
    """A new private `NAME.<random>.part` beside `path`, unique to this run, open for writing."""
    fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".part", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    return Path(name), os.fdopen(fd, "wb", buffering=WRITE_BUFFER)


def place(part: Path, path: Path, force: bool = False) -> Path:
    """Give the finished `part` its name and return the name it got: `path`, or with `force` `path`
    replacing a regular file or a symlink (a rename replaces the link, never what it points to); if
    `path` is taken (and not `force`), the first free `STEM-N.SUFFIX`."""
    if force and _replaceable(path):
        part.replace(path)
        return path
    for number in range(MAX_NUMBERED):
        candidate = path if number == 0 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        if _link_new(part, candidate):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            return candidate
    raise FileExistsError(f"{path} and {MAX_NUMBERED} numbered names beside it are taken; kept {part}")


def cut_to_whole_blocks(part: Path, boundaries: Iterable[int]) -> None:
    """After a failed write a pcapng file may end inside a block: cut it back to its last whole block,
    walking from the last known block boundary (`boundaries`: offsets after writes) it does not pass,
    so that every reader opens it (the space this frees is never needed)."""
    with contextlib.suppress(OSError), part.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = max((b for b in boundaries if b <= size), default=0)
        handle.seek(end)
        tail = handle.read(size - end)
        pos = 0
        while pos + 12 <= len(tail):
            (length,) = struct.unpack_from("<I", tail, pos + 4)
            if length < 12 or pos + length > len(tail):
                break
            pos += length
        handle.truncate(end + pos)


def _replaceable(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return True
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


def _link_new(part: Path, candidate: Path) -> bool:
    """Hard-link `part` as `candidate` if nothing is there (atomic); on file systems without hard
    links, rename it after checking."""
    try:
        os.link(part, candidate, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError:
        if os.path.lexists(candidate):
            return False
        part.rename(candidate)
        return True


def check_destination(path: Path, force: bool, what: str = "output file") -> None:
    """Refuse, before anything connects, a file that cannot be written: an existing file without
    `force`, a missing folder, a folder that is a file, or one this user cannot create files in."""
    folder = path.parent
    if os.path.lexists(path):
        if path.is_dir():
            raise UsageError(
                f"{what} {path} is a folder", f"name a file inside it, e.g. {path / 'capture.pcapng'}"
            )
        if not force and stat.S_ISREG(path.lstat().st_mode):
            raise UsageError(
                f"{what} {path} already exists; esxcap does not overwrite files",
                "choose another name, or add --force to replace it",
            )
        if force and stat.S_ISREG(path.lstat().st_mode) and not _written_by_us(path):
            raise UsageError(
                f"{what} {path} is not a capture or an archive: --force replaces only files of the kinds "
                "esxcap writes (pcap, pcapng, zip, tar.gz, JSON, or empty)",
                "choose another name (or remove that file yourself, if it really is meant to go)",
            )
    check_folder(folder, what)


ARCHIVES_AND_SIDECARS = (b"PK\x03\x04", b"\x1f\x8b", b"{")
"""How the other files esxcap writes begin: zip, gzip (tar.gz), JSON (sidecars)."""


def _written_by_us(path: Path) -> bool:
    """Whether `path` is empty or begins as a file of a kind esxcap writes (so --force may replace it:
    never /etc/passwd because a capture was named after it)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return not head or is_capture_start(head) or head.startswith(ARCHIVES_AND_SIDECARS)


def check_folder(folder: Path, what: str = "output file") -> None:
    """Refuse a folder that is missing, is not a folder, or where this user cannot create a file
    (tried for real: `/sys` and `/proc` look writable to root)."""
    if not folder.exists():
        raise UsageError(
            f"folder {folder} for the {what} does not exist",
            f"create it first (mkdir -p {folder}) or choose another place with -o",
        )
    if not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder, so the {what} cannot go there", "choose another place with -o"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".esxcap-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"cannot create the {what} in {folder}: {exc.strerror or exc}",
            "choose a folder you can write to with -o",
        ) from exc
