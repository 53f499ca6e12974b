"""esxcap against OpenSSH's real sshd whose sessions run under BusyBox `sh` with the simulator's command
shims: discover, capture (count, duration, Ctrl-C, the dead-man switch when the CLI is killed) and
cleanup (an orphan started without the wrapper; a capture whose wrapper was killed). Here the lifecycle
scripts run in a real shell and pktcap-uw is a real process, so what the asyncssh simulator does
natively is checked for real. Every test runs on every transport esxcap has.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env
from pcaptools import CAPINFOS, TSHARK, capinfos, tshark_fields
from polling import wait_until

from bench.esxi_sshd import EsxiSshd
from esxcap.capture.run import STOP_WAIT_S
from esxcap.errors import UsageError
from esxcap.esxi.lifecycle import GRACE_SECONDS, WRAPPER_SCRIPT, new_marker, reported_exit, wrapper_argv
from esxcap.inventory import TRANSPORTS
from esxcap.pcap import EPB_INBOUND, CaptureFile
from esxcap.ssh.session import make_transport


def _available(name: str) -> bool:
    try:
        make_transport(name)
    except UsageError:
        return False
    return True


pytestmark = pytest.mark.parametrize("transport", [t for t in TRANSPORTS if _available(t)])

MATCHES_NOTHING = "192.0.2.77"
START_WAIT_S = 40
"""Until a capture runs: discovery, clock probes and pktcap-uw starting (a loaded machine is slow)."""


def packets_in(path: Path) -> int:
    """Packets by our own reader and, when installed, by capinfos (both must open the file)."""
    with path.open("rb") as handle:
        count = sum(1 for _ in CaptureFile(handle, path.name))
    if CAPINFOS:
        assert capinfos(path).packets == count
    return count


def cli(openssh: EsxiSshd, transport: str, home: Path, *args: str, timeout: float = 60):
    command, rest = args[0], args[1:]
    return esxcap(
        "-i", str(openssh.inventory), command, "--transport", transport, *rest, env=isolated_env(home),
        timeout=timeout,
    )  # fmt: skip


def background_capture(
    openssh: EsxiSshd, transport: str, home: Path, out: Path, *extra: str
) -> subprocess.Popen[bytes]:
    argv = ["-i", str(openssh.inventory), "capture", "--transport", transport, "--vm", "n1", "--host", "new"]
    return subprocess.Popen(
        [sys.executable, "-m", "esxcap", *argv, *extra, "-o", str(out)],
        env=isolated_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def receiving(out: Path) -> bool:
    """Packets have reached the capture's file (its `.part` while it runs)."""
    return any(p.stat().st_size > 1024 for p in out.parent.glob(f"{out.name}*"))


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_discover_reads_every_host(openssh, transport, tmp_path) -> None:
    result = cli(openssh, transport, tmp_path, "discover", "--json")
    assert result.code == 0, result.stderr
    hosts = {h["host"]: h for h in result.json()["hosts"]}
    assert sorted(hosts) == ["mid", "new"]
    assert hosts["new"]["esxi"]["version"] == "8.0.2" and hosts["mid"]["esxi"]["version"] == "6.7.0"
    assert sorted(vm["name"] for vm in hosts["new"]["vms"]) == ["n1", "n2"]
    [port] = next(vm for vm in hosts["mid"]["vms"] if vm["name"] == "m1")["ports"]
    assert port["mac"] == "00:50:56:9a:20:01" and port["portgroup"] == "Server"


def test_count_capture_ends_by_itself(openssh, transport, tmp_path) -> None:
    """pktcap-uw ends at its count; the wrapper must then end the channel (nothing may hold it open)."""
    out = tmp_path / "count.pcapng"
    started = time.monotonic()
    result = cli(
        openssh,
        transport,
        tmp_path,
        "capture",
        "--vm",
        "n1",
        "--host",
        "new",
        "-c",
        "5",
        "-o",
        str(out),
        "--json",
    )
    assert result.code == 0, result.stderr
    assert time.monotonic() - started < 15
    [stream] = result.json()["streams"]
    assert stream["packets"] == 5 and stream["error"] is None
    assert packets_in(out) == 5
    assert openssh.pktcaps() == [] and openssh.pidfiles("new") == {}


def test_one_direction_packets_carry_their_direction_flag(openssh, transport, tmp_path) -> None:
    """What the VM sends (VnicTx, `--dir out`) is inbound at its switch port."""
    out = tmp_path / "dirs.pcapng"
    argv = ("capture", "--vm", "n1", "--host", "new", "-c", "3", "--dir", "out", "-o", str(out))
    result = cli(openssh, transport, tmp_path, *argv)
    assert result.code == 0, result.stderr
    with out.open("rb") as handle:
        source = CaptureFile(handle, out.name)
        flags = {(source.interfaces[r.interface].name, r.flags) for r in source}
    assert flags == {("new:n1 eth0:VnicTx:out", EPB_INBOUND)}


def test_duration_capture_stops_on_time(openssh, transport, tmp_path) -> None:
    out = tmp_path / "vmk.pcapng"
    started = time.monotonic()
    result = cli(
        openssh, transport, tmp_path, "capture", "--vmk", "vmk0", "--host", "mid", "-d", "2", "-o", str(out)
    )
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert 2 <= elapsed < 2 + GRACE_SECONDS + 5
    assert packets_in(out) > 0
    assert openssh.pktcaps() == []


def test_sigint_completes_the_file_and_stops_pktcap(openssh, transport, tmp_path) -> None:
    out = tmp_path / "int.pcapng"
    proc = background_capture(openssh, transport, tmp_path, out)
    assert wait_until(lambda: receiving(out), START_WAIT_S)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert packets_in(out) > 0
    assert wait_until(lambda: not openssh.pktcaps(), 5)


def test_sigkill_of_the_cli_ends_pktcap_within_the_grace(openssh, transport, tmp_path) -> None:
    """Its filter matches nothing, so pktcap-uw never writes to the closed channel: only the wrapper's
    dead-man switch (stdin EOF -> SIGINT to pktcap-uw) can stop it."""
    out = tmp_path / "kill.pcapng"
    proc = background_capture(openssh, transport, tmp_path, out, "--ip", MATCHES_NOTHING)
    assert wait_until(lambda: openssh.pidfiles("new"), START_WAIT_S)
    [pid] = openssh.pidfiles("new").values()
    assert [p.pid for p in openssh.pktcaps("new")] == [pid]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_until(lambda: not openssh.pktcaps(), GRACE_SECONDS + 2), openssh.pktcaps()
    assert not Path(f"/proc/{pid}").exists()
    assert wait_until(lambda: openssh.pidfiles("new") == {}, 2)


def test_orphan_lingers_without_the_wrapper_and_cleanup_all_stops_it(openssh, transport, tmp_path) -> None:
    """A bare pktcap-uw whose filter matches nothing never writes, so it never sees its channel close."""
    command = f"pktcap-uw --vmk vmk0 --ip {MATCHES_NOTHING} -o -"
    client = subprocess.Popen(
        [*openssh.ssh_argv("new"), command], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert client.stdout is not None
    assert len(client.stdout.read(24)) == 24  # running: it wrote its pcap header
    client.kill()
    client.wait()
    time.sleep(1)
    [orphan] = openssh.pktcaps("new")
    assert orphan.argv == tuple(command.split())

    left_alone = cli(openssh, transport, tmp_path, "cleanup", "new", "--json")
    assert left_alone.code == 0, left_alone.stderr
    [row] = left_alone.json()["captures"]
    assert (row["pid"], row["ours"], row["action"]) == (
        orphan.pid,
        False,
        "left alone (not esxcap's; --all stops it)",
    )
    assert openssh.pktcaps("new") == [orphan]

    stopped = cli(openssh, transport, tmp_path, "cleanup", "new", "--all", "--yes", "--json")
    assert stopped.code == 0, stopped.stderr
    assert [(r["pid"], r["action"]) for r in stopped.json()["captures"]] == [(orphan.pid, "stopped")]
    assert openssh.pktcaps() == []


def test_cleanup_finds_a_capture_whose_wrapper_was_killed_by_its_pidfile(
    openssh, transport, tmp_path
) -> None:
    out = tmp_path / "wrapperless.pcapng"
    proc = background_capture(openssh, transport, tmp_path, out, "--json")
    assert wait_until(lambda: receiving(out), START_WAIT_S)
    [(marker, (pid, watcher))] = openssh.pidfile_pids("new").items()
    [pktcap] = openssh.pktcaps("new")
    assert pid == pktcap.pid
    wrapper = parent_of(pktcap.pid)
    by_pid = {p.pid: p for p in openssh.processes("new")}
    assert by_pid[wrapper].argv[:3] == by_pid[watcher].argv[:3] == ("sh", "-c", WRAPPER_SCRIPT)
    os.kill(watcher, signal.SIGKILL)  # first, so that the wrapper reaps it (not a zombie under init)
    assert wait_until(lambda: not Path(f"/proc/{watcher}").exists(), 5)
    os.kill(wrapper, signal.SIGKILL)
    time.sleep(1)
    assert [p.pid for p in openssh.pktcaps("new")] == [pktcap.pid]

    result = cli(openssh, transport, tmp_path, "cleanup", "new", "--json")
    assert result.code == 0, result.stderr
    [row] = result.json()["captures"]
    assert (row["pid"], row["ours"], row["marker"], row["in_use"], row["action"]) == (
        pktcap.pid,
        True,
        marker,
        False,
        "stopped",
    )
    assert openssh.pktcaps() == [] and openssh.pidfiles("new") == {}
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode not in (0, None), stderr
    [stream] = json.loads(stdout)["streams"]
    assert stream["stop_reason"] == "stopped on the host", stream
    assert "stopped on the host" in stream["error"]
    assert packets_in(out) > 0


def test_clock_script_finds_sub_second_offsets_under_busybox_sh(openssh, transport, tmp_path) -> None:
    """mid's `date` prints `%N` literally: BusyBox sh samples the second edge; new's has nanoseconds."""
    out = tmp_path / "clock.pcapng"
    args = ("--vm", "m1", "--vm", "n1", "-c", "1", "-o", str(out), "--json")
    result = cli(openssh, transport, tmp_path, "capture", *args)
    assert result.code == 0, result.stderr
    clocks = {c["host"]: c for c in result.json()["clocks"]}
    for host, skew, method in (("mid", -35, "date +%s second edge"), ("new", 0, "date +%s.%N")):
        for reading in (clocks[host]["start"], clocks[host]["end"]):
            assert reading["method"] == method, (host, reading)
            assert abs(reading["offset_ms"] - skew) <= reading["bound_ms"] + 0.001, (host, reading)
            assert reading["bound_ms"] < 400, (host, reading)


def test_cleanup_leaves_a_capture_in_use_alone_and_its_victim_says_it_was_stopped(
    openssh, transport, tmp_path
) -> None:
    out = tmp_path / "in-use.pcapng"
    proc = background_capture(openssh, transport, tmp_path, out, "--json")
    assert wait_until(lambda: receiving(out), START_WAIT_S)
    [pktcap] = openssh.pktcaps("new")

    listed = cli(openssh, transport, tmp_path, "cleanup", "new", "--json")
    assert listed.code == 0, listed.stderr
    [row] = listed.json()["captures"]
    assert (row["pid"], row["ours"], row["in_use"], row["action"]) == (
        pktcap.pid,
        True,
        True,
        "in use (another esxcap is capturing; --all stops it)",
    )
    assert [p.pid for p in openssh.pktcaps("new")] == [pktcap.pid] and proc.poll() is None

    forced = cli(openssh, transport, tmp_path, "cleanup", "new", "--all", "--yes", "--json")
    assert forced.code == 0, forced.stderr
    assert [r["action"] for r in forced.json()["captures"]] == ["stopped"]
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode not in (0, None), stderr
    [stream] = json.loads(stdout)["streams"]
    assert stream["stop_reason"] == "stopped on the host", (stream, stderr)
    assert stream["dropped"] is not None  # pktcap-uw's trailer came: it ended by SIGINT
    assert packets_in(out) > 0
    assert wait_until(lambda: openssh.pktcaps() == [] and openssh.pidfiles("new") == {}, 5)


@pytest.mark.parametrize("host", ["new", "mid"])
def test_a_graceful_stop_ends_pktcap_by_sigint_within_a_second(openssh, transport, host) -> None:
    """Through sshd and BusyBox sh: whether pktcap-uw handles SIGINT itself (new) or keeps what it
    inherited (mid), closing the channel's stdin ends it by SIGINT with its trailer, without the grace."""
    del transport  # the wrapper alone, through OpenSSH's client
    point = ["--vmk", "vmk0"] if host == "mid" else ["--switchport", "67108868"]
    argv = wrapper_argv(new_marker(), 60, ["pktcap-uw", *point, "-o", "-"])
    client = subprocess.Popen(
        [*openssh.ssh_argv(host), shlex.join(argv)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert client.stdin is not None and client.stdout is not None and client.stderr is not None
    assert len(client.stdout.read(24)) == 24  # running: it wrote its pcap header
    asked = time.monotonic()
    client.stdin.close()
    client.stdout.read()
    err = client.stderr.read()
    client.wait(timeout=10)
    assert time.monotonic() - asked < 1.0, err
    assert reported_exit(err) == 0, err
    assert re.search(rb"Dumped \d+ packets? to .*dropped \d+ packets?", err), err


def sshd_session_of(pid: int) -> int:
    """The sshd process that carries the SSH connection a session process belongs to."""
    while pid > 1:
        pid = parent_of(pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd:"):
            return pid
    raise AssertionError("no sshd above the session")


def two_host_capture(
    openssh: EsxiSshd, transport: str, home: Path, out: Path, inventory: Path, *extra: str
) -> subprocess.Popen[bytes]:
    argv = ["-i", str(inventory), "capture", "--transport", transport, "--vm", "n1", "--vm", "m1"]
    return subprocess.Popen(
        [sys.executable, "-m", "esxcap", *argv, *extra, "-o", str(out), "--json"],
        env=isolated_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def freeze_new_mid_capture(openssh: EsxiSshd, out: Path) -> int:
    """Once both hosts stream into `out`, SIGSTOP host new's sshd session: it stops answering."""
    assert wait_until(lambda: openssh.pidfile_pids("new") and openssh.pidfile_pids("mid"), START_WAIT_S)
    assert wait_until(lambda: receiving(out), START_WAIT_S)
    [(pktcap, _watcher)] = openssh.pidfile_pids("new").values()
    session = sshd_session_of(pktcap)
    os.kill(session, signal.SIGSTOP)
    return session


def check_frozen_new_healthy_mid(stdout: bytes, out: Path) -> None:
    streams = {s["host"]: s for s in json.loads(stdout)["streams"]}
    assert streams["mid"]["error"] is None and streams["mid"]["packets"] > 0, streams
    assert streams["new"]["error"] and "new" in streams["new"]["error"], streams
    assert packets_in(out) >= streams["mid"]["packets"]
    if TSHARK:
        names = {row[0] for row in tshark_fields(out, "frame.interface_name")}
        assert any(name.startswith("mid:") for name in names), names


def test_duration_ends_on_time_when_a_host_freezes(openssh, transport, tmp_path) -> None:
    """Host new stops answering mid-capture (its sshd session is SIGSTOPped; keepalives at their 45 s
    default would not notice yet): `-d` still ends the capture, new is failed, mid's data is complete."""
    out = tmp_path / "frozen.pcapng"
    proc = two_host_capture(openssh, transport, tmp_path, out, openssh.inventory, "-d", "6")
    session = freeze_new_mid_capture(openssh, out)
    frozen_at = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=6 + STOP_WAIT_S + 30)
        elapsed = time.monotonic() - frozen_at
    finally:
        os.kill(session, signal.SIGCONT)
    assert proc.returncode == 3, stderr
    assert elapsed < 6 + STOP_WAIT_S + 5
    check_frozen_new_healthy_mid(stdout, out)
    assert b"stopped answering" in stdout


def test_keepalives_notice_a_frozen_host_and_one_ctrl_c_ends_the_rest(openssh, transport, tmp_path) -> None:
    """With 1 s x 2 keepalives the frozen host is failed while mid keeps capturing; one SIGINT then
    completes mid's data within the grace."""
    inventory = tmp_path / "keepalive.yaml"
    data = yaml.safe_load(openssh.inventory.read_text())
    data["defaults"].update(keepalive_interval=1, keepalive_count=2)
    inventory.write_text(yaml.safe_dump(data))
    out = tmp_path / "keepalive.pcapng"
    proc = two_host_capture(openssh, transport, tmp_path, out, inventory)
    session = freeze_new_mid_capture(openssh, out)
    try:
        time.sleep(6)  # keepalives give new up after about 3 s; mid goes on
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        asked = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - asked
    finally:
        os.kill(session, signal.SIGCONT)
    assert proc.returncode == 3, stderr
    assert elapsed < STOP_WAIT_S, elapsed
    check_frozen_new_healthy_mid(stdout, out)
    assert b"keepalive" in stdout


def test_a_ring_rotates_over_a_real_sshd(openssh, transport, tmp_path) -> None:
    out = tmp_path / "ring"
    result = cli(
        openssh, transport, tmp_path, "capture", "--vm", "n1", "--host", "new", "--dir", "out",
        "--proto", "icmp", "-c", "400", "--ring", "files:2,filesize:8k", "-o", f"{out}/", "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    segments = sorted(out.glob("*.pcapng"))
    assert len(segments) == 2 and not list(out.glob("*.part"))
    kept = [packets_in(s) for s in segments]
    assert all(kept) and sum(kept) < 400
    [sidecar] = out.glob("*.json")
    ring = json.loads(sidecar.read_text())["ring"]
    assert [s["packets"] for s in ring["segments"]] == kept and ring["rotated_out"] > 0
    if TSHARK:
        seqs = [int(r[0]) for s in segments for r in tshark_fields(s, "icmp.seq")]
        assert [(b - a) % 65536 for a, b in itertools.pairwise(seqs)] == [1] * (len(seqs) - 1)
    assert openssh.pktcaps() == []


def test_a_trigger_keeps_the_moment_on_both_hosts(openssh, transport, tmp_path) -> None:
    out = tmp_path / "events"
    result = cli(openssh, transport, tmp_path, "capture", "--vm", "m2", "--vm", "n1", "--trigger", "tcp-rst",
                 "--before", "0.5", "--after", "0.5", "-d", "30", "-o", f"{out}/", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    [event] = [e["file"] for e in result.json()["triggers"]]
    assert packets_in(out / event) > 0
    if TSHARK:
        names = {row[0] for row in tshark_fields(out / event, "frame.interface_name")}
        assert {name.split(":")[0] for name in names} == {"mid", "new"}
        comments = [c for [c] in tshark_fields(out / event, "frame.comment") if c]
        assert comments and all("esxcap trigger tcp-rst fired on" in c for c in comments)
