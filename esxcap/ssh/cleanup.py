"""Stopping leftover captures on a host: esxcap's own orphans (found by their pidfiles, nothing watching
them any more) always; captures another esxcap is running right now, and foreign ones, only when asked.
Processes are stopped by PID with SIGINT first (pktcap-uw then closes its output), KILL later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from esxcap.esxi.lifecycle import GRACE_SECONDS, LISTING_SCRIPT, Listing, parse_listing, pidfile_path
from esxcap.inventory import HostConfig
from esxcap.ssh.transport import Connection

POLL_SECONDS = 0.5


async def _listing(conn: Connection, host: HostConfig) -> Listing:
    result = await conn.run(["sh", "-c", LISTING_SCRIPT], timeout=host.command_timeout)
    return parse_listing(result.stdout.decode("utf-8", "replace"))


async def _stop(conn: Connection, host: HostConfig, pids: set[int]) -> set[int]:
    """SIGINT, wait up to the grace period, then KILL; returns the PIDs still running."""
    await conn.run(["kill", "-INT", *map(str, sorted(pids))], timeout=host.command_timeout)
    remaining = pids
    for _ in range(int(GRACE_SECONDS / POLL_SECONDS)):
        await asyncio.sleep(POLL_SECONDS)
        remaining = pids & {c.pid for c in (await _listing(conn, host)).captures}
        if not remaining:
            return remaining
    await conn.run(["kill", "-KILL", *map(str, sorted(remaining))], timeout=host.command_timeout)
    await asyncio.sleep(POLL_SECONDS)
    return pids & {c.pid for c in (await _listing(conn, host)).captures}


async def clean_host(
    host: HostConfig, conn: Connection, everything: bool, dry_run: bool
) -> list[dict[str, Any]]:
    """One row per pktcap-uw process on the host, saying what was done to it."""
    listing = await _listing(conn, host)
    chosen = {c.pid for c in (listing.captures if everything else listing.orphans)}
    still = await _stop(conn, host, chosen) if chosen and not dry_run else set()
    if not dry_run:
        stale = listing.stale_markers + [
            c.marker for c in listing.captures if c.marker and c.pid in chosen and c.pid not in still
        ]
        if stale:
            await conn.run(["rm", "-f", *map(pidfile_path, stale)], timeout=host.command_timeout)
    rows = []
    for c in listing.captures:
        if c.pid not in chosen:
            action = (
                "in use (another esxcap is capturing; --all stops it)"
                if c.in_use
                else "left alone (not esxcap's; --all stops it)"
            )
        elif dry_run:
            action = "would stop"
        else:
            action = "failed to stop" if c.pid in still else "stopped"
        rows.append(
            {
                "host": host.name,
                "pid": c.pid,
                "ours": c.marker is not None,
                "marker": c.marker,
                "in_use": c.in_use,
                "action": action,
                "command": c.command,
            }
        )
    return rows
