"""The remote dead-man switch around every capture, and the listing that finds leftovers (pure).

pktcap-uw has no duration option and does not die when the SSH channel closes, so each capture runs
under WRAPPER_SCRIPT (POSIX sh, BusyBox ash compatible), passed as argv:

    sh -c WRAPPER_SCRIPT esxcap-capture MARKER DEADLINE pktcap-uw ARGS...

- pktcap-uw runs in the foreground: a small `sh -c` writes the pidfile /tmp/esxcap/MARKER.pid
  (`PKTCAP_PID WATCHER_PID`), reports `esxcap-pid N` on stderr and execs pktcap-uw with `Y` on its
  stdin (ESXi 8 can ask for confirmation). Never `cmd &`: BusyBox ash starts background jobs with
  SIGINT and SIGQUIT ignored when job control is off, and nothing undoes that, so a pktcap-uw that
  keeps its inherited dispositions would never see the SIGINT that makes it write its trailer;
- a watcher in the background reads the channel's stdin through fd 3 (a background job's stdin is
  /dev/null otherwise): EOF (the client asked to stop, or the connection died, however it died) stops
  pktcap-uw by its own PID only: SIGINT (it writes its trailer), then TERM, then KILL;
- a watchdog does the same at DEADLINE seconds even if nothing else works (also when the wrapper
  itself was killed);
- when pktcap-uw ends the wrapper removes the pidfile, ends both helpers (their stdout and stderr are
  /dev/null: an SSH channel ends only when every holder of them is gone), reports `esxcap-exit STATUS`
  and exits with it; it ignores SIGPIPE from then on (only then: pktcap-uw would inherit it), so a
  channel that is gone does not kill it before it exits;
- the wrapper takes no signal of its own: a trap would wait for pktcap-uw (sh runs traps between
  commands) and an ignored signal would be inherited by it;
- `esxcap cleanup` finds our captures by their pidfiles and tells live ones (the watcher still runs:
  the capture ends with its SSH session) from orphans (`LISTING_SCRIPT` prints `live` or `orphan`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from esxcap.errors import ParseError

PID_DIR = "/tmp/esxcap"  # noqa: S108 - on the ESXi host (RAM disk), where only root logs in
WRAPPER_NAME = "esxcap-capture"
PKTCAP_STARTER = "esxcap-pktcap"
LISTING_MARK = "ESXCAP-PS"
GRACE_SECONDS = 5
START_WAIT_SECONDS = 30

WRAPPER_SCRIPT = f"""m=$1; t=$2; shift 2
d={PID_DIR}; f="$d/$m.pid"; mkdir -p "$d" 2>/dev/null
stop() {{
  n=0
  while [ ! -s "$f" ] && [ $n -lt {START_WAIT_SECONDS} ]; do sleep 1; n=$((n+1)); done
  set -- $(cat "$f" 2>/dev/null); p=$1; g={GRACE_SECONDS}
  for s in INT TERM KILL; do
    [ -n "$p" ] && [ -f "$f" ] && kill -$s "$p" 2>/dev/null || return 0
    n=0
    while [ -f "$f" ] && kill -0 "$p" 2>/dev/null && [ $n -lt $g ]; do sleep 1; n=$((n+1)); done
    g=1
  done
}}
exec 3<&0
( while read -r _; do :; done; stop ) <&3 >/dev/null 2>&1 &
w=$!
( n=0; s=; while [ $n -lt "$t" ]; do
    if [ -f "$f" ]; then s=1; elif [ -n "$s" ] || [ $n -ge {START_WAIT_SECONDS} ]; then exit 0; fi
    sleep 1; n=$((n+1)); done
  stop ) </dev/null >/dev/null 2>&1 &
k=$!
sh -c 'echo "$$ $1" >"$2"; echo "esxcap-pid $$" >&2; shift 2; exec "$@"' \\
  {PKTCAP_STARTER} "$w" "$f" "$@" 3<&- <<'ESXCAP_Y'
Y
ESXCAP_Y
r=$?; trap '' PIPE
rm -f "$f"
kill "$w" "$k" 2>/dev/null
echo "esxcap-exit $r" >&2
exit $r
"""

LISTING_SCRIPT = f"""for f in {PID_DIR}/*.pid; do
  [ -f "$f" ] || continue
  set -- $(cat "$f" 2>/dev/null); s=orphan
  [ -n "$2" ] && kill -0 "$2" 2>/dev/null && s=live
  echo "esxcap-pidfile $f $s $1"
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
    """A pktcap-uw process on a host: its cartel id, command line, and esxcap's marker if it is ours;
    `in_use` when the esxcap that started it still watches it (it stops it when its session ends)."""

    pid: int
    command: str
    marker: str | None
    in_use: bool = False


@dataclass(frozen=True)
class Listing:
    """What LISTING_SCRIPT found: running pktcap-uw processes, pidfiles (marker -> PID) of ours, and the
    markers whose watcher is still alive."""

    captures: tuple[RemoteCapture, ...]
    pidfiles: dict[str, int]
    live: frozenset[str] = frozenset()

    @property
    def stale_markers(self) -> list[str]:
        """Pidfiles whose process is gone (their wrapper was killed before it could tidy up)."""
        running = {c.pid for c in self.captures}
        return [m for m, pid in self.pidfiles.items() if pid not in running and m not in self.live]

    @property
    def orphans(self) -> list[RemoteCapture]:
        """Our captures that nothing watches any more."""
        return [c for c in self.captures if c.marker is not None and not c.in_use]


def pidfile_path(marker: str) -> str:
    if not _MARKER.match(marker):
        raise ValueError(f"bad marker {marker!r}")
    return f"{PID_DIR}/{marker}.pid"


def _pidfile_line(no: int, line: str) -> tuple[str, str, int | None]:
    """(marker, state, PID) of one `esxcap-pidfile PATH live|orphan [PID]` line (no PID: starting)."""
    parts = line.split()
    if (
        len(parts) not in (3, 4)
        or parts[0] != "esxcap-pidfile"
        or parts[2] not in ("live", "orphan")
        or not all(p.isdigit() for p in parts[3:])
    ):
        raise ParseError("esxcap cleanup listing", no, line, "expected 'esxcap-pidfile PATH STATE PID'")
    marker = parts[1].rsplit("/", 1)[-1].removesuffix(".pid")
    return marker, parts[2], int(parts[3]) if len(parts) == 4 else None


def parse_listing(text: str) -> Listing:
    """Parse LISTING_SCRIPT's output: pidfiles, then `ps -c` (WID CID WorldName Command) rows.

    Each pktcap-uw cartel appears once (ps lists one row per world); it is ours when a pidfile names it.
    """
    ours: dict[int, str] = {}
    live: set[str] = set()
    lines = text.splitlines()
    try:
        split = lines.index(LISTING_MARK)
    except ValueError:
        raise ParseError(
            "esxcap cleanup listing", len(lines), lines[-1] if lines else "", "no ps section"
        ) from None
    for no, line in enumerate(lines[:split], start=1):
        marker, state, pid = _pidfile_line(no, line)
        if state == "live":
            live.add(marker)
        if pid is not None:
            ours[pid] = marker
    found: dict[int, RemoteCapture] = {}
    for line in lines[split + 1 :]:
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit() or "pktcap-uw" not in parts[2]:
            continue
        cid = int(parts[1])
        ours_as = ours.get(cid)
        found.setdefault(cid, RemoteCapture(cid, parts[3].strip(), ours_as, ours_as in live))
    pidfiles = {marker: pid for pid, marker in ours.items()}
    return Listing(tuple(found.values()), pidfiles, frozenset(live))
