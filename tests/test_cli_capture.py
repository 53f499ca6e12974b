"""`esxcap capture` end to end: the real CLI streaming from the simulator over SSH, files read back with
capinfos/tshark and our own reader, and the simulator's process table checked for leftovers. The main
flows (count stop, two streams on 5.5, SIGKILL, connection cut, cleanup) run on every transport."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from clirun import esxcap, isolated_env
from conftest import run_exec, streaming
from pcaptools import CAPINFOS, TSHARK, capinfos, tshark_fields
from polling import wait_until

from esxcap.esxi.lifecycle import GRACE_SECONDS
from esxcap.inventory import TRANSPORTS
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread, load_topology, topology_from_data
from esxcap.ssh.transport import asyncssh_receive

HAVE_TOOLS = bool(TSHARK and CAPINFOS)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("sim")) as sim_thread:
        yield sim_thread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """`--transport NAME` for the command line (options may follow the command's arguments)."""
    return ("--transport", request.param)


def inv(running: SimulatorThread) -> str:
    return str(running.sim.inventory_path)


def remote_pktcaps(running: SimulatorThread, host: str) -> list[str]:
    async def listing() -> list[str]:
        return [p.command for p in running.sim.hosts[host].processes.pktcaps()]

    return running.call(listing())


def read_back(path: Path) -> tuple[list[str], int]:
    """Interface names and packet count, by our own reader."""
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        count = sum(1 for _ in source)
        return [i.name for i in source.interfaces], count


def test_count_stop_writes_a_private_valid_pcapng(running, env, tmp_path, transport) -> None:
    out = tmp_path / "web01.pcapng"
    result = esxcap(
        "-i", inv(running), "capture", "--vm", "web 01", "-c", "6", "-o", str(out), "--json", *transport,
        env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    [stream] = result.json()["streams"]
    assert stream["packets"] == 6 and stream["error"] is None and stream["file"] == str(out)
    assert "--switchport" in stream["remote_command"]
    [(host, receive_path)] = result.json()["connections"].items()
    assert host == "esx02" and receive_path.startswith(f"{transport[1]} {version(transport[1])}")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and not out.with_name(out.name + ".part").exists()
    names, count = read_back(out)
    assert count == 6 and names == ["esx02:web 01 eth0:VnicRx,VnicTx:both"]
    if HAVE_TOOLS:
        assert capinfos(out).packets == 6
    assert remote_pktcaps(running, "esx02") == []


def test_json_summary_says_per_connection_whether_the_fast_receive_path_was_used(
    running, env, tmp_path
) -> None:
    asyncssh, checked = version("asyncssh"), asyncssh_receive.CHECKED_VERSIONS
    runs = {}
    for switch in ("1", "0"):
        result = esxcap(
            "-i", inv(running), "capture", "--vm", "web 01", "--vm", "legacy-erp", "-c", "2", "--json",
            "-o", str(tmp_path / f"switch{switch}.pcapng"), env={**env, "ESXCAP_FAST_RECEIVE": switch},
        )  # fmt: skip
        assert result.code == 0, result.stderr
        runs[switch] = result.json()["connections"]
    on = "active" if asyncssh in checked else "off: asyncssh"
    assert sorted(runs["1"]) == ["esx01", "esx02"]
    assert all(path.startswith(f"asyncssh {asyncssh}: fast receive path {on}") for path in runs["1"].values())
    off = f"asyncssh {asyncssh}: fast receive path off: ESXCAP_FAST_RECEIVE=0"
    assert runs["0"] == {"esx01": off, "esx02": off}


def test_both_directions_on_a_55_host_are_two_streams_in_one_file(running, env, tmp_path, transport) -> None:
    out = tmp_path / "erp.pcapng"
    result = esxcap(
        "-i", inv(running), "capture", "--vm", "legacy-erp", "-c", "3", "-o", str(out), "--json", *transport,
        env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    streams = result.json()["streams"]
    assert [s["point"] for s in streams] == ["Vmxnet3Rx", "Vmxnet3Tx"]
    names, count = read_back(out)
    assert sorted(names) == ["esx01:legacy-erp eth0:Vmxnet3Rx:in", "esx01:legacy-erp eth0:Vmxnet3Tx:out"]
    assert count == 6
    if HAVE_TOOLS:
        epochs = [float(row[0]) for row in tshark_fields(out, "frame.time_epoch")]
        assert epochs == sorted(epochs)


def test_duration_stop_counts_from_the_common_start(running, env, tmp_path) -> None:
    out = tmp_path / "vmk.pcapng"
    started = time.monotonic()
    result = esxcap(
        "-i", inv(running), "capture", "--vmk", "vmk0", "--host", "esx03", "-d", "2", "-o", str(out), env=env
    )
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert 2 <= elapsed < 2 + 3 * GRACE_SECONDS + 10
    read_back(out)
    assert remote_pktcaps(running, "esx03") == []


def test_max_bytes_stops_and_caps_the_file(running, env, tmp_path) -> None:
    out = tmp_path / "cap.pcapng"
    result = esxcap(
        "-i",
        inv(running),
        "capture",
        "--vm",
        "web02",
        "--max-bytes",
        "3000",
        "-d",
        "20",
        "-o",
        str(out),
        "--json",
        env=env,
    )
    assert result.code == 0, result.stderr
    [stream] = result.json()["streams"]
    assert 0 < stream["bytes"] <= 3000
    assert read_back(out)[1] == stream["packets"]


def test_filter_matching_nothing_leaves_no_orphan(running, env, tmp_path) -> None:
    out = tmp_path / "none.pcapng"
    result = esxcap(
        "-i",
        inv(running),
        "capture",
        "--vm",
        "web02",
        "--ip",
        "192.0.2.99",
        "-d",
        "2",
        "-o",
        str(out),
        "--json",
        env=env,
    )
    assert result.code == 0, result.stderr
    assert result.json()["streams"][0]["packets"] == 0
    assert remote_pktcaps(running, "esx03") == []


def _start_background_capture(
    running, env, out: Path, host_vm: str, transport: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    argv = ["-i", inv(running), "capture", "--vm", host_vm, "-o", str(out), *transport]
    return subprocess.Popen(
        [sys.executable, "-m", "esxcap", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def test_sigint_completes_files_and_stops_the_remote_capture(running, env, tmp_path) -> None:
    out = tmp_path / "int.pcapng"
    proc = _start_background_capture(running, env, out, "web02")
    assert wait_until(lambda: streaming(running, "esx03"), 20)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert read_back(out)[1] > 0
    assert wait_until(lambda: remote_pktcaps(running, "esx03") == [], 5)


def test_sigkill_of_the_cli_ends_the_remote_capture_within_the_grace(
    running, env, tmp_path, transport
) -> None:
    out = tmp_path / "kill.pcapng"
    proc = _start_background_capture(running, env, out, "web02", transport)
    assert wait_until(lambda: remote_pktcaps(running, "esx03"), 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_until(lambda: remote_pktcaps(running, "esx03") == [], 3 * GRACE_SECONDS + 5)


def test_cleanup_leaves_a_capture_in_use_alone_and_all_stops_it_visibly(
    tmp_path_factory, env, tmp_path, transport
) -> None:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("inuse")) as sim_thread:
        out = tmp_path / "victim.pcapng"
        proc = _start_background_capture(sim_thread, env, out, "web02", (*transport, "--json"))
        assert wait_until(lambda: streaming(sim_thread, "esx03"), 20)
        listed = esxcap("-i", inv(sim_thread), "cleanup", "esx03", "--json", *transport, env=env)
        assert listed.code == 0, listed.stderr
        [row] = listed.json()["captures"]
        assert (row["ours"], row["in_use"], row["action"]) == (
            True,
            True,
            "in use (another esxcap is capturing; --all stops it)",
        )
        assert proc.poll() is None and remote_pktcaps(sim_thread, "esx03")
        forced = esxcap(
            "-i", inv(sim_thread), "cleanup", "esx03", "--all", "--yes", "--json", *transport, env=env
        )
        assert [r["action"] for r in forced.json()["captures"]] == ["stopped"]
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    [stream] = yaml.safe_load(stdout)["streams"]
    assert stream["stop_reason"] == "stopped on the host"
    assert "stopped on the host (from outside this esxcap)" in stream["error"]
    assert read_back(out)[1] == stream["packets"] > 0


def test_connection_cut_mid_stream_keeps_a_valid_partial_file(
    tmp_path_factory, env, tmp_path, transport
) -> None:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("cut")) as sim_thread:
        out = tmp_path / "cut.pcapng"
        proc = _start_background_capture(sim_thread, env, out, "web02", transport)
        assert wait_until(lambda: streaming(sim_thread, "esx03"), 20)
        sim_thread.call(sim_thread.sim.stop_host("esx03"))
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"esx03" in stderr and b"lost" in stderr.lower()
    names, count = read_back(out)
    assert count > 0 and names
    if HAVE_TOOLS:
        assert capinfos(out).packets == count


def test_hostile_vm_name_is_captured_and_nothing_executes(tmp_path_factory, env, tmp_path) -> None:
    marker = tmp_path / "pwned"
    name = f"evil$(touch {marker});x"
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text.replace("web02", name))
    with SimulatorThread(topology_from_data(data, "<evil>"), tmp_path_factory.mktemp("evil")) as sim_thread:
        out = tmp_path / "evil.pcapng"
        result = esxcap("-i", inv(sim_thread), "capture", "--vm", name, "-c", "2", "-o", str(out), env=env)
    assert result.code == 0, result.stderr
    assert not marker.exists()
    assert read_back(out)[1] == 2


def test_stdout_stream_is_pcapng(running, env, tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "esxcap",
            "-i",
            inv(running),
            "capture",
            "--vm",
            "web 01",
            "-c",
            "4",
            "-o",
            "-",
        ],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "stdout.pcapng"
    path.write_bytes(proc.stdout)
    assert read_back(path)[1] == 4
    assert b"Capture summary" in proc.stderr


def test_console_prints_one_line_per_packet(running, env, tmp_path) -> None:
    result = esxcap(
        "-i",
        inv(running),
        "capture",
        "--vm",
        "web 01",
        "-c",
        "5",
        "--console",
        "-o",
        str(tmp_path / "c.pcapng"),
        env=env,
    )
    assert result.code == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if "esx02 web 01 eth0" in ln]
    assert len(lines) == 5


def test_default_output_directory_and_name(running, env, tmp_path) -> None:
    result = esxcap("-i", inv(running), "capture", "--vm", "web 01", "-c", "2", env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    made, sidecar = sorted((tmp_path / "captures").iterdir())
    assert made.name.endswith("-esx02-web_01_eth0.pcapng") and read_back(made)[1] == 2
    assert sidecar.name == made.name + ".json"


def test_points_lists_the_host_points(running, env) -> None:
    old = esxcap("-i", inv(running), "points", "esx01", "--json", env=env)
    new = esxcap("-i", inv(running), "points", "esx03", "--json", env=env)
    assert old.code == new.code == 0, old.stderr + new.stderr
    assert "Vmxnet3Rx" in old.json()["points"] and "VnicRx" in new.json()["points"]


def test_merge_two_captures(running, env, tmp_path) -> None:
    a, b, merged = tmp_path / "a.pcapng", tmp_path / "b.pcapng", tmp_path / "m.pcapng"
    for path, vm in ((a, "web 01"), (b, "web02")):
        assert (
            esxcap("-i", inv(running), "capture", "--vm", vm, "-c", "3", "-o", str(path), env=env).code == 0
        )
    result = esxcap("merge", str(a), str(b), "-o", str(merged), env=env)
    assert result.code == 0, result.stderr
    names, count = read_back(merged)
    assert count == 6 and len(names) == 2
    if HAVE_TOOLS:
        epochs = [float(row[0]) for row in tshark_fields(merged, "frame.time_epoch")]
        assert epochs == sorted(epochs)


def test_cleanup_stops_ours_and_leaves_foreign_captures_unless_all(tmp_path_factory, env, transport) -> None:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("clean")) as st:
        lingering = ["pktcap-uw", "--vmk", "vmk0", "--ip", "192.0.2.77", "-o", "-"]
        for _ in range(2):  # filters that match nothing: both linger after their channel closes
            with pytest.raises(TimeoutError):
                run_exec(st, "esx03", lingering, timeout=0.5)
        ours, foreign = (p.cid for p in st.sim.hosts["esx03"].processes.pktcaps())
        pidfile = "/tmp/esxcap/esxcap-0123456789ab.pid"

        async def mark_ours() -> None:  # as a wrapper killed by someone would have left it
            st.sim.hosts["esx03"].processes.files[pidfile] = bytearray(f"{ours}\n".encode())

        st.call(mark_ours())
        result = esxcap("-i", inv(st), "cleanup", "esx03", "--json", *transport, env=env)
        assert result.code == 0, result.stderr
        actions = {row["pid"]: (row["ours"], row["action"]) for row in result.json()["captures"]}
        assert actions == {
            ours: (True, "stopped"),
            foreign: (False, "left alone (not esxcap's; --all stops it)"),
        }
        assert [p.cid for p in st.sim.hosts["esx03"].processes.pktcaps()] == [foreign]
        assert pidfile not in st.sim.hosts["esx03"].processes.files
        refused = esxcap("-i", inv(st), "cleanup", "esx03", "--all", *transport, env=env)
        assert refused.code == 2 and "--yes" in refused.stderr
        forced = esxcap("-i", inv(st), "cleanup", "esx03", "--all", "--yes", "--json", *transport, env=env)
        assert forced.code == 0, forced.stderr
        assert [row["action"] for row in forced.json()["captures"]] == ["stopped"]
        assert remote_pktcaps(st, "esx03") == []


def test_hex_dump_spans_lines(running, env, tmp_path) -> None:
    result = esxcap(
        "-i", inv(running), "capture", "--vm", "web 01", "-c", "1", "--console", "--hex",
        "-o", str(tmp_path / "h.pcapng"), env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "\\x0a" not in result.stdout
    assert any(line.strip().startswith("0x0000:") for line in result.stdout.splitlines())
