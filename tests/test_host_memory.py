"""Memory taken from a host is bounded: a command's stdout up to MAX_COMMAND_OUTPUT (then a clear error),
stderr kept for messages as its first and last STDERR_KEPT bytes, against simulated hosts whose commands
print without end (the `flood` fault), through both transports and the CLI."""

from __future__ import annotations

import asyncio
import copy
import time
import tracemalloc
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import yaml
from clirun import esxcap, isolated_env

from esxcap.errors import CommandTimeout, RemoteCommandError
from esxcap.inventory import load_inventory
from esxcap.sim import SimulatorThread, topology_from_data
from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport
from esxcap.ssh.transport.common import MAX_COMMAND_OUTPUT, STDERR_KEPT, StderrKept
from esxcap.ssh.transport.paramiko_transport import ParamikoTransport

TRANSPORTS = {"asyncssh": AsyncsshTransport, "paramiko": ParamikoTransport}


@pytest.fixture(scope="module")
def flooding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    """esx03 prints without end on stdout, esx02 on stderr."""
    data: dict[str, Any] = copy.deepcopy(
        yaml.safe_load(resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text("utf-8"))
    )
    data["hosts"]["esx03"]["faults"] = {"flood": "stdout"}
    data["hosts"]["esx02"]["faults"] = {"flood": "stderr"}
    data["flows"] = []
    with SimulatorThread(topology_from_data(data, "<flood>"), tmp_path_factory.mktemp("flood")) as st:
        yield st


def test_stderr_kept_is_its_first_and_last_bytes() -> None:
    kept = StderrKept(kept=8)
    for chunk in (b"esxcap-pid 42\n", b"x" * 1000, b"tail: bye\n"):
        kept.add(chunk)
    assert kept.value() == b"esxcap-p\n[... 1008 bytes of error output left out ...]\nil: bye\n"
    small = StderrKept(kept=8)
    small.add(b"short\n")
    assert small.value() == b"short\n"


@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
def test_endless_command_output_stops_at_the_cap_with_a_clear_error(flooding, kind: str) -> None:
    host = load_inventory(flooding.sim.inventory_path).hosts["esx03"]

    async def go() -> None:
        conn = await TRANSPORTS[kind](ssh_config=[]).connect(host, password=lambda p: None, accept_new=False)
        try:
            await conn.run(["esxcli", "network", "nic", "list"], timeout=120)
        finally:
            await conn.close()

    tracemalloc.start()
    try:
        with pytest.raises(RemoteCommandError, match=f"printed more than {MAX_COMMAND_OUTPUT >> 20} MiB"):
            asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_COMMAND_OUTPUT


@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
def test_a_stderr_flood_costs_no_memory(flooding, kind: str) -> None:
    host = load_inventory(flooding.sim.inventory_path).hosts["esx02"]
    seen: dict[str, bytes] = {}

    async def go() -> None:
        conn = await TRANSPORTS[kind](ssh_config=[]).connect(host, password=lambda p: None, accept_new=False)
        try:
            process = await conn.start(["esxcli", "network", "nic", "list"])
            deadline = time.monotonic() + 60
            while _left_out(process.stderr()) < 64 << 20:
                assert time.monotonic() < deadline, "the flood never passed 64 MiB"
                await asyncio.sleep(0.05)
            seen["stream"] = process.stderr()
            process.abort()
            with pytest.raises(CommandTimeout):
                await conn.run(["esxcli", "network", "nic", "list"], timeout=2)
        finally:
            await conn.close()

    tracemalloc.start()
    try:
        asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(seen["stream"]) < 2 * STDERR_KEPT + 100 and seen["stream"].startswith(b"esxcli: this line")
    assert peak < 32 << 20


def _left_out(stderr: bytes) -> int:
    """How many bytes StderrKept's note says it left out (0 when none)."""
    _, note, rest = stderr.partition(b"\n[... ")
    return int(rest.split()[0]) if note else 0


def test_discover_of_a_host_printing_without_end_fails_clearly(flooding, tmp_path) -> None:
    result = esxcap(
        "-i", str(flooding.sim.inventory_path), "discover", "esx03", env=isolated_env(tmp_path), timeout=180
    )
    assert result.code != 0 and "printed more than 64 MiB; stopped reading it" in " ".join(
        result.stderr.split()
    )
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
