"""The remote dead-man switch around every capture, and the listing that finds leftovers (pure).

pktcap-uw has no duration option and does not die when the SSH channel closes, so each capture runs
under WRAPPER_SCRIPT (POSIX sh, BusyBox ash compatible), passed as argv:

    sh -c WRAPPER_SCRIPT esxcap-capture MARKER DEADLINE pktcap-uw ARGS...

- a reaper subshell starts pktcap-uw in the background with `Y` on its stdin (ESXi 8 can ask for
  confirmation), reports its PID on stderr as `esxcap-pid N` and in /tmp/esxcap/MARKER.pid, waits
  for it (so it never lingers as a zombie that still answers `kill -0`), then removes the pidfile,
  reports `esxcap-exit STATUS` and ends the wrapper: an SSH channel ends only when stdout and stderr
  are both closed, so nothing may outlive pktcap-uw. It ignores SIGPIPE once pktcap-uw is started
  (which keeps the default): its reports to a channel that is gone must not kill it before it has
  waited, removed the pidfile and ended the wrapper;
- the wrapper reads the channel's stdin: EOF (the client asked to stop, or the connection died,
  however it died) stops pktcap-uw by its own PID only: SIGINT (it writes its trailer), then TERM,
  then KILL; the pidfile tells when it has gone;
- a watchdog does the same at DEADLINE seconds even if nothing else works;
- `esxcap cleanup` finds a pktcap-uw whose wrapper was killed through its pidfile.
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
d={PID_DIR}; f="$d/$m.pid"; mkdir -p "$d" 2>/dev/null
(
  "$@" <<'ESXCAP_Y' &
Y
ESXCAP_Y
  q=$!
  trap '' PIPE
  echo "$q" >"$f" 2>/dev/null
  echo "esxcap-pid $q" >&2
  wait "$q"; r=$?
  rm -f "$f"
  echo "esxcap-exit $r" >&2
  kill -TERM $$ 2>/dev/null
  exit $r
) </dev/null &
w=$!
exec >/dev/null
p=
stop() {{
  [ -n "$p" ] && [ -f "$f" ] || return 0
  kill -INT "$p" 2>/dev/null; n=0
  while [ -f "$f" ] && [ $n -lt {GRACE_SECONDS} ]; do sleep 1; n=$((n+1)); done
  [ -f "$f" ] && kill -TERM "$p" 2>/dev/null && sleep 1
  [ -f "$f" ] && kill -KILL "$p" 2>/dev/null
}}
finish() {{ trap '' HUP INT TERM; stop; wait "$w"; exit $?; }}
trap finish HUP INT TERM
n=0
while [ -z "$p" ] && [ $n -lt 30 ]; do
  p=$(cat "$f" 2>/dev/null); [ -n "$p" ] || {{ sleep 1; n=$((n+1)); }}
done
( n=0; while [ -f "$f" ] && [ $n -lt "$t" ]; do sleep 1; n=$((n+1)); done
  [ -f "$f" ] && kill -TERM $$ ) </dev/null >/dev/null 2>&1 &
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
