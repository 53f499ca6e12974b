"""Captures across hosts, end to end against the simulator over SSH: one merged, time-ordered pcapng with
one labelled interface per stream, a host down among three (exit 3, the others complete), clock offsets
within their stated bound, --align-clocks, --split, recipes and the path view against the traffic model."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY
from pcaptools import TSHARK, tshark_fields

from esxcap.pcap import CaptureFile
from esxcap.pcap.comments import parse_clock_comment
from esxcap.sim import SimulatorThread, topology_from_data
from esxcap.sim.traffic import TrafficModel

SKEW_MS = {"old": 120, "mid": -35, "new": 0}
DROPPED = "drop-m1-n2"


LINK_US = 10_000
"""The model's wire latency between hosts, well above how far the two hosts' measured clock offsets err
against each other on a busy test machine (a few ms), so the path view sees the cross-host hop in its
real order."""


def topology_data() -> dict[str, Any]:
    data = copy.deepcopy(FAST_TOPOLOGY)
    data["latency"] = {"link_us": LINK_US}
    data["flows"].append(
        {"name": DROPPED, "from": "m1", "to": "n2", "kind": "tcp", "port": 443, "rate_pps": 100, "drop": True}
    )
    return data


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(topology_data(), "<multihost>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("multisim")) as sim_thread:
        yield sim_thread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def inv(running: SimulatorThread) -> str:
    return str(running.sim.inventory_path)


def interfaces_of(path: Path) -> list[Any]:
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        for _ in source:
            pass
        return list(source.interfaces)


def test_three_hosts_two_points_merge_into_one_ordered_file(running, env, tmp_path) -> None:
    out = tmp_path / "all.pcapng"
    started = time.monotonic()
    result = esxcap(
        "-i", inv(running), "capture", "--uplink", "vmnic0", "--all-hosts",
        "--point", "UplinkRcv", "--point", "UplinkSnd", "-d", "1.5", "-o", str(out), "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert time.monotonic() - started >= 1.5
    doc = result.json()
    streams = doc["streams"]
    assert len(streams) == 6 and {s["file"] for s in streams} == {str(out)}
    assert all(s["error"] is None for s in streams)
    assert all(s["packets"] > 0 for s in streams if s["host"] != "old")  # no flow leaves old's switch
    expected = {f"{h}:vmnic0:{p}:point" for h in SKEW_MS for p in ("UplinkRcv", "UplinkSnd")}
    interfaces = interfaces_of(out)
    assert {i.name for i in interfaces} == expected
    for iface in interfaces:
        parsed = [parse_clock_comment(c) for c in iface.comments]
        assert next(p for p in parsed if p is not None)[1] is False
    for check in doc["clocks"]:
        start, end = check["start"], check["end"]
        skew = SKEW_MS[check["host"]]
        method = "date +%s.%N" if check["host"] == "new" else "date +%s second edge"  # old, mid: no %N
        assert start["method"] == method and start["bound_ms"] < 50
        assert abs(start["offset_ms"] - skew) <= start["bound_ms"] + 0.001
        assert abs(end["offset_ms"] - skew) <= end["bound_ms"] + 0.001
    if TSHARK:
        rows = tshark_fields(out, "frame.time_epoch", "frame.interface_name")
        epochs = [float(r[0]) for r in rows]
        assert epochs == sorted(epochs)
        assert {r[1] for r in rows} == {n for n in expected if not n.startswith("old")}


def test_one_host_down_among_three_exits_3_and_the_others_complete(make_sim, env, tmp_path) -> None:
    st = make_sim(topology_data())
    st.call(st.sim.stop_host("old"))
    out = tmp_path / "partial.pcapng"
    result = esxcap(
        "-i", str(st.sim.inventory_path), "capture", "--uplink", "vmnic0", "--all-hosts",
        "-d", "1", "-o", str(out), "--json", env=env,
    )  # fmt: skip
    assert result.code == 3, result.stderr
    doc = result.json()
    assert [e["host"] for e in doc["errors"]] == ["old"]
    assert {s["host"] for s in doc["streams"]} == {"mid", "new"}
    assert all(s["error"] is None and s["packets"] > 0 for s in doc["streams"])
    assert {i.name.split(":")[0] for i in interfaces_of(out)} == {"mid", "new"}
    table = esxcap(
        "-i", str(st.sim.inventory_path), "capture", "--uplink", "vmnic0", "--all-hosts",
        "-c", "2", "-o", str(tmp_path / "t.pcapng"), env=env,
    )  # fmt: skip
    assert table.code == 3
    [row] = [line for line in table.stdout.splitlines() if line.strip("│ ").startswith("old")]
    assert "failed" in row


def test_align_clocks_and_split(running, env, tmp_path) -> None:
    out = tmp_path / "aligned.pcapng"
    result = esxcap(
        "-i", inv(running), "capture", "--vmk", "vmk0", "--host", "mid", "--host", "new",
        "--dir", "out", "-c", "20", "--align-clocks", "--split", "-o", str(out), "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    split = sorted(p.name for p in tmp_path.glob("aligned-*.pcapng"))
    assert split == ["aligned-mid-vmk0_PortInput_out.pcapng", "aligned-new-vmk0_PortInput_out.pcapng"]
    for name in split:
        [iface] = interfaces_of(tmp_path / name)
        assert iface.name.endswith(":vmk0:PortInput:out")
    comments = [c for i in interfaces_of(out) for c in i.comments if parse_clock_comment(c)]
    assert len(comments) == 2
    starts = {c["host"]: c["start"] for c in result.json()["clocks"]}
    for comment in comments:
        start = starts[comment.split(":")[0]]
        beyond_bound = abs(start["offset_ms"]) > start["bound_ms"]  # only such offsets are applied
        offset_ns, aligned = parse_clock_comment(comment) or (None, None)
        assert offset_ns is not None and abs(offset_ns - start["offset_ms"] * 1e6) <= 1000, comment
        assert aligned == beyond_bound, comment
    with out.open("rb") as handle:
        first = next(iter(CaptureFile(handle, out.name))).ts_ns
    assert abs(first / 1e9 - time.time()) < 30


def test_path_view_finds_the_dropped_flow_and_model_latency(running, env, tmp_path) -> None:
    out = tmp_path / "vm2vm.pcapng"
    result = esxcap(
        "-i", inv(running), "recipe", "vm-to-vm", "m1", "n2", "-d", "1.5", "--path", "-o", str(out), "--json",
        env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    doc = result.json()
    # how far the offsets the path view corrects by are from the simulated skews (within their bounds on
    # an idle machine; a loaded one can push a reading past its bound)
    topology = running.sim.topology
    misread = [abs(c["start"]["offset_ms"] - topology.host(c["host"]).clock_skew_ms) for c in doc["clocks"]]
    bound_ns = max(sum(c["start"]["bound_ms"] for c in doc["clocks"]), sum(misread)) * 1e6
    forward = [f for f in doc["path"]["flows"] if f["direction"].startswith("10.0.20.11:")]
    assert forward
    lost = [loss for f in forward for loss in f["lost"]]
    assert lost and all(loss["never_at"] == ["new n2 eth0 VnicRx"] for loss in lost)
    # packets near a stream's start or end are not expected elsewhere; all others must be reported
    assert sum(loss["packets"] for loss in lost) >= 0.8 * sum(f["packets"] for f in forward)
    assert "never at new n2 eth0 VnicRx" in lost[0]["text"]
    model = TrafficModel(running.sim.topology)
    [route] = [r for r in model.routes if r.conversation.flow.name == DROPPED and r.forward]
    at = {(h.host, h.point): h.offset_ns for h in route.hops}
    assert [h.offset_ns for h in route.hops] == sorted(h.offset_ns for h in route.hops)
    assert {(h.host, h.point) for h in route.hops} <= {(h.host, h.point) for h in model.hops_of(DROPPED)}
    expect = {
        ("mid m1 eth0 VnicTx", "mid vmnic0 UplinkSndKernel"): (
            at["mid", "UplinkSndKernel"] - at["mid", "VnicTx"],
            2_000,
        ),
        ("mid vmnic0 UplinkSndKernel", "new vmnic0 UplinkRcvKernel"): (
            at["new", "UplinkRcvKernel"] - at["mid", "UplinkSndKernel"],
            bound_ns + 2_000,
        ),
    }
    seen = 0
    for flow in forward:
        for hop in flow["hops"]:
            if (hop["from"], hop["to"]) not in expect:  # a flow whose first packets preceded a stream's start
                continue
            want, slack = expect[hop["from"], hop["to"]]
            assert abs(hop["median_us"] * 1000 - want) <= slack, (hop, want)
            seen += 1
    assert seen >= 2
    text = esxcap("path", str(out), env=env)
    assert text.code == 0 and "never at new n2 eth0 VnicRx" in text.stdout
