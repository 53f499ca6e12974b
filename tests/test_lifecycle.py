"""The dead-man-switch wrapper, run for real under BusyBox sh (ESXi's shell) around a stand-in pktcap-uw.

The stand-in ignores SIGHUP like pktcap-uw, reads the `Y` answer, and writes pcap records until SIGINT or
its count. How it takes SIGINT is a setting, since the real tool's is unknown: `handle` sets its handler
whatever it inherited, `inherit` only when SIGINT was not ignored at its start (BusyBox sh starts `cmd &`
jobs with SIGINT ignored), `ignore` never. `sh` on PATH is BusyBox too, as on ESXi. Every test checks that
no process and no pidfile is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from polling import wait_until

from esxcap.errors import ParseError
from esxcap.esxi.lifecycle import (
    LISTING_MARK,
    LISTING_SCRIPT,
    PID_DIR,
    new_marker,
    parse_listing,
    reported_exit,
    reported_pid,
    strip_wrapper_lines,
    wrapper_argv,
)

SHELL = shutil.which("busybox")
OTHER_PKTCAPS = ("pytest", "esxcap.sim.shim")
"""pktcap-uw command lines that are not these tests' (the OpenSSH tier checks its shims itself)."""
pytestmark = pytest.mark.skipif(SHELL is None, reason="busybox is not installed (apt-get install busybox)")

STAND_IN = textwrap.dedent(
    """\
    import signal, struct, sys, time
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    mode, sigint = sys.argv[1], sys.argv[2]
    inherited = "ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "default"
    stop = None
    def on_int(*_):
        global stop
        stop = time.time()
    if sigint == "handle" or (sigint == "inherit" and inherited == "default"):
        signal.signal(signal.SIGINT, on_int)
    elif sigint == "ignore":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    answer = sys.stdin.readline().strip()
    out = sys.stdout.buffer
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)); out.flush()
    n = 0
    while stop is None and (not mode.isdigit() or n < int(mode)):
        time.sleep(0.05); n += 1
        out.write(struct.pack("<IIII", int(time.time()), 0, 4, 4) + b"abcd"); out.flush()
    how = "count" if stop is None else f"SIGINT {stop:.3f}"
    sys.stderr.write(f"answer={answer} sigint-was={inherited} stopped-by={how}\\n")
    sys.stderr.write(f"Dumped {n} packet to file -, dropped 0 packets.\\nDone.\\n")
    """
)


@pytest.fixture
def stand_in(tmp_path: Path) -> list[str]:
    script = tmp_path / "pktcap-uw"
    script.write_text(STAND_IN)
    return [sys.executable, str(script)]


@pytest.fixture(autouse=True)
def busybox_sh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sh` on PATH is BusyBox, as on ESXi (the wrapper starts pktcap-uw through `sh -c`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(SHELL or "busybox")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _start(
    stand_in: list[str], mode: str, deadline: int = 30, sigint: str = "handle"
) -> tuple[subprocess.Popen[bytes], str]:
    marker = new_marker()
    argv = [SHELL or "busybox", *wrapper_argv(marker, deadline, [*stand_in, mode, sigint])]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, marker


def _left_behind(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    procs = [
        line
        for line in ps.splitlines()
        if marker in line or ("pktcap-uw" in line and not any(o in line for o in OTHER_PKTCAPS))
    ]
    if Path(PID_DIR, f"{marker}.pid").exists():
        procs.append("pidfile")
    return procs


def _finish(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    out = proc.stdout.read() if proc.stdout else b""
    if proc.stdin:
        proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    proc.wait(timeout=20)
    return out, err


def test_stdin_eof_stops_the_capture_gracefully(stand_in: list[str]) -> None:
    proc, marker = _start(stand_in, "run")
    assert proc.stdin is not None and proc.stdout is not None
    head = proc.stdout.read(24 + 20)
    proc.stdin.close()
    out, err = _finish(proc)
    out = head + out
    assert out[:4] == bytes.fromhex("d4c3b2a1") and len(out) > 24, err
    assert reported_pid(err) is not None and reported_exit(err) == 0
    assert b"answer=Y" in err and b"Done." in strip_wrapper_lines(err)
    assert b"esxcap-pid" not in strip_wrapper_lines(err)
    assert _left_behind(marker) == []


@pytest.mark.parametrize("sigint", ["handle", "inherit"])
def test_graceful_stop_reaches_pktcap_by_sigint_within_a_second(stand_in: list[str], sigint: str) -> None:
    """pktcap-uw runs with SIGINT at its default disposition, so even one that keeps what it inherited
    ends by SIGINT at once and writes its trailer (under `cmd &` it would wait out the grace, then TERM)."""
    proc, marker = _start(stand_in, "run", sigint=sigint)
    assert proc.stdout is not None and proc.stdin is not None
    assert len(proc.stdout.read(24 + 3 * 20)) == 84  # header and three packets: it runs
    asked = time.time()
    proc.stdin.close()
    out, err = _finish(proc)
    said = strip_wrapper_lines(err).decode()
    assert "sigint-was=default" in said and "stopped-by=SIGINT" in said, said
    stopped = float(said.split("stopped-by=SIGINT ", 1)[1].split()[0])
    assert stopped - asked < 1.0
    assert "Dumped " in said and "dropped 0 packets" in said
    assert reported_exit(err) == 0 and len(out) % 20 == 0
    assert _left_behind(marker) == []


def test_the_pidfile_names_pktcap_and_its_live_watcher(stand_in: list[str]) -> None:
    proc, marker = _start(stand_in, "run")
    pidfile = Path(PID_DIR, f"{marker}.pid")
    assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5)
    pid, watcher = map(int, pidfile.read_text().split())
    assert proc.stderr is not None
    assert reported_pid(proc.stderr.readline()) == pid
    assert Path(f"/proc/{watcher}").exists() and watcher not in (pid, proc.pid)
    assert proc.stdin is not None
    proc.stdin.close()
    _finish(proc)
    assert wait_until(lambda: not Path(f"/proc/{watcher}").exists(), 3)
    assert _left_behind(marker) == []


def test_count_reached_ends_the_stream_by_itself(stand_in: list[str]) -> None:
    proc, marker = _start(stand_in, "5")
    out, err = _finish(proc)
    assert len(out) == 24 + 5 * 20
    assert reported_exit(err) == 0
    assert _left_behind(marker) == []


def test_wrapper_ends_with_pktcap_even_while_stdin_stays_open(stand_in: list[str]) -> None:
    """Like an SSH channel: one stream for stdout and stderr, so it ends only when both close."""
    marker = new_marker()
    argv = [SHELL or "busybox", *wrapper_argv(marker, 30, [*stand_in, "5", "handle"])]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    assert proc.stdout is not None
    merged = proc.stdout.read()
    assert time.monotonic() - started < 5
    assert reported_exit(merged) == 0
    proc.wait(timeout=5)
    assert proc.stdin is not None
    proc.stdin.close()
    assert _left_behind(marker) == []


def test_deadline_stops_a_capture_nobody_stops(stand_in: list[str]) -> None:
    started = time.monotonic()
    proc, marker = _start(stand_in, "run", deadline=2)
    _out, err = _finish(proc)
    assert 1.5 < time.monotonic() - started < 8
    assert b"Done." in err
    assert _left_behind(marker) == []


def test_a_capture_that_ignores_sigint_is_killed(stand_in: list[str]) -> None:
    proc, marker = _start(stand_in, "run", sigint="ignore")
    assert proc.stdin is not None and proc.stdout is not None
    assert len(proc.stdout.read(24)) == 24
    proc.stdin.close()
    _out, err = _finish(proc)
    assert reported_exit(err) in (137, 143)
    assert _left_behind(marker) == []


def test_client_killed_with_sigkill_leaves_nothing(stand_in: list[str]) -> None:
    marker = new_marker()
    argv = [SHELL or "busybox", *wrapper_argv(marker, 60, [*stand_in, "run", "handle"])]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); time.sleep(60)",
            *argv,
        ]
    )
    deadline = time.monotonic() + 5
    while not Path(PID_DIR, f"{marker}.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _left_behind(marker), "the capture never started"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10
    while _left_behind(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _left_behind(marker) == []


def test_wrapper_ends_when_pktcap_ends_after_the_channel_output_closed() -> None:
    """The reader of stdout/stderr is gone (a dead channel) while stdin stays open: writing
    `esxcap-exit` must not kill the reaper (SIGPIPE) before it ends the wrapper."""
    marker = new_marker()
    argv = [SHELL or "busybox", *wrapper_argv(marker, 60, ["sleep", "1"])]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"esxcap-pid ")
    proc.stdout.close()
    try:
        assert proc.wait(timeout=6) == 0
    finally:
        proc.kill()
        assert proc.stdin is not None
        proc.stdin.close()
    assert _left_behind(marker) == []


def test_listing_tells_ours_from_foreign_and_live_from_orphaned() -> None:
    text = "\n".join(
        [
            f"esxcap-pidfile {PID_DIR}/esxcap-abc.pid orphan 2100722",
            f"esxcap-pidfile {PID_DIR}/esxcap-run.pid live 2100950",
            f"esxcap-pidfile {PID_DIR}/esxcap-new.pid live",
            LISTING_MARK,
            "WID      CID      World Name            Command",
            "2100722  2100722  pktcap-uw             pktcap-uw --vmk vmk0 -o -",
            "2100723  2100722  pktcap-uw             pktcap-uw --vmk vmk0 -o -",
            "2100800  2100800  pktcap-uw             pktcap-uw --uplink vmnic0",
            "2100900  2100900  sh                    /bin/sh -c pktcap-uw",
            "2100950  2100950  pktcap-uw             pktcap-uw --vmk vmk1 -o -",
        ]
    )
    found = parse_listing(text)
    assert [(c.pid, c.marker, c.in_use) for c in found.captures] == [
        (2100722, "esxcap-abc", False),
        (2100800, None, False),
        (2100950, "esxcap-run", True),
    ]
    assert [c.pid for c in found.orphans] == [2100722]
    assert found.stale_markers == []
    stale = parse_listing(f"esxcap-pidfile {PID_DIR}/esxcap-old.pid orphan 99\n{LISTING_MARK}\n")
    assert stale.captures == () and stale.stale_markers == ["esxcap-old"]


def test_listing_script_reports_the_watchers_liveness(stand_in: list[str]) -> None:
    proc, marker = _start(stand_in, "run")
    pidfile = Path(PID_DIR, f"{marker}.pid")
    assert wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 5)
    pid, watcher = map(int, pidfile.read_text().split())

    def state() -> str:
        listing = subprocess.run(
            [SHELL or "busybox", "sh", "-c", LISTING_SCRIPT], check=True, capture_output=True, text=True
        )
        return next(line for line in listing.stdout.splitlines() if marker in line).split()[2]

    assert state() == "live"
    os.kill(watcher, signal.SIGKILL)
    assert wait_until(lambda: state() == "orphan", 3)
    os.kill(pid, signal.SIGINT)
    _out, err = _finish(proc)
    assert reported_exit(err) == 0
    assert _left_behind(marker) == []


def test_listing_without_ps_section_is_an_error() -> None:
    with pytest.raises(ParseError):
        parse_listing("esxcap-pidfile /tmp/esxcap/x.pid live 12\n")
    with pytest.raises(ParseError):
        parse_listing(f"esxcap-pidfile /tmp/esxcap/x.pid 12\n{LISTING_MARK}\n")
