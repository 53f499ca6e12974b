"""Recipes through the real CLI with --dry-run --json against the simulator: which places, points,
directions and filters each recipe plans, the same-host variants, and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clirun import esxcap, isolated_env

from esxcap.sim import SimulatorThread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def dry_plan(running: SimulatorThread, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = esxcap("-i", str(running.sim.inventory_path), "recipe", *args, "--dry-run", "--json", env=env)
    assert result.code == 0, result.stderr
    return result.json()["streams"]


def test_recipe_plans(fast_sim, env) -> None:
    cross = dry_plan(fast_sim, env, "vm-to-vm", "m1", "n2")
    assert [(s["host"], s["target"], s["point"]) for s in cross] == [
        ("mid", "m1 eth0", "VnicTx"), ("mid", "m1 eth0", "VnicRx"),
        ("mid", "vmnic0", "UplinkSndKernel"), ("mid", "vmnic0", "UplinkRcvKernel"),
        ("new", "vmnic0", "UplinkRcvKernel"), ("new", "vmnic0", "UplinkSndKernel"),
        ("new", "n2 eth0", "VnicRx"), ("new", "n2 eth0", "VnicTx"),
    ]  # fmt: skip
    a_to_b = "--srcip 10.0.20.11 --dstip 10.0.120.22"
    assert a_to_b in cross[0]["remote_command"] and a_to_b in cross[6]["remote_command"]
    assert "--srcip 10.0.120.22 --dstip 10.0.20.11" in cross[1]["remote_command"]
    same_net = dry_plan(fast_sim, env, "vm-to-vm", "m1", "m2")
    assert {s["target"] for s in same_net} == {"m1 eth0", "m2 eth0"}
    routed = dry_plan(fast_sim, env, "vm-to-vm", "n1", "n2")
    assert {s["target"] for s in routed} == {"n1 eth0", "n2 eth0", "vmnic0"}
    vmk = dry_plan(fast_sim, env, "vmk", "mid", "vmk0")
    assert {(s["target"], s["direction"]) for s in vmk} == {
        (t, d) for t in ("vmk0", "vmnic0") for d in ("in", "out")
    }
    assert all("--ip 10.0.0.12" in s["remote_command"] for s in vmk)
    dvf = dry_plan(fast_sim, env, "dvfilter", "n2")
    assert [s["point"] for s in dvf] == ["PreDVFilter", "PostDVFilter", "Drop"]
    assert "-eth0-fw" in dvf[0]["remote_command"]
    up = dry_plan(fast_sim, env, "uplink", "new", "vmnic0", "--vlan", "20")
    assert [s["direction"] for s in up] == ["in", "out"] and all(
        "--vlan 20" in s["remote_command"] for s in up
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("vm-to-vm", "m1", "nobody"), "VM 'nobody' found on no host"),
        (("vmk", "mid", "vmk9"), "mid has no vmk9"),
        (("dvfilter", "m1"), "has no DVFilter"),
        (("vm-to-vm", "m1", "n2", "--nic-b", "3"), "has no vNIC 3"),
        (("vm-to-vm", "m1", "n2", "--split", "-o", "-"), "--split reads the finished file"),
    ],
)
def test_recipe_refusals(fast_sim, env, args: tuple[str, ...], said: str) -> None:
    dry = () if "-o" in args else ("--dry-run",)
    result = esxcap("-i", str(fast_sim.sim.inventory_path), "recipe", *args, *dry, env=env)
    assert result.code == 2 and said in result.stderr, result.stderr
