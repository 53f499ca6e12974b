"""A capture's first look: pktcap-uw starts from what `net-stats -l` shows (no esxcli waited on), the
esxcli facts complete the sidecar afterwards, and whatever the first look cannot settle is planned from
the complete facts with the errors of a full discovery. The simulator's esxcli is slowed a lot
(`esxcli_latency_ms`) and records in order when its esxcli calls answered and when pktcap-uw started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import esxcap, isolated_env
from polling import wait_until

from esxcap.esxi.facts import vms_in_net_stats
from esxcap.esxi.models import EsxiVersion, HostFacts, NetStatsPort, VmEntry, VmFacts, VmPort
from esxcap.esxi.pktcap import Selector
from esxcap.plan.planner import Target, TargetRequest
from esxcap.plan.scope import first_look_facts, scope_for, unconfirmed
from esxcap.sim import SimulatorThread, topology_from_data

HOST = "esx03"
LATENCY_MS = 3000
VERSION = EsxiVersion("VMware ESXi", "8.0.2", "22380479", "2")


def slow_topology() -> dict[str, Any]:
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    host = yaml.safe_load(text)["hosts"][HOST]
    twins = [
        {"name": "twin", "vnics": [{"mac": f"00:50:56:a2:32:0{i}", "portgroup": "VM Network"}]}
        for i in (1, 2)
    ]
    host = {**host, "vms": [*host["vms"], *twins], "esxcli_latency_ms": LATENCY_MS}
    flow = {"name": "busy", "from": "web02", "to": "データベース01", "kind": "icmp", "rate_pps": 100}
    return {"hosts": {HOST: host}, "flows": [flow]}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(slow_topology(), "<slow esxcli>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("firstlook")) as thread:
        yield thread


def capture(sim: SimulatorThread, tmp_path: Path, *args: str) -> Any:
    return esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--host", HOST, *args, env=isolated_env(tmp_path)
    )  # fmt: skip


def test_pktcap_uw_starts_before_any_esxcli_answers_and_the_sidecar_gets_the_esxcli_facts(
    sim, tmp_path
) -> None:
    events = sim.sim.hosts[HOST].calls.events
    events.clear()
    out = tmp_path / "web02.pcapng"
    result = capture(sim, tmp_path, "--vm", "web02", "-c", "1", "-o", str(out))
    assert result.code == 0, result.stderr
    seen = list(events)
    assert seen.index("pktcap-uw started") < seen.index("esxcli answered"), seen
    sidecar = json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))
    [target] = sidecar["targets"]
    assert (target["vm"], target["portgroup"], target["vswitch"]) == ("web02", "dvpg-web", "VDS-Prod")
    assert target["ip"] and target["dvport_id"] is not None
    facts = sidecar["hosts"][HOST]["facts"]
    assert facts["esxi"]["patch"] is not None  # from esxcli system version get, not vmware -vl
    assert {vm["name"] for vm in facts["vms"]} >= {"web02", "app 03", "twin"}
    assert all(vm["world_id"] for vm in facts["vms"])
    # the whole host, as `discover` shows it: its vmknics, uplinks, switches and their portgroups
    assert facts["vmknics"] and facts["uplinks"] and any(s["portgroups"] for s in facts["switches"])
    assert {s["type"] for s in facts["switches"]} == {"standard", "distributed"}


def test_a_ctrl_c_while_esxcli_still_answers_keeps_the_capture_and_a_first_look_sidecar(
    sim, tmp_path
) -> None:
    out = tmp_path / "early.pcapng"
    argv = [sys.executable, "-m", "esxcap", "-i", str(sim.sim.inventory_path), "capture", "--host", HOST]
    argv += ["--vm", "web02", "-c", "1", "-o", str(out)]
    proc = subprocess.Popen(argv, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the file is complete (given its name) while the esxcli facts for its sidecar are still coming
        assert wait_until(out.exists, 2 * LATENCY_MS / 1000)
        assert not out.with_name(out.name + ".json").exists()
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    sidecar = json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))
    [target] = sidecar["targets"]
    assert (target["vm"], target["port_id"], target["portgroup"]) == (
        "web02",
        target["selector"]["value"],
        "",
    )
    assert sidecar["packets"] == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--vm", "nobody"), "VM 'nobody' not found on esx03; running VMs there: "),
        (("--vm", "app 03"), "VM 'app 03' on esx03 has 2 vNICs; which one?"),
        (("--vm", "twin"), "VM name 'twin' is ambiguous"),
    ],
    ids=["not-found", "several-vnics", "ambiguous"],
)
def test_what_the_first_look_cannot_settle_fails_as_a_full_discovery_does(sim, tmp_path, args, said) -> None:
    started = list(sim.sim.hosts[HOST].calls.events).count("pktcap-uw started")
    captured = capture(sim, tmp_path, *args, "-c", "1", "-o", str(tmp_path / "x.pcapng"))
    planned = capture(sim, tmp_path, *args, "--dry-run")
    assert captured.code == planned.code == 2
    assert said in captured.stderr and captured.stderr == planned.stderr
    assert list(sim.sim.hosts[HOST].calls.events).count("pktcap-uw started") == started


def netstats_row(port: int, client: str, kind: int = 5) -> NetStatsPort:
    return NetStatsPort(port, kind, 9, "vSwitch0", f"00:50:56:00:00:{port % 256:02x}", client)


def test_net_stats_client_names_become_vms_with_their_vnics_in_order() -> None:
    rows = (
        netstats_row(10, "vmk0", 3),
        netstats_row(11, "db.eth1"),
        netstats_row(12, "db"),  # a first vNIC on a standard switch: the bare name
        netstats_row(13, "NSX Manager.eth0"),
        netstats_row(14, "twin.eth0"),
        netstats_row(15, "twin.eth0"),
        netstats_row(16, "gap.eth0"),
        netstats_row(17, "gap.eth2"),
    )
    vms = {(vm.entry.name, tuple(p.port_id for p in vm.ports)) for vm in vms_in_net_stats(rows)}
    # two VMs of one name, or vNICs with a gap: which port is whose needs esxcli, so no ports
    assert vms == {("db", (12, 11)), ("NSX Manager", (13,)), ("twin", ()), ("gap", ())}
    assert [vm.entry.name for vm in vms_in_net_stats(rows)].count("twin") == 2


def test_only_targets_located_without_esxcli_and_not_wide_may_be_planned_from_the_first_look() -> None:
    assert scope_for([TargetRequest("vm", "web02"), TargetRequest("switchport", "5")]).first_look
    assert not scope_for([TargetRequest("vm", "web*", many=True)]).first_look
    assert not scope_for([TargetRequest("vm", "app 03", nic="all")]).first_look
    assert not scope_for([TargetRequest("vmk", "vmk1")]).first_look
    assert not scope_for([TargetRequest("portgroup", "VM Network")]).first_look


def test_a_port_esxcli_gives_to_another_vm_is_said() -> None:
    first = first_look_facts(VERSION, (netstats_row(11, "db.eth1"),), None, ())
    target = Target(HOST, "vm", Selector("switchport", 11), "db eth1", "")
    port = VmPort(11, "vSwitch0", "VM Network", None, "00:50:56:00:00:0b", None, None, None, None)
    agreeing = HostFacts(VERSION, (VmFacts(VmEntry(7, "db", 1, ()), (port,)),), *((),) * 6, first.netstats)
    assert unconfirmed([target], agreeing) == []
    other = HostFacts(VERSION, (VmFacts(VmEntry(8, "db.eth1", 1, ()), (port,)),), *((),) * 6, first.netstats)
    [said] = unconfirmed([target], other)
    assert "captured as db eth1 (from net-stats -l), is db.eth1 eth0 according to esxcli" in said
