"""Opening SSH sessions to hosts and running one job per host with bounded concurrency.

Per-host failure is a result, not a crash: only esxcap's own HostError is caught per host, so one
unreachable host never cancels the others, and bugs stay loud.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from esxcap.errors import ConfigError, HostError, UsageError
from esxcap.inventory import HostConfig
from esxcap.ssh.transport import Connection, PasswordSource, Transport
from esxcap.ssh.transport.passwords import Passwords

T = TypeVar("T")

HANDSHAKES_AT_ONCE = 32
"""SSH handshakes (key exchange, host key check, login) in progress at once, whatever --parallel says.
Handshakes cost the client CPU; hundreds started together all advance in step, each finishing only when
almost all do, so with 500 hosts and --parallel 500 on a busy 2-core workstation the first half failed
with "no answer within 10 s" although every host answered at once. Taken a few dozen at a time, each
completes in a fraction of a second and the whole lot as fast (pdsh's default fan-out is 32 too)."""


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """One host's outcome: a value, or the error that stopped it."""

    host: HostConfig
    value: T | None = None
    error: HostError | None = None
    seconds: float = 0.0
    """From the start of connecting to the end of the host's job (or its failure)."""


@dataclass(frozen=True)
class SessionOptions:
    """How to reach hosts: transport, whether new host keys may be recorded, where passwords come from
    (one Passwords for the whole command, so that a host is asked, and refused, at most once)."""

    password: PasswordSource | Passwords
    accept_new: bool = False
    transport: str | None = None


def make_transport(name: str) -> Transport:
    """The transport named by --transport or the inventory."""
    if name == "asyncssh":
        from esxcap.ssh.transport.liboqs_lookup import liboqs_lookup_without_subprocess

        with liboqs_lookup_without_subprocess():
            from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport

        return AsyncsshTransport()
    if name == "paramiko":
        from esxcap.ssh.transport.paramiko_transport import ParamikoTransport

        return ParamikoTransport()
    raise UsageError(f"unknown transport '{name}'", "use --transport asyncssh or --transport paramiko")


async def run_on_hosts(
    hosts: Sequence[HostConfig],
    options: SessionOptions,
    job: Callable[[HostConfig, Connection], Awaitable[T]],
    parallel: int,
    handshakes: int = HANDSHAKES_AT_ONCE,
) -> list[HostResult[T]]:
    """Run job on every host (at most `parallel` at once, each connection closed after its job)."""

    async def job_then_close(host: HostConfig, conn: Connection) -> T:
        try:
            return await job(host, conn)
        finally:
            await conn.close()

    opened, failed = await open_hosts(hosts, options, job_then_close, parallel, handshakes)
    done = {o.host.name: HostResult(o.host, value=o.value, seconds=o.seconds) for o in opened}
    done.update((f.host.name, f) for f in failed)
    return [done[host.name] for host in hosts]


@dataclass(frozen=True)
class OpenHost(Generic[T]):
    """A host whose connection stays open after `prepare` ran on it (for work in several phases)."""

    host: HostConfig
    conn: Connection
    value: T
    seconds: float = 0.0
    """From the start of connecting to the end of `prepare`."""


async def open_hosts(
    hosts: Sequence[HostConfig],
    options: SessionOptions,
    prepare: Callable[[HostConfig, Connection], Awaitable[T]],
    parallel: int,
    handshakes: int = HANDSHAKES_AT_ONCE,
) -> tuple[list[OpenHost[T]], list[HostResult[T]]]:
    """Connect to every host and run `prepare` (at most `parallel` at once, of which at most `handshakes`
    are logging in), keeping connections open. A host's connect timeout starts with its handshake.

    Returns the open hosts and the failed ones; the caller closes the open ones with `close_hosts`.
    """
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}", "use --parallel 10")
    _check_identity_files(hosts)
    limit = asyncio.Semaphore(parallel)
    logging_in = asyncio.Semaphore(handshakes)
    passwords = Passwords.of(options.password)

    async def one(host: HostConfig) -> OpenHost[T] | HostResult[T]:
        async with limit:
            conn: Connection | None = None
            began = time.monotonic()
            try:
                transport = make_transport(options.transport or host.transport)
                async with logging_in:
                    conn = await transport.connect(host, password=passwords, accept_new=options.accept_new)
                value = await prepare(host, conn)
                return OpenHost(host, conn, value, time.monotonic() - began)
            except HostError as error:
                if conn is not None:
                    await conn.close()
                return HostResult(host, error=error, seconds=time.monotonic() - began)

    results = await asyncio.gather(*(one(host) for host in hosts))
    opened = [r for r in results if isinstance(r, OpenHost)]
    failed = [r for r in results if isinstance(r, HostResult)]
    return opened, failed


def _check_identity_files(hosts: Sequence[HostConfig]) -> None:
    """An identity_file that is not there is the inventory's mistake, named before any host is contacted
    (a key that is there but unusable stays that host's error)."""
    missing = next((h for h in hosts if h.identity_file and not h.identity_file.exists()), None)
    if missing is not None:
        raise ConfigError(
            f"{missing.name}: identity_file {missing.identity_file} does not exist",
            "fix the path in the inventory, or drop identity_file to use ssh-agent and ~/.ssh keys",
        )


async def close_hosts(opened: Sequence[OpenHost[Any]]) -> None:
    await asyncio.gather(*(o.conn.close() for o in opened), return_exceptions=True)
