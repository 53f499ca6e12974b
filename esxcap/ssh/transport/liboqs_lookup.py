"""asyncssh's import without the liboqs search's subprocesses, when liboqs cannot be loaded anyway.

asyncssh looks for liboqs (post-quantum sntrup761 key exchange) as it is imported, with
`ctypes.util.find_library('oqs')` and `('liboqs')`. On Linux that runs `ldconfig -p`, then `gcc` and `ld`
as subprocesses when the library is absent: about 50 ms of every command's start. asyncssh then opens
the name found with `ctypes.cdll.LoadLibrary`, that is dlopen, which finds a library only through
LD_LIBRARY_PATH, the ld.so cache, the system library folders or the interpreter's own lib folder.

`liboqs_lookup_without_subprocess` answers None at once for those two names only when none of these
places holds a `lib<name>.so*` file, which dlopen could not have opened anyway; in every other case
(liboqs present anywhere it could be loaded from, another platform, an unreadable cache) the real
`find_library` answers, so post-quantum key exchange stays exactly as available as before.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LIBOQS_NAMES = ("oqs", "liboqs")
"""The names asyncssh.crypto.pq hands to find_library."""

LD_SO_CACHE = Path("/etc/ld.so.cache")
SYSTEM_LIBRARY_FOLDERS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64")


def library_folders() -> list[Path]:
    """Every folder dlopen (or find_library's gcc/ld fallbacks) could take a bare library name from,
    besides the ld.so cache."""
    named = ":".join(os.environ.get(variable, "") for variable in ("LD_LIBRARY_PATH", "LIBRARY_PATH"))
    folders = [Path(folder) for folder in named.split(":") if folder]
    for system in SYSTEM_LIBRARY_FOLDERS:
        folders.append(Path(system))
        folders.extend(Path(system).glob("*-linux-gnu*"))
    folders.extend(Path(prefix) / "lib" for prefix in {sys.prefix, sys.base_prefix})
    return folders


def surely_absent(name: str) -> bool:
    """True only when no `lib<name>.so` is in the ld.so cache nor in any library folder."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        cache = LD_SO_CACHE.read_bytes()
    except OSError:
        return False
    stem = f"lib{name}.so"
    if stem.encode() in cache:
        return False
    return not any(next(folder.glob(f"{stem}*"), None) for folder in library_folders() if folder.is_dir())


@contextmanager
def liboqs_lookup_without_subprocess() -> Iterator[None]:
    """While asyncssh is imported inside this block, its liboqs look-ups skip find_library's subprocesses
    when liboqs is surely absent; every other look-up goes to find_library unchanged."""
    real_find_library = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name in LIBOQS_NAMES and surely_absent(name):
            return None
        return real_find_library(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = real_find_library
