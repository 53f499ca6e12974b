"""Opening SSH sessions to hosts and running one job per host with bounded concurrency.

Per-host failure is a result, not a crash: only esxcap's own HostError is caught per host, so one
unreachable host never cancels the others, and bugs stay loud.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from esxcap.errors import HostError, UsageError
from esxcap.inventory import HostConfig
from esxcap.transport import Connection, PasswordSource, Transport

T = TypeVar("T")


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """One host's outcome: a value, or the error that stopped it."""

    host: HostConfig
    value: T | None = None
    error: HostError | None = None


@dataclass(frozen=True)
class SessionOptions:
    """How to reach hosts: transport, whether new host keys may be recorded, where passwords come from."""

    password: PasswordSource
    accept_new: bool = False
    transport: str | None = None


def make_transport(name: str) -> Transport:
    """The transport named by --transport or the inventory."""
    if name == "asyncssh":
        from esxcap.transport.asyncssh_transport import AsyncsshTransport

        return AsyncsshTransport()
    raise UsageError(f"unknown transport '{name}'", "use --transport asyncssh")


async def with_connection(
    host: HostConfig, options: SessionOptions, job: Callable[[Connection], Awaitable[T]]
) -> T:
    """Connect to one host, run job on the connection, always close it."""
    transport = make_transport(options.transport or host.transport)
    conn = await transport.connect(host, password=options.password, accept_new=options.accept_new)
    try:
        return await job(conn)
    finally:
        await conn.close()


async def run_on_hosts(
    hosts: Sequence[HostConfig],
    options: SessionOptions,
    job: Callable[[HostConfig, Connection], Awaitable[T]],
    parallel: int,
) -> list[HostResult[T]]:
    """Run job on every host (at most `parallel` at once); results in the hosts' order."""
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}", "use --parallel 10")
    limit = asyncio.Semaphore(parallel)

    async def one(host: HostConfig) -> HostResult[T]:
        async with limit:
            try:
                value = await with_connection(host, options, lambda conn: job(host, conn))
            except HostError as error:
                return HostResult(host, error=error)
            return HostResult(host, value=value)

    return list(await asyncio.gather(*(one(host) for host in hosts)))
