"""Capture discovery at real-host speed: a capture asks a host only what its targets need, runs the
independent esxcli calls at once, and plans exactly what a full discovery would have planned. The
simulator's esxcli is slowed (`esxcli_latency_ms`) so calls in flight can be seen overlapping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import esxcap, isolated_env

from esxcap.errors import ConfigError
from esxcap.esxi.capabilities import Capabilities
from esxcap.inventory import load_inventory
from esxcap.plan.planner import CaptureOptions, HostView, TargetRequest, resolve, streams
from esxcap.sim import SimulatorThread, topology_from_data, with_esxcli_latency
from esxcap.ssh.discovery import discover
from esxcap.ssh.session import make_transport

HOST = "esx03"
FILLERS = 12
LATENCY_MS = 150


def slow_topology() -> dict[str, Any]:
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    host = yaml.safe_load(text)["hosts"][HOST]
    fillers = [
        {"name": f"filler{i:02d}", "vnics": [{"mac": f"00:50:56:a2:31:{i:02x}", "portgroup": "VM Network"}]}
        for i in range(FILLERS)
    ]
    return {"hosts": {HOST: {**host, "vms": [*host["vms"], *fillers], "esxcli_latency_ms": LATENCY_MS}}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(slow_topology(), "<slow esxcli>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("slowsim")) as thread:
        yield thread


def full_discovery_plan(sim: SimulatorThread, request: TargetRequest) -> list[dict[str, str]]:
    """The streams planned from everything `discover` finds (what captures planned from before)."""
    config = load_inventory(sim.sim.inventory_path).hosts[HOST]

    async def facts() -> Any:
        conn = await make_transport("asyncssh").connect(config, password=None, accept_new=False)
        try:
            return await discover(conn, config, capture_points=True)
        finally:
            await conn.close()

    found = asyncio.run(facts())
    caps = Capabilities.for_version(found.version.version_tuple).with_points(found.capture_points)
    planned = streams(
        resolve([request], [HostView(HOST, found, caps)], True).targets, CaptureOptions(), {HOST: caps}
    )
    return [
        {"target": s.target.label, "interface": s.interface_name, "argv": " ".join(s.argv)} for s in planned
    ]


def dry_run(sim: SimulatorThread, tmp_path: Path, *args: str) -> list[dict[str, str]]:
    result = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--host", HOST, *args, "--dry-run", "--json",
        env=isolated_env(tmp_path),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    return [
        {"target": s["target"], "interface": s["interface"], "argv": s["remote_command"]}
        for s in result.json()["streams"]
    ]


def test_a_vm_capture_asks_for_that_vm_alone_and_overlaps_its_esxcli_calls(sim, tmp_path) -> None:
    calls = sim.sim.hosts[HOST].calls
    before, calls.peak_waiting = calls.esxcli, 0
    planned = dry_run(sim, tmp_path, "--vm", "app 03", "--nic", "2")
    assert calls.esxcli - before == 3  # vm list, system version, app 03's port list (not 8 + 16 VMs)
    assert calls.peak_waiting >= 2  # vm list and system version were in flight together
    assert planned[0]["target"] == "app 03 eth1"


@pytest.mark.parametrize(
    ("args", "request_"),
    [
        (("--vm", "app 03", "--nic", "2"), TargetRequest("vm", "app 03", nic="2")),
        (("--vm", "WEB02"), TargetRequest("vm", "WEB02")),
        (("--vmk", "vmk1"), TargetRequest("vmk", "vmk1")),
        (("--uplink", "vmnic2"), TargetRequest("uplink", "vmnic2")),
        (("--drop",), TargetRequest("drop")),
        (("--vm", "filler0*", "--many", "--yes"), TargetRequest("vm", "filler0*", many=True)),
        (("--portgroup", "VM Network", "--yes"), TargetRequest("portgroup", "VM Network")),
    ],
    ids=["vm-nic", "vm-any-case", "vmk", "uplink", "drop", "vm-glob", "portgroup"],
)
def test_the_plan_is_what_full_discovery_plans(sim, tmp_path, args, request_) -> None:
    assert dry_run(sim, tmp_path, *args) == full_discovery_plan(sim, request_)


def test_a_switchport_capture_needs_no_esxcli_but_the_version(sim, tmp_path) -> None:
    port = sim.sim.hosts[HOST].topology.vnic_ports(sim.sim.hosts[HOST].topology.vms[0])[0].port_id
    calls = sim.sim.hosts[HOST].calls
    before = calls.esxcli
    [stream] = dry_run(sim, tmp_path, "--switchport", str(port))
    assert calls.esxcli - before == 1 and f"--switchport {port}" in stream["argv"]


def test_latency_is_read_from_the_topology_and_overridden_by_the_sim_command(tmp_path) -> None:
    data = slow_topology()
    assert topology_from_data(data, "<t>").host(HOST).esxcli_latency_ms == LATENCY_MS
    faster = with_esxcli_latency(topology_from_data(data, "<t>"), 5)
    assert [h.esxcli_latency_ms for h in faster.hosts] == [5]
    data["hosts"][HOST]["esxcli_latency_ms"] = -1
    with pytest.raises(ConfigError, match="esxcli_latency_ms"):
        topology_from_data(data, "<t>")
    refused = esxcap(
        "sim", "--esxcli-latency", "-5", "--state-dir", str(tmp_path), env=isolated_env(tmp_path)
    )
    assert refused.code == 2 and "--esxcli-latency" in refused.stderr
