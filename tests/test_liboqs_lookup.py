"""asyncssh's import skips find_library's subprocesses for liboqs only when liboqs cannot be loaded, and
asyncssh's post-quantum algorithms stay what a plain import gives."""

from __future__ import annotations

import ctypes.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esxcap.ssh.transport.liboqs_lookup import liboqs_lookup_without_subprocess, surely_absent

IMPORT_ASYNCSSH = """
import json, sys, warnings
warnings.simplefilter("ignore")
spawned = []
sys.addaudithook(lambda event, args: spawned.append(str(args[0])) if event == "subprocess.Popen" else None)
if sys.argv[1] == "fast":
    from esxcap.ssh.transport.liboqs_lookup import liboqs_lookup_without_subprocess
    with liboqs_lookup_without_subprocess():
        import asyncssh
else:
    import asyncssh
pq = asyncssh.crypto.pq
print(json.dumps({"spawned": spawned, "mlkem": pq.mlkem_available, "sntrup": pq.sntrup_available,
                  "kex": [alg.decode() for alg in asyncssh.kex.get_kex_algs()]}))
"""


def _import_asyncssh(way: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", IMPORT_ASYNCSSH, way], capture_output=True, check=True)
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="find_library's subprocesses are Linux's")
def test_asyncssh_imports_without_the_liboqs_subprocesses_and_with_the_same_algorithms() -> None:
    if not surely_absent("oqs"):
        pytest.skip("liboqs is installed here: the real find_library answers")
    plain, fast = _import_asyncssh("plain"), _import_asyncssh("fast")
    assert len(fast.pop("spawned")) < len(plain.pop("spawned")), (fast, plain)
    assert fast == plain


def test_a_library_the_cache_lists_is_looked_up_for_real() -> None:
    assert not surely_absent("c")
    real_answer = ctypes.util.find_library("c")
    with liboqs_lookup_without_subprocess():
        assert ctypes.util.find_library("c") == real_answer is not None


def test_a_library_in_ld_library_path_is_not_called_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert surely_absent("esxcapnosuchlib")
    libc = next(Path("/").glob("usr/lib/*-linux-gnu/libc.so.6"), None) or Path("/lib64/libc.so.6")
    shutil.copy(libc, tmp_path / "libesxcapnosuchlib.so.1")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert not surely_absent("esxcapnosuchlib")


def test_other_names_and_the_real_function_are_untouched() -> None:
    real = ctypes.util.find_library
    with liboqs_lookup_without_subprocess():
        assert ctypes.util.find_library is not real
    assert ctypes.util.find_library is real
