"""Fault suite: the real CLI against simulated hosts that fail in every way we know of.

Each test checks what the user sees (exit code, a message naming the host and the next step), that
every packet already received is in a file our reader and capinfos open, and that nothing is left
running on any simulated host. Faults come from the topology's `faults:` keys (see
default_topology.yaml) or from the simulator's controls (stop/start a host, reset its connections).
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any

import asyncssh  # noqa: TID251 - keys for the host-key and auth faults
import pytest
import yaml
from clirun import CliResult, esxcap, isolated_env
from conftest import MakeSim, streaming
from pcaptools import CAPINFOS, capinfos
from polling import wait_until

from esxcap.esxi.lifecycle import GRACE_SECONDS
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread

DEFAULT = yaml.safe_load(
    resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
)
HOSTS = ("esx01", "esx02", "esx03")
CLI = (sys.executable, "-m", "esxcap")
DEAD_MAN_S = 3 * GRACE_SECONDS + 5
"""How long the wrapper may take to notice a lost channel and stop pktcap-uw."""


def topology(
    faults: dict[str, dict[str, Any]] | None = None, flows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULT)
    for host, host_faults in (faults or {}).items():
        data["hosts"][host]["faults"] = host_faults
    data["flows"] += flows or []
    return data


@pytest.fixture
def start(make_sim: MakeSim) -> MakeSim:
    """Simulators for one test, stopped after it (conftest's make_sim)."""
    return make_sim


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def inventory(st: SimulatorThread, **per_host: dict[str, Any]) -> str:
    """The simulator's inventory with extra settings for some hosts, written beside it."""
    data = yaml.safe_load(st.sim.inventory_path.read_text(encoding="utf-8"))
    for host, settings in per_host.items():
        data["hosts"][host].update(settings)
    path = st.sim.state_dir / "faults-inventory.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def pktcaps(st: SimulatorThread, host: str) -> list[str]:
    async def listing() -> list[str]:
        return [p.command for p in st.sim.hosts[host].processes.pktcaps()]

    return st.call(listing())


def assert_nothing_left(st: SimulatorThread, timeout: float = 5.0) -> None:
    for host in HOSTS:
        if st.sim.hosts[host].running:
            assert wait_until(lambda h=host: pktcaps(st, h) == [], timeout), (host, pktcaps(st, host))


def packets_in(path: Path) -> int:
    """Packets in a capture file, by our reader and (when installed) capinfos, which must agree."""
    with path.open("rb") as handle:
        count = sum(1 for _ in CaptureFile(handle, path.name))
    if CAPINFOS:
        assert capinfos(path).packets == count
    return count


def background(
    inv: str, env: dict[str, str], *args: str, launcher: Sequence[str] = CLI, **popen: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*launcher, "-i", inv, "capture", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        **popen,
    )


def capture_on_all(inv: str, env: dict[str, str], out: Path, *extra: str) -> CliResult:
    return esxcap(
        "-i",
        inv,
        "capture",
        "--vmk",
        "vmk0",
        "--all-hosts",
        "-c",
        "2",
        "-o",
        str(out),
        "--json",
        *extra,
        env=env,
    )


def captured_by_host(result: CliResult) -> dict[str, int]:
    """Packets per host that captured, after checking every file holds exactly its streams' packets."""
    streams = result.json()["streams"]
    assert all(s["error"] is None for s in streams), streams
    for file in {s["file"] for s in streams}:
        assert packets_in(Path(file)) == sum(s["packets"] for s in streams if s["file"] == file)
    by_host: dict[str, int] = {}
    for s in streams:
        by_host[s["host"]] = by_host.get(s["host"], 0) + s["packets"]
    return by_host


# --- the connection goes away ---------------------------------------------------------------------------


def test_connection_reset_keeps_the_file_and_the_wrapper_stops_pktcap(start, env, tmp_path) -> None:
    st = start(topology())
    out = tmp_path / "reset.pcapng"
    proc = background(str(st.sim.inventory_path), env, "--vm", "web02", "-o", str(out))
    assert wait_until(lambda: streaming(st, "esx03"), 20)
    st.call(st.sim.reset_connections("esx03"))
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "esx03" in stderr and "connection lost while streaming" in stderr
    assert "everything received so far was kept" in stderr
    assert packets_in(out) > 0
    # The host stayed up: its wrapper saw the channel go and stopped pktcap-uw by itself.
    assert st.sim.hosts["esx03"].running
    assert_nothing_left(st, DEAD_MAN_S)
    again = esxcap("-i", str(st.sim.inventory_path), "capture", "--vm", "web02", "-c", "2",
                   "-o", str(tmp_path / "again.pcapng"), env=env)  # fmt: skip
    assert again.code == 0, again.stderr


def test_simulator_restart_ends_the_stream_and_a_new_capture_works(start, env, tmp_path) -> None:
    st = start(topology())
    out = tmp_path / "restart.pcapng"
    proc = background(str(st.sim.inventory_path), env, "--vmk", "vmk0", "--host", "esx03", "-o", str(out))
    assert wait_until(lambda: streaming(st, "esx03"), 20)
    st.call(st.sim.stop_host("esx03"))
    st.call(st.sim.start_host("esx03"))
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "esx03" in stderr and "lost" in stderr and "capture again" in stderr
    assert packets_in(out) > 0
    assert_nothing_left(st)
    again = tmp_path / "again.pcapng"
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--vmk", "vmk0", "--host", "esx03",
                    "-c", "3", "-o", str(again), env=env)  # fmt: skip
    assert result.code == 0, result.stderr
    assert packets_in(again) == 3


# --- one host of several fails before the capture ------------------------------------------------------


def test_host_that_never_speaks_ssh_times_out_and_the_others_are_captured(start, env, tmp_path) -> None:
    st = start(topology({"esx01": {"silent": True}}))
    inv = inventory(st, esx01={"connect_timeout": 1})
    began = time.monotonic()
    result = capture_on_all(inv, env, tmp_path / "out.pcapng")
    assert result.code == 3, result.stderr
    assert time.monotonic() - began < 30
    assert st.sim.hosts["esx01"].connections >= 1
    [error] = result.json()["errors"]
    assert error["host"] == "esx01" and "no SSH answer within 1 s" in error["error"]
    assert "does not speak SSH" in error["hint"]
    assert captured_by_host(result) == {"esx02": 2, "esx03": 2}
    assert_nothing_left(st)


def test_command_that_hangs_times_out_naming_the_command(start, env, tmp_path) -> None:
    st = start(topology({"esx01": {"hang_commands": True}}))
    inv = inventory(st, esx01={"command_timeout": 1.5})
    result = capture_on_all(inv, env, tmp_path / "out.pcapng")
    assert result.code == 3, result.stderr
    [error] = result.json()["errors"]
    assert error["host"] == "esx01" and "did not finish within 1.5 s" in error["error"]
    assert "command_timeout" in error["hint"]
    assert captured_by_host(result) == {"esx02": 2, "esx03": 2}
    assert_nothing_left(st)


def test_auth_failure_on_one_host_is_exit_3_and_the_others_are_captured(start, env, tmp_path) -> None:
    st = start(topology())
    stranger = tmp_path / "stranger_key"
    stranger.write_bytes(asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_private_key())
    stranger.chmod(0o600)
    inv = inventory(st, esx02={"identity_file": str(stranger)})
    result = capture_on_all(inv, env, tmp_path / "out.pcapng")
    assert result.code == 3, result.stderr
    [error] = result.json()["errors"]
    assert error["host"] == "esx02" and "permission denied for user 'root'" in error["error"]
    assert "identity_file" in error["hint"] and "password_env" in error["hint"]
    assert captured_by_host(result) == {"esx01": 4, "esx03": 2}  # 5.5: Rx and Tx streams
    assert_nothing_left(st)


def test_changed_host_key_is_refused_and_the_others_are_captured(start, env, tmp_path) -> None:
    st = start(topology())
    port = st.sim.hosts["esx03"].port
    impostor = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_public_key("openssh").decode()
    known = st.sim.known_hosts_path
    lines = known.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(f"[127.0.0.1]:{port} ")]
    known.write_text("\n".join([*kept, f"[127.0.0.1]:{port} {impostor.strip()}"]) + "\n", encoding="utf-8")
    result = capture_on_all(str(st.sim.inventory_path), env, tmp_path / "out.pcapng", "--accept-new")
    assert result.code == 3, result.stderr
    [error] = result.json()["errors"]
    assert error["host"] == "esx03" and "HOST KEY CHANGED" in error["error"]
    assert "ssh-keygen -R" in error["hint"]
    assert captured_by_host(result) == {"esx01": 4, "esx02": 2}
    assert known.read_text(encoding="utf-8").count(f"[127.0.0.1]:{port} ") == 1  # never replaced
    assert st.sim.hosts["esx03"].exec_requests == 0
    assert_nothing_left(st)


# --- pktcap-uw misbehaves -------------------------------------------------------------------------------


def test_pktcap_refusing_its_arguments_shows_the_host_error(start, env, tmp_path) -> None:
    st = start(topology())
    out = tmp_path / "refused.pcapng"
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--dvfilter", "no-such-filter",
                    "--host", "esx03", "-o", str(out), env=env)  # fmt: skip
    assert result.code == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert "error: esx03: pktcap-uw" in said and "the host said: error: Failed to find the dvfilter" in said
    assert "--dry-run" in said
    assert packets_in(out) == 0
    assert_nothing_left(st)


def test_pktcap_failing_mid_stream_is_an_error_and_the_packets_are_kept(start, env, tmp_path) -> None:
    st = start(topology({"esx03": {"pktcap_fail_after": 4}}))
    out = tmp_path / "failed.pcapng"
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--vmk", "vmk0", "--host", "esx03",
                    "-o", str(out), "--json", env=env, timeout=60)  # fmt: skip
    assert result.code == 1, result.stderr
    [stream] = result.json()["streams"]
    assert stream["packets"] >= 4 and "esx03" in stream["error"]
    assert "status 1" in stream["error"] and "The port was disconnected" in stream["error"]
    assert str(out) in stream["hint"]
    assert packets_in(out) == stream["packets"]
    assert_nothing_left(st)


def test_pktcap_printing_text_instead_of_pcap_shows_what_the_host_said(start, env, tmp_path) -> None:
    st = start(topology({"esx03": {"pktcap_garbage": True}}))
    out = tmp_path / "garbage.pcapng"
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--vmk", "vmk0", "--host", "esx03",
                    "-c", "3", "-o", str(out), env=env)  # fmt: skip
    assert result.code == 1, result.stderr
    assert "esx03: pktcap-uw did not send a pcap stream; the host said:" in result.stderr
    assert "The name of the vmk is vmk0" in result.stderr  # pktcap-uw's own stderr, shown as it was
    assert packets_in(out) == 0
    assert_nothing_left(st)


# --- the local side fails -------------------------------------------------------------------------------

BULK = {"name": "bulk-web02", "from": "web02", "to": "app 03", "kind": "bulk"}


@pytest.fixture(params=["tmpfs", "rlimit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Sequence[str]]]:
    """A directory that fills up after ~256 KiB and how to start the CLI: a small tmpfs (needs root), or
    a file-size limit set in the CLI process (its writes then fail with EFBIG; Python ignores SIGXFSZ)."""
    where = tmp_path / "small"
    where.mkdir()
    limit = 256 * 1024
    if request.param == "tmpfs":
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                               capture_output=True, check=False)  # fmt: skip
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.decode().strip()}); the rlimit case ran")
        try:
            yield where, CLI
        finally:
            subprocess.run(["umount", str(where)], check=True)
        return
    limited = (
        f"import resource, os, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'esxcap', *sys.argv[1:]])"
    )
    yield where, (sys.executable, "-c", limited)


def test_local_disk_full_keeps_a_valid_file_and_stops_the_remote_capture(start, env, small_disk) -> None:
    where, launcher = small_disk
    st = start(topology(flows=[BULK]))
    out = where / "bulk.pcapng"
    proc = background(
        str(st.sim.inventory_path), env, "--vm", "web02", "-d", "60", "-o", str(out), "--json",
        launcher=launcher,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr  # ExitCode.DISK_FULL
    written = packets_in(out)
    assert written > 0
    streams = json.loads(stdout)["streams"]
    assert sum(s["packets"] for s in streams) == written  # what the file holds, not what arrived
    assert all(s["error"].startswith(f"cannot write {out}:") for s in streams)
    again = where / "again.pcapng"
    proc = background(
        str(st.sim.inventory_path), env, "--vm", "web02", "-d", "60", "-o", str(again), launcher=launcher
    )
    _stdout, stderr = proc.communicate(timeout=60)
    shown = " ".join(stderr.split())
    assert proc.returncode == 4 and shown.count(f"cannot write {again}:") == 1, stderr
    assert "free some space" in stderr
    assert_nothing_left(st)


def test_a_ring_on_a_full_disk_stops_with_exit_4_and_complete_segments(start, env, small_disk) -> None:
    where, launcher = small_disk
    st = start(topology(flows=[BULK]))
    proc = background(
        str(st.sim.inventory_path), env, "--vm", "web02", "-d", "60", "--ring", "filesize:1M",
        "-o", f"{where}/", "--json", launcher=launcher,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr  # ExitCode.DISK_FULL, before the 60 s were up
    segments = sorted(where.glob("*_[0-9][0-9][0-9][0-9][0-9]_*.pcapng"))
    # cut back to whole blocks, what fitted kept
    assert segments and all(packets_in(s) > 0 for s in segments), (list(where.iterdir()), stderr)
    assert not list(where.glob("*.part"))
    streams = json.loads(stdout)["streams"]
    assert all("cannot write" in s["error"] for s in streams)
    assert_nothing_left(st)


def test_trigger_events_on_a_full_disk_stop_with_exit_4_complete_and_described(
    start, env, small_disk
) -> None:
    where, launcher = small_disk
    st = start(topology(flows=[BULK]))
    proc = background(
        str(st.sim.inventory_path), env, "--vm", "web02", "-d", "60", "--trigger", "bytes:0800@12",
        "--trigger-count", "1000", "--before", "0.2", "--after", "0.2", "-o", f"{where}/", "--json",
        launcher=launcher,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr  # ExitCode.DISK_FULL, before the 60 s were up
    events = sorted(where.glob("*_trigger[0-9][0-9][0-9]_*Z.pcapng"))
    assert events and all(packets_in(e) > 0 for e in events)  # the last one cut back to whole blocks
    assert not list(where.glob("*.part"))
    document = json.loads(stdout)
    assert [d["file"] for d in document["triggers"]] == [e.name for e in events]
    assert all(s["error"].startswith("cannot write the trigger events") for s in document["streams"])
    assert_nothing_left(st)


# --- the CLI is told to stop ----------------------------------------------------------------------------


def test_sigterm_completes_files_like_the_first_ctrl_c(start, env, tmp_path) -> None:
    st = start(topology())
    out = tmp_path / "term.pcapng"
    proc = background(str(st.sim.inventory_path), env, "--vmk", "vmk0", "--host", "esx03", "-o", str(out))
    assert wait_until(lambda: streaming(st, "esx03"), 20)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopping: files are being completed" in stderr
    assert "Capture summary" in _stdout
    assert packets_in(out) > 0 and not out.with_name(out.name + ".part").exists()
    assert_nothing_left(st)


def freeze(st: SimulatorThread, seconds: float) -> threading.Event:
    """Stop the whole simulator for a while (every host stops answering), from another thread; the event
    is set once it has stopped."""
    frozen = threading.Event()

    async def block() -> None:
        frozen.set()
        time.sleep(seconds)

    threading.Thread(target=st.call, args=(block(),), daemon=True).start()
    return frozen


def read_until(stream: IO[str], text: str) -> str:
    """What `stream` says up to and including the line with `text` (the test's timeout bounds the wait)."""
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = stream.readline()
        assert line, f"{text!r} never came; said: {''.join(lines)}"
        lines.append(line)
    return "".join(lines)


def test_second_sigterm_aborts_at_once_with_130_and_the_file_stays_readable(start, env, tmp_path) -> None:
    st = start(topology())
    out = tmp_path / "abort.pcapng"
    proc = background(str(st.sim.inventory_path), env, "--vmk", "vmk0", "--host", "esx03", "-o", str(out))
    assert wait_until(lambda: streaming(st, "esx03"), 20)
    # the host stops answering: the graceful stop cannot finish
    assert freeze(st, 8).wait(5)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    said = read_until(proc.stderr, "stopping: files are being completed")
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, said + stderr
    assert time.monotonic() - began < 5
    assert "aborting" in stderr
    assert packets_in(out) > 0
    assert_nothing_left(st, 8 + DEAD_MAN_S)
