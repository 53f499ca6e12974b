"""The ESXi host simulator: real SSH servers on 127.0.0.1 that answer like ESXi hosts of several versions.

`Simulator` serves every host of a `Topology` (one port each) and writes a state dir with an inventory,
known_hosts and a client key, so `esxcap -i DIR/inventory.yaml discover` works against it.
`SimulatorThread` runs one on its own event loop (tests, CLI); `serve_forever` is what `esxcap sim` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from esxcap.sim import state
from esxcap.sim.loader import load_topology_file, topology_from_data
from esxcap.sim.server import HandshakeGauge, SimHost, start_hosts
from esxcap.sim.topology import Host, Topology
from esxcap.sim.traffic import TrafficModel

__all__ = [
    "Host",
    "SimHost",
    "Simulator",
    "SimulatorThread",
    "Topology",
    "load_topology",
    "serve_forever",
    "topology_from_data",
    "with_esxcli_latency",
]

T = TypeVar("T")
DEFAULT_TOPOLOGY = "default_topology.yaml"


def load_topology(path: Path | None = None) -> Topology:
    """Load a topology file; None = the packaged default (three hosts: 5.5, 6.7, 8.0)."""
    if path is not None:
        return load_topology_file(path)
    with resources.as_file(resources.files(__package__).joinpath(DEFAULT_TOPOLOGY)) as packaged:
        return load_topology_file(packaged)


class Simulator:
    """All hosts of a topology being served, and the state dir that describes them."""

    def __init__(
        self, topology: Topology, state_dir: Path, hosts: Mapping[str, SimHost], port_base: int
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.hosts = hosts
        self.port_base = port_base
        self.lock_fd: int | None = None
        self.traffic = next(iter(hosts.values())).traffic if hosts else TrafficModel(topology)
        self.inventory_path = state_dir / state.INVENTORY
        self.known_hosts_path = state_dir / state.KNOWN_HOSTS
        self.client_key_path = state_dir / state.CLIENT_KEY
        self.handshakes = HandshakeGauge()
        """SSH logins in progress over all hosts, and the most at once."""

    @classmethod
    async def start(cls, topology: Topology, state_dir: Path, port_base: int = 0) -> Simulator:
        """Generate (or reuse) keys, listen on one port per host, write inventory and known_hosts."""
        held = state.lock(state_dir)
        try:
            client = state.client_key(state_dir)
        except BaseException:
            os.close(held)
            raise
        traffic = TrafficModel(topology)
        hosts = {
            h.name: SimHost(
                h,
                state.host_keys(state_dir, h.name, h.legacy_ssh),
                client,
                traffic,
                state.host_certificates(state_dir, h.name),
            )
            for h in topology.hosts
        }
        sim = cls(topology, state_dir, hosts, port_base)
        sim.lock_fd = held
        for host in hosts.values():
            host.handshakes = sim.handshakes
        try:
            await start_hosts(list(hosts.values()), port_base)
        except BaseException:
            await sim.close()
            raise
        state.write_state(state_dir, [(h.name, h.port, h.host_keys) for h in hosts.values()])
        return sim

    async def stop_host(self, name: str) -> None:
        """Take one host down: it stops listening and its open connections drop."""
        await self.hosts[name].stop()

    async def reset_connections(self, name: str) -> None:
        """Reset every open connection to one host (TCP RST); the host stays up."""
        self.hosts[name].reset_connections()

    async def start_host(self, name: str) -> None:
        """Bring a stopped host back on the same port."""
        host = self.hosts[name]
        await host.start(host.port)

    async def close(self) -> None:
        await asyncio.gather(*(h.stop() for h in self.hosts.values()))
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


class SimulatorThread:
    """A Simulator on its own event loop in a daemon thread; a context manager that waits until listening."""

    def __init__(self, topology: Topology, state_dir: Path, port_base: int = 0) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.port_base = port_base
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="esxcap-sim", daemon=True)
        self._sim: Simulator | None = None

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            raise RuntimeError("the simulator is not running; use SimulatorThread as a context manager")
        return self._sim

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the simulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        try:
            self._sim = self.call(Simulator.start(self.topology, self.state_dir, self.port_base))
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._sim is not None:
                self.call(self._sim.close())
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def with_esxcli_latency(topology: Topology, latency_ms: int) -> Topology:
    """The topology with every host's esxcli calls taking `latency_ms` each."""
    hosts = tuple(dataclasses.replace(h, esxcli_latency_ms=latency_ms) for h in topology.hosts)
    return dataclasses.replace(topology, hosts=hosts)


async def serve_forever(
    topology_path: Path | None,
    port_base: int,
    state_dir: Path,
    ready: Callable[[Simulator], None],
    esxcli_latency_ms: int | None = None,
) -> None:
    """Serve until cancelled (Ctrl-C in `esxcap sim`); `ready` is called once every host listens.
    `esxcli_latency_ms` overrides every host's esxcli latency."""
    topology = load_topology(topology_path)
    if esxcli_latency_ms is not None:
        topology = with_esxcli_latency(topology, esxcli_latency_ms)
    sim = await Simulator.start(topology, state_dir, port_base)
    try:
        ready(sim)
        await asyncio.Event().wait()
    finally:
        await sim.close()
