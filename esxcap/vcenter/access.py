"""SSH on a host only while esxcap captures there (`capture --enable-ssh`).

Before: lockdown mode is read (in normal or strict lockdown only exception users get in over SSH: a user
that is not one is refused here, and lockdown is never changed); a stopped `TSM-SSH` service is started
through vCenter, and esxcap waits until the port answers (a start reported done while sshd is still
down has been seen). While capturing, each esxcap holds a lease on the host (a file under
`/tmp/esxcap-ssh-users/`, on the host's RAM disk), and the esxcap that started SSH leaves a marker there.
After: the lease is dropped; the last esxcap out stops SSH only if an esxcap started it, so a second
capture never loses its SSH because the first finished, and a service an admin started stays on. The
startup policy is never touched. Every change is returned as an `SshChange` for the summary and the
capture's metadata.
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from esxcap.errors import HostError, UsageError
from esxcap.inventory import HostConfig
from esxcap.ssh.discovery import run_batch
from esxcap.ssh.transport import Connection

LEASE_DIR = "/tmp/esxcap-ssh-users"  # noqa: S108 - on the ESXi host: its RAM disk, gone at reboot
STARTED_MARKER = "started-by-esxcap"
PORT_WAIT_SECONDS = 60.0


class HostServices(Protocol):
    """What esxcap asks vCenter about a host's SSH service and lockdown mode (blocking calls)."""

    def ssh_running(self, host: str) -> bool: ...

    def start_ssh(self, host: str) -> None: ...

    def stop_ssh(self, host: str) -> None: ...

    def lockdown(self, host: str) -> tuple[str, tuple[str, ...]]: ...


@dataclass(frozen=True)
class SshChange:
    """One change esxcap made through vCenter: who, what, on which host, when, and whether it was done."""

    host: str
    action: str
    by: str
    at: float
    done: bool
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return {
            "host": self.host,
            "action": self.action,
            "by": self.by,
            "at": stamp,
            "done": self.done,
            "error": self.error,
        }


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def check_lockdown(services: HostServices, host: HostConfig) -> None:
    """Refuse a host in lockdown mode whose SSH user is not an exception user (never change lockdown)."""
    mode, exceptions = services.lockdown(host.name)
    if mode != "lockdownDisabled" and host.username not in exceptions:
        raise UsageError(
            f"{host.name} is in {mode.removeprefix('lockdown').lower()} lockdown mode: over SSH it lets in "
            f"only its exception users ({', '.join(exceptions) or 'none'}), not {host.username}",
            "capture as an exception user (username in the inventory), or ask the vSphere admins; "
            "esxcap never changes lockdown mode",
        )


async def open_ssh(services: HostServices, host: HostConfig) -> SshChange | None:
    """Start the host's SSH service when it is stopped (None when it was running already)."""
    await asyncio.to_thread(check_lockdown, services, host)
    if await asyncio.to_thread(services.ssh_running, host.name):
        return None
    try:
        await asyncio.to_thread(services.start_ssh, host.name)
    except Exception as exc:  # any vCenter fault: the capture on this host cannot start
        raise HostError(
            f"vCenter could not start SSH on {host.name}: {exc}",
            "the vCenter user needs the privilege Host.Config.NetService on the host",
        ) from exc
    return SshChange(host.name, "started SSH (TSM-SSH)", _operator(), time.time(), True)


async def wait_for_port(host: HostConfig, wait: float = PORT_WAIT_SECONDS) -> None:
    """Wait until the host's SSH port answers (vCenter may report SSH started while sshd is still down)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host.hostname, host.port), 2.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
            continue
        writer.close()
        return
    raise HostError(
        f"vCenter reported SSH started on {host.name}, but port {host.port} did not answer in {wait:.0f} s",
        "check the host's firewall (sshServer rule) and its SSH service in the Host Client",
    )


async def take_lease(conn: Connection, host: HostConfig, started: bool) -> str:
    """Hold a lease on the host while capturing; mark SSH as esxcap's when this esxcap started it."""
    token = f"lease-{secrets.token_hex(8)}"
    commands = [["mkdir", "-p", LEASE_DIR], ["touch", f"{LEASE_DIR}/{token}"]]
    if started:
        commands.append(["touch", f"{LEASE_DIR}/{STARTED_MARKER}"])
    await run_batch(conn, host, commands)
    return token


async def drop_lease(conn: Connection, host: HostConfig, token: str) -> bool:
    """Drop the lease; True when it was the last one and an esxcap had started SSH (then stop it)."""
    _removed, listing = await run_batch(conn, host, [["rm", "-f", f"{LEASE_DIR}/{token}"], ["ls", LEASE_DIR]])
    left = set((listing or "").split())
    if left != {STARTED_MARKER}:
        return False
    await run_batch(conn, host, [["rm", "-f", f"{LEASE_DIR}/{STARTED_MARKER}"]])
    return True


async def close_ssh(services: HostServices, host: str) -> SshChange:
    """Stop the host's SSH service (esxcap started it and nobody else is capturing there)."""
    try:
        await asyncio.to_thread(services.stop_ssh, host)
    except Exception as exc:  # reported, never raised: the capture itself is done
        return SshChange(host, "stop SSH (TSM-SSH)", _operator(), time.time(), False, str(exc))
    return SshChange(host, "stopped SSH (TSM-SSH)", _operator(), time.time(), True)
