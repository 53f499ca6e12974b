"""The remote dead-man switch around every capture, and the listing that finds leftovers (pure).

pktcap-uw has no duration option and does not die when the SSH channel closes, so each capture runs
under WRAPPER_SCRIPT (POSIX sh, BusyBox ash compatible), passed as argv:

    sh -c WRAPPER_SCRIPT esxcap-capture MARKER DEADLINE pktcap-uw ARGS...

- pktcap-uw starts in the background with `Y` on its stdin (ESXi 8 can ask for confirmation); its PID
  goes to stderr as `esxcap-pid N` and into /tmp/esxcap/MARKER.pid, so esxcap only ever stops its own
  process and `esxcap cleanup` can find it even if the wrapper itself was killed;
- the wrapper then reads the channel's stdin: EOF (the client asked to stop, or the connection died,
  however it died) stops pktcap-uw: SIGINT (it writes its trailer), then TERM, then KILL;
- a watchdog stops it at DEADLINE seconds even if nothing else works, and exits within a second of
  pktcap-uw ending, so nothing is left behind;
- the wrapper's own stdout is closed once pktcap-uw runs, so the stream ends when pktcap-uw ends; its
  exit status comes last on stderr as `esxcap-exit N`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from esxcap.errors import ParseError

PID_DIR = "/tmp/esxcap"  # noqa: S108 - on the ESXi host (RAM disk), where only root logs in
WRAPPER_NAME = "esxcap-capture"
LISTING_MARK = "ESXCAP-PS"
GRACE_SECONDS = 5

WRAPPER_SCRIPT = f"""m=$1; t=$2; shift 2
d={PID_DIR}; mkdir -p "$d" 2>/dev/null
"$@" <<'ESXCAP_Y' &
Y
ESXCAP_Y
p=$!
echo "$p" >"$d/$m.pid" 2>/dev/null
echo "esxcap-pid $p" >&2
exec >/dev/null
stop() {{
  kill -INT "$p" 2>/dev/null; n=0
  while kill -0 "$p" 2>/dev/null && [ $n -lt {GRACE_SECONDS} ]; do sleep 1; n=$((n+1)); done
  kill -TERM "$p" 2>/dev/null && sleep 1; kill -KILL "$p" 2>/dev/null
}}
finish() {{ stop; wait "$p"; r=$?; rm -f "$d/$m.pid"; echo "esxcap-exit $r" >&2; exit $r; }}
trap finish HUP INT TERM
( n=0; while kill -0 "$p" 2>/dev/null; do
    [ $n -ge "$t" ] && {{ stop; break; }}; sleep 1; n=$((n+1)); done ) </dev/null 2>/dev/null &
while read -r _; do :; done
finish
"""

LISTING_SCRIPT = f"""for f in {PID_DIR}/*.pid; do
  [ -f "$f" ] && echo "esxcap-pidfile $f $(cat "$f")"
done
echo {LISTING_MARK}
ps -c
"""

_PID_LINE = re.compile(rb"^esxcap-pid (\d+)$", re.M)
_EXIT_LINE = re.compile(rb"^esxcap-exit (\d+)$", re.M)
_MARKER = re.compile(r"^[A-Za-z0-9_.-]+$")


def new_marker() -> str:
    """A marker naming one capture stream on its host (file name safe)."""
    return f"esxcap-{secrets.token_hex(6)}"


def wrapper_argv(marker: str, deadline_seconds: int, pktcap_argv: Sequence[str]) -> list[str]:
    """The argv that runs pktcap_argv under the dead-man switch."""
    if not _MARKER.match(marker):
        raise ValueError(f"bad marker {marker!r}")
    if deadline_seconds < 1:
        raise ValueError("deadline must be at least one second")
    return ["sh", "-c", WRAPPER_SCRIPT, WRAPPER_NAME, marker, str(deadline_seconds), *pktcap_argv]


def reported_pid(stderr: bytes) -> int | None:
    """The PID the wrapper reported, once it has."""
    found = _PID_LINE.search(stderr)
    return int(found.group(1)) if found else None


def reported_exit(stderr: bytes) -> int | None:
    """pktcap-uw's exit status as the wrapper reported it."""
    found = _EXIT_LINE.search(stderr)
    return int(found.group(1)) if found else None


def strip_wrapper_lines(stderr: bytes) -> bytes:
    """The host's stderr without the wrapper's own lines (what pktcap-uw said)."""
    return _EXIT_LINE.sub(b"", _PID_LINE.sub(b"", stderr)).replace(b"\n\n", b"\n").lstrip(b"\n")


@dataclass(frozen=True)
class RemoteCapture:
    """A pktcap-uw process on a host: its cartel id, command line, and esxcap's marker if it is ours."""

    pid: int
    command: str
    marker: str | None


@dataclass(frozen=True)
class Listing:
    """What LISTING_SCRIPT found: running pktcap-uw processes, and pidfiles (marker -> PID) of ours."""

    captures: tuple[RemoteCapture, ...]
    pidfiles: dict[str, int]

    @property
    def stale_markers(self) -> list[str]:
        """Pidfiles whose process is gone (their wrapper was killed before it could tidy up)."""
        running = {c.pid for c in self.captures}
        return [marker for marker, pid in self.pidfiles.items() if pid not in running]


def pidfile_path(marker: str) -> str:
    if not _MARKER.match(marker):
        raise ValueError(f"bad marker {marker!r}")
    return f"{PID_DIR}/{marker}.pid"


def parse_listing(text: str) -> Listing:
    """Parse LISTING_SCRIPT's output: pidfiles, then `ps -c` (WID CID WorldName Command) rows.

    Each pktcap-uw cartel appears once (ps lists one row per world); it is ours when a pidfile names it.
    """
    ours: dict[int, str] = {}
    lines = text.splitlines()
    try:
        split = lines.index(LISTING_MARK)
    except ValueError:
        raise ParseError(
            "esxcap cleanup listing", len(lines), lines[-1] if lines else "", "no ps section"
        ) from None
    for no, line in enumerate(lines[:split], start=1):
        parts = line.split()
        if len(parts) != 3 or parts[0] != "esxcap-pidfile" or not parts[2].isdigit():
            raise ParseError("esxcap cleanup listing", no, line, "expected 'esxcap-pidfile PATH PID'")
        ours[int(parts[2])] = parts[1].rsplit("/", 1)[-1].removesuffix(".pid")
    found: dict[int, RemoteCapture] = {}
    for line in lines[split + 1 :]:
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit() or "pktcap-uw" not in parts[2]:
            continue
        pid = int(parts[1])
        found.setdefault(pid, RemoteCapture(pid, parts[3].strip(), ours.get(pid)))
    return Listing(tuple(found.values()), {marker: pid for pid, marker in ours.items()})
