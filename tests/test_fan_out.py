"""Connecting to many hosts at once: however high --parallel, only a few dozen SSH logins are in progress
together (hundreds advancing in step each took as long as all of them, and timed out under load); the
simulator's gauge counts the logins in progress over all its hosts."""

from __future__ import annotations

import asyncio
import copy

from conftest import FAST_TOPOLOGY, MakeSim

from esxcap.inventory import HostConfig, load_inventory
from esxcap.sim import SimulatorThread
from esxcap.ssh.session import HANDSHAKES_AT_ONCE, SessionOptions, run_on_hosts
from esxcap.ssh.transport import Connection

HOSTS = 8


def copies(count: int) -> dict[str, object]:
    data = copy.deepcopy(FAST_TOPOLOGY)
    template = data["hosts"]["new"]
    return {"hosts": {f"h{i}": copy.deepcopy(template) for i in range(count)}, "flows": []}


def hostnames(st: SimulatorThread, parallel: int, handshakes: int) -> list[str]:
    """Every host's `hostname`, all of them at once (`parallel`), at most `handshakes` logging in."""

    async def hostname(_host: HostConfig, conn: Connection) -> str:
        return (await conn.run(["hostname"], timeout=30)).stdout.decode().strip()

    hosts = list(load_inventory(st.sim.inventory_path).hosts.values())
    options = SessionOptions(password=None)
    results = asyncio.run(run_on_hosts(hosts, options, hostname, parallel, handshakes))
    assert [r.error for r in results] == [None] * len(hosts)
    return [str(r.value) for r in results]


def test_logins_in_progress_stay_within_the_handshake_limit(make_sim: MakeSim) -> None:
    st = make_sim(copies(HOSTS))
    assert hostnames(st, parallel=HOSTS, handshakes=HOSTS) == [f"h{i}" for i in range(HOSTS)]
    assert st.sim.handshakes.most > 2, "unpaced, the logins overlap (the gauge sees them)"
    st.sim.handshakes.most = 0
    assert hostnames(st, parallel=HOSTS, handshakes=2) == [f"h{i}" for i in range(HOSTS)]
    assert st.sim.handshakes.most == 2 and st.sim.handshakes.now == 0
    assert 2 < HANDSHAKES_AT_ONCE <= 64
