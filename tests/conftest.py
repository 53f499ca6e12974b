"""Shared fixtures: the verbatim ESXi samples and running simulators.

`sim` is a started `SimulatorThread` on the packaged default topology (hosts esx01 5.5, esx02 6.7,
esx03 8.0) in a fresh state dir; `make_sim(data)` starts one from a topology dict shaped like the YAML
(see esxcap/sim/default_topology.yaml). Both stop at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esxcap.sim import SimulatorThread, load_topology, topology_from_data

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "esxi" / "fixtures"

MakeSim = Callable[..., SimulatorThread]


def fixture_text(name: str) -> str:
    """A verbatim sample from shared/esxi/fixtures, bytes kept as they are."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorThread]:
    with SimulatorThread(load_topology(), tmp_path / "sim") as running:
        yield running


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[MakeSim]:
    started: list[SimulatorThread] = []

    def make(data: dict[str, Any], port_base: int = 0) -> SimulatorThread:
        thread = SimulatorThread(
            topology_from_data(data, "<test topology>"), tmp_path / f"sim{len(started)}", port_base
        )
        thread.__enter__()
        started.append(thread)
        return thread

    yield make
    for thread in reversed(started):
        thread.__exit__(None, None, None)
