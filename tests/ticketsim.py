"""A simulator for the ticket tests: the fast topology with a TCP flow that retransmits every second
connection's request, and helpers to capture from it through the real CLI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from clirun import esxcap
from conftest import FAST_TOPOLOGY

from esxcap.sim import SimulatorThread


def faulty_topology() -> dict[str, Any]:
    data = copy.deepcopy(FAST_TOPOLOGY)
    for flow in data["flows"]:
        if flow["name"] == "sql-m2-n1":
            flow["faults"] = {"retransmit_every": 2}
    return data


def capture_vm(sim: SimulatorThread, env: dict[str, str], vm: str, out: Path, count: int = 60) -> Path:
    """Capture `count` packets of a VM's vNIC into `out` (a file; its folder is made); returns it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--vm", vm, "-c", str(count), "-o", str(out), env=env
    )
    assert result.code == 0, result.stderr
    return out
