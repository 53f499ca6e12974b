"""A capture assisted by vCenter: where the VMs run (one query, then SSH to those hosts only), and, with
--enable-ssh, SSH on each of those hosts for the length of the capture (see `access`).

`Assist` keeps what it changed, so the summary and every capture file's metadata can say it, and undoes
it whatever ends the capture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from esxcap.inventory import HostConfig, Inventory
from esxcap.ssh.transport import Connection
from esxcap.vcenter.access import (
    HostServices,
    SshChange,
    close_ssh,
    drop_lease,
    open_ssh,
    take_lease,
    wait_for_port,
)
from esxcap.vcenter.estate import VcVm, locate

T = TypeVar("T")


@dataclass
class Assist:
    """vCenter's part in one capture."""

    services: HostServices
    enable_ssh: bool
    notify: Callable[[str], None]
    port_wait: float
    located: dict[str, list[str]] = field(default_factory=dict)
    changes: list[SshChange] = field(default_factory=list)
    _started: set[str] = field(default_factory=set)
    _leases: dict[str, tuple[HostConfig, Connection, str]] = field(default_factory=dict)

    def hosts_for(
        self, inventory: Inventory, vm_names: Sequence[str], vms: Sequence[VcVm]
    ) -> list[HostConfig]:
        """The hosts the named VMs run on (settings from the inventory where it lists them)."""
        for name in vm_names:
            self.located[name] = sorted({vm.host for vm in locate(name, vms) if vm.host})
        needed = sorted({host for hosts in self.located.values() for host in hosts})
        merged = inventory.with_vcenter_hosts([(name, None) for name in needed])
        for name, hosts in self.located.items():
            self.notify(f"vCenter: {name} runs on {', '.join(hosts)}")
        return [merged.hosts[name] for name in needed]

    async def open(self, hosts: Sequence[HostConfig]) -> None:
        """Start SSH where it is stopped (with --enable-ssh)."""
        if not self.enable_ssh:
            return

        async def one(host: HostConfig) -> None:
            change = await open_ssh(self.services, host)
            if change is not None:
                self._started.add(change.host)
                self._record(change)
                await wait_for_port(host, self.port_wait)

        await asyncio.gather(*(one(host) for host in hosts))

    def prepare(
        self, prepare: Callable[[HostConfig, Connection], Awaitable[T]]
    ) -> Callable[[HostConfig, Connection], Awaitable[T]]:
        """`prepare` plus a lease on the host while it is captured on (with --enable-ssh)."""

        async def with_lease(host: HostConfig, conn: Connection) -> T:
            value = await prepare(host, conn)
            if self.enable_ssh:
                token = await take_lease(conn, host, host.name in self._started)
                self._leases[host.name] = (host, conn, token)
            return value

        return with_lease

    async def release(self) -> None:
        """Drop the leases (before the connections close), then stop SSH where the last esxcap out is
        this one and an esxcap started it, or where this one started it and never got in."""
        to_stop = {name for name in self._started if name not in self._leases}
        self._started.clear()
        for name, (host, conn, token) in self._leases.items():
            try:
                if await drop_lease(conn, host, token):
                    to_stop.add(name)
            except Exception as exc:  # the host went away: its SSH is left as it is, and said so
                self.notify(f"vCenter: could not drop the SSH lease on {name}: {exc}; SSH left running")
        self._leases.clear()
        for change in await asyncio.gather(*(close_ssh(self.services, name) for name in sorted(to_stop))):
            self._record(change)

    def _record(self, change: SshChange) -> None:
        self.changes.append(change)
        state = "done" if change.done else f"FAILED: {change.error}"
        self.notify(f"vCenter: {change.action} on {change.host} ({state})")

    def as_dict(self) -> dict[str, object]:
        return {"located": self.located, "ssh_changes": [c.as_dict() for c in self.changes]}
