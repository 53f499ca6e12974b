"""`--trigger` end to end: the real CLI against simulated hosts, each condition fired by the simulator's
traffic, the window kept on every host in one merged file per event, the trigger packet's comment read
back with tshark, the event in the sidecar; the first second, overlapping triggers, --trigger-count, a
host failing mid-window, and the expressions and outputs refused before anything connects."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY
from pcaptools import TSHARK, requires_tools
from polling import wait_until

from esxcap.capture.ring import SEGMENT_NAME
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread, topology_from_data

pytestmark = requires_tools


def topology_data() -> dict[str, Any]:
    """FAST_TOPOLOGY with a SYN nobody answers (every 2nd connection m1 -> n1), UDP probes answered by
    ICMP port unreachable, and the vmknics' ping slowed to one packet every 2 s (gaps)."""
    data = copy.deepcopy(FAST_TOPOLOGY)
    data["flows"] += [
        {"name": "syn-m1-n1", "from": "m1", "to": "n1", "kind": "tcp", "port": 8080, "rate_pps": 40,
         "faults": {"unanswered_every": 2}},
        {"name": "probe-m1-n1", "from": "m1", "to": "n1", "kind": "udp-closed", "rate_pps": 4},
    ]  # fmt: skip
    for flow in data["flows"]:
        if flow["name"] == "ping-vmk":
            flow["rate_pps"] = 0.5
    return data


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(topology_data(), "<trigger>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("triggersim")) as sim_thread:
        yield sim_thread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def run(running: SimulatorThread, env: dict[str, str], out: Path, *args: str) -> Any:
    result = esxcap(
        "-i", str(running.sim.inventory_path), *args, "-d", "30", "-o", f"{out}/", "--json", env=env
    )
    assert result.code == 0, result.stderr
    return result


EVENT_NAME = re.compile(r"_trigger\d{3}_\d{8}T\d{6}\.\d{3}Z\.pcapng$")


def events_in(out: Path) -> list[Path]:
    """The event files (not their --split files)."""
    return sorted(p for p in out.glob("*_trigger*.pcapng") if EVENT_NAME.search(p.name))


def fields(path: Path, *names: str, display: str = "") -> list[list[str]]:
    assert TSHARK is not None
    command = [TSHARK, "-r", str(path), "-T", "fields", *(a for n in names for a in ("-e", n))]
    if display:
        command += ["-Y", display]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


def sidecar(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.with_name(path.name + ".json").read_text())
    return document


def test_rst_between_vms_on_two_hosts_keeps_the_window_on_both(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    result = run(running, env, out, "recipe", "vm-to-vm", "m2", "n1", "--trigger", "count:6:tcp-rst",
                 "--before", "1", "--after", "0.5")  # fmt: skip
    [event] = events_in(out)
    assert "_trigger001_" in event.name and not list(out.glob("*.part"))
    marked = fields(
        event, "frame.interface_name", "tcp.flags.reset", "frame.comment", display="frame.comment"
    )
    assert marked and all(reset == "1" for _iface, reset, _c in marked)
    assert "esxcap trigger count:6:tcp-rst fired on" in marked[0][2] and "TCP RST (match 6)" in marked[0][2]
    hosts = {name.split(":")[0] for [name] in fields(event, "frame.interface_name")}
    assert hosts == {"mid", "new"}
    stamps = [float(t) for [t] in fields(event, "frame.time_epoch")]
    [trigger_time] = [float(t) for [t] in fields(event, "frame.time_epoch", display="frame.comment")][:1]
    assert min(stamps) < trigger_time < max(stamps)
    assert trigger_time - min(stamps) <= 1.0 + 0.2 and max(stamps) - trigger_time <= 0.5 + 0.2
    assert trigger_time - min(stamps) >= 0.8  # the sixth RST comes after 1.5 s: a whole before-window
    document = sidecar(event)["trigger"]
    assert document["condition"] == "count:6:tcp-rst" and document["before_s_kept"] == 1.0
    assert set(document["packets"]) == {n for [n] in fields(event, "frame.interface_name")}
    assert result.json()["triggers"][0]["file"] == event.name


def test_a_trigger_in_the_first_second_has_a_shorter_before_window_said_so(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    result = run(running, env, out, "recipe", "vm-to-vm", "m2", "n1", "--trigger", "tcp-rst",
                 "--before", "5", "--after", "0.3")  # fmt: skip
    [event] = events_in(out)
    kept = sidecar(event)["trigger"]["before_s_kept"]
    assert kept < 1.5
    assert f"its before-window holds {kept:.1f} s, not 5 s" in result.stderr


def test_trigger_count_2_keeps_two_events_and_a_trigger_inside_a_window_joins_it(
    running, env, tmp_path
) -> None:
    out = tmp_path / "out"
    result = run(running, env, out, "recipe", "vm-to-vm", "m2", "n1", "--trigger", "tcp-rst",
                 "--trigger-count", "2", "--before", "0.2", "--after", "0.6", "--split")  # fmt: skip
    events = events_in(out)
    for event in events:  # --split: one file per stream of each event beside it
        assert len(list(out.glob(f"{event.stem}-*.pcapng"))) == 8
    assert [e.name.split("_trigger")[1][:3] for e in events] == ["001", "002"]
    documents = [sidecar(e)["trigger"] for e in events]
    # an RST is seen at four points within ~1 ms, and the next connection's RST 0.28 s later: both inside
    # the first event's after-window, so they belong to it (marked, listed) rather than open events
    assert len(documents[0]["triggers"]) >= 4
    assert documents[0]["triggers_in_window"] == len(documents[0]["triggers"])
    assert documents[1]["window_utc"][0] > documents[0]["trigger_utc"]
    for event in events:
        comments = [c for [c] in fields(event, "frame.comment", display="frame.comment")]
        assert len(comments) >= 2 and all("tcp-rst fired on" in c for c in comments)
    assert [t["number"] for t in result.json()["triggers"]] == [1, 2]


def test_a_ring_keeps_rolling_and_never_deletes_the_event_files(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    ring = ("--ring", "files:2,filesize:24k")
    result = run(running, env, out, "recipe", "vm-to-vm", "m2", "n1", *ring, "--trigger", "tcp-rst",
                 "--trigger-count", "2", "--before", "0.3", "--after", "0.8")  # fmt: skip
    events = events_in(out)
    assert [e["file"] for e in result.json()["triggers"]] == [e.name for e in events] and len(events) == 2
    segments = sorted(p for p in out.glob("*.pcapng") if SEGMENT_NAME.match(p.name))
    assert len(segments) == 2 and "older rotated out" in result.stderr
    for event in events:
        comments = [c for [c] in fields(event, "frame.comment", display="frame.comment")]
        assert comments and "tcp-rst fired on" in comments[0]
        assert {n.split(":")[0] for [n] in fields(event, "frame.interface_name")} == {"mid", "new"}
    refused = esxcap("-i", str(running.sim.inventory_path), "recipe", "vm-to-vm", "m2", "n1", *ring,
                     "--split", "--trigger", "tcp-rst", "-o", f"{out}/", env=env)  # fmt: skip
    assert refused.code == 2 and "one ring per stream" in refused.stderr


CONDITIONS = {
    "tcp-syn-noreply:0.5": (("recipe", "vm-to-vm", "m1", "n1"), "TCP SYN with no SYN/ACK within 0.5 s"),
    "icmp-unreach": (("recipe", "vm-to-vm", "m1", "n1"), "ICMP destination unreachable (code 3)"),
    "drop": (
        ("capture", "--drop", "--vmk", "vmk0", "--host", "mid", "--host", "new"),
        "a packet at the Drop",
    ),
    "gap:1.5": (
        ("capture", "--vmk", "vmk0", "--host", "mid", "--host", "new", "--dir", "out"),
        "a gap: silent",
    ),
    "bytes:0806@12": (("capture", "--vm", "m1"), "bytes 0806 at offset 12"),
    "df:tcp.flags.reset == 1": (("recipe", "vm-to-vm", "m2", "n1"), "display filter 'tcp.flags.reset == 1'"),
}


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_each_condition_fires_on_the_simulators_traffic(running, env, tmp_path, condition) -> None:
    command, said = CONDITIONS[condition]
    out = tmp_path / "out"
    run(running, env, out, *command, "--trigger", condition, "--before", "0.5", "--after", "0.5")
    [event] = events_in(out)
    comments = [c for [c] in fields(event, "frame.comment", display="frame.comment")]
    assert comments and said in comments[0], comments
    if condition == "bytes:0806@12":
        assert fields(event, "eth.type", display="frame.comment")[0] == ["0x0806"]
    if condition.startswith("df:"):
        assert fields(event, "tcp.flags.reset", display="frame.comment")[0] == ["1"]
    if condition == "drop":
        assert ":Drop:" in sidecar(event)["trigger"]["fired_on"]


def during_an_event(
    running: SimulatorThread, env: dict[str, str], out: Path, after: str, act: Callable[[Any], object]
) -> tuple[int, str, str]:
    """vm-to-vm m2 n1 with --trigger tcp-rst and this after-window; `act(process)` once the first event
    is being written; (exit code, stdout, stderr)."""
    argv = [sys.executable, "-m", "esxcap", "-i", str(running.sim.inventory_path), "recipe", "vm-to-vm",
            "m2", "n1", "--trigger", "tcp-rst", "--before", "0.5", "--after", after, "-o", f"{out}/",
            "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: list(out.glob("*_trigger001_*.part")), 30)
        act(proc)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, stdout, stderr


def test_a_host_failing_mid_window_still_writes_the_event_and_says_so(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    returncode, stdout, stderr = during_an_event(
        running, env, out, "6", lambda _proc: running.call(running.sim.reset_connections("new"))
    )
    assert returncode == 3, stderr
    [event] = events_in(out)
    assert "failed before its window ended" in stderr and event.name in stderr
    hosts = {name.split(":")[0] for [name] in fields(event, "frame.interface_name")}
    assert hosts == {"mid", "new"}
    failed = sidecar(event)["trigger"]["failed_during_window"]
    assert failed and all(f["stream"].startswith("new:") for f in failed)
    assert json.loads(stdout)["triggers"][0]["failed_during_window"] == failed
    with event.open("rb") as handle:
        assert sum(1 for _ in CaptureFile(handle, event.name)) > 0


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("tcp-fin", "'tcp-fin' is not a trigger condition"),
        ("gap", "'gap' needs the silence in seconds"),
        ("gap:soon", "'soon' is not a number of seconds"),
        ("bytes:08zz@12", "'08zz' is not hexadecimal bytes"),
        ("bytes:0806", "needs HEX@OFFSET"),
        ("count:x:tcp-rst", "'x' must be a count"),
        ("count:3:count:2:drop", "cannot be counted"),
        ("tcp-rst:5", "'5' is not expected: tcp-rst takes no value"),
        ("df:", "needs a display filter"),
    ],
)
def test_bad_expressions_are_refused_naming_the_part(env, tmp_path, expr, said) -> None:
    result = esxcap("-i", str(tmp_path / "none.yaml"), "capture", "--vm", "x", "--trigger", expr, env=env)
    assert result.code == 2 and said in result.stderr, result.stderr


def test_df_without_tshark_is_refused_before_connecting(env, tmp_path) -> None:
    no_tshark = {**env, "PATH": os.path.dirname(sys.executable)}
    result = esxcap(
        "-i", str(tmp_path / "none.yaml"), "capture", "--vm", "x", "--trigger", "df:tcp", env=no_tshark
    )
    assert result.code == 2 and "needs tshark, which is not installed" in result.stderr


@pytest.mark.parametrize("extra", [("-o", "-"), ("--live",), ("--trigger-count", "2", "--after", "-1")])
def test_outputs_and_values_a_trigger_cannot_use_are_refused(running, env, extra) -> None:
    result = esxcap("-i", str(running.sim.inventory_path), "capture", "--vm", "m1", "--trigger", "tcp-rst",
                    *extra, env=env)  # fmt: skip
    assert result.code == 2, result.stderr


def test_ctrl_c_during_the_after_window_says_how_much_of_it_was_kept(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    returncode, stdout, stderr = during_an_event(
        running, env, out, "60", lambda proc: proc.send_signal(signal.SIGINT)
    )
    assert returncode == 0, stderr  # one Ctrl-C: files completed
    [event] = events_in(out)
    document = sidecar(event)["trigger"]
    stamps = [float(t) for [t] in fields(event, "frame.time_epoch")]
    [trigger_time] = [float(t) for [t] in fields(event, "frame.time_epoch", display="frame.comment")][:1]
    kept = document["after_s_kept"]
    assert kept < 30 and abs(kept - (max(stamps) - trigger_time)) < 1.0
    assert document["window_end_reached"] is False
    assert f"its after-window holds {kept:.1f} s, not 60 s" in stderr
    assert json.loads(stdout)["triggers"][0]["after_s_kept"] == kept


def test_events_are_named_after_the_whole_o_file_name(running, env, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("db.prod", "db.staging"):
        result = esxcap("-i", str(running.sim.inventory_path), "recipe", "vm-to-vm", "m2", "n1",
                        "--trigger", "tcp-rst", "--before", "0.5", "--after", "0.3", "-d", "30",
                        "-o", f"{out}/{name}", env=env)  # fmt: skip
        assert result.code == 0, result.stderr
    names = sorted(p.name for p in events_in(out))
    assert [n.split("_trigger001_")[0] for n in names] == ["db.prod", "db.staging"]


@pytest.mark.parametrize(("display", "said"), [("(((", "Unexpected end"), ("tcp.bogus", "neither a field")])
def test_a_display_filter_tshark_refuses_is_refused_before_connecting(env, tmp_path, display, said) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  esx01:\n    hostname: 127.0.0.1\n    port: 1\n")
    result = esxcap("-i", str(inventory), "capture", "--vmk", "vmk0", "--trigger", f"df:{display}",
                    "-o", f"{tmp_path}/", env=env)  # fmt: skip
    shown = " ".join(result.stderr.split())
    assert result.code == 2, result.stderr
    assert f"--trigger df:{display}: tshark refuses this display filter" in shown and said in shown
    assert "esx01" not in shown  # nothing connected, so nothing waits for a trigger that cannot fire
