"""Discovering hosts for a capture, first look first (`esxcap.plan.scope`): planning gets what one exec of
fast commands shows while the scoped esxcli discovery goes on; once the capture runs, that discovery
completes and the static sections it left out are asked too, so that the sidecars record the whole host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

from esxcap.errors import HostError
from esxcap.esxi.models import HostFacts
from esxcap.inventory import HostConfig
from esxcap.plan.planner import HostView, Target
from esxcap.plan.scope import DiscoveryScope, unconfirmed
from esxcap.ssh.discovery import discover, fill_sections
from esxcap.ssh.session import OpenHost
from esxcap.ssh.transport import Connection

Recording = dict[str, "asyncio.Task[HostFacts]"]
"""Host -> its facts for the sidecar, still coming."""


async def prepare_host(host: HostConfig, conn: Connection, scope: DiscoveryScope | None = None) -> HostView:
    """Discover a host for planning: what `scope` needs (a capture's targets), else everything (recipes).
    A scope that allows the first look gets it back as soon as it is in, the complete facts coming
    (`HostView.complete`)."""
    if scope is None or not scope.first_look:
        return host_view(host.name, await discover(conn, host, capture_points=True, scope=scope))
    seen: asyncio.Future[HostFacts] = asyncio.get_running_loop().create_future()
    complete = asyncio.create_task(
        discover(conn, host, capture_points=True, scope=scope, first_look=seen.set_result)
    )
    await asyncio.wait([seen, complete], return_when=asyncio.FIRST_COMPLETED)
    if not seen.done():
        return host_view(host.name, await complete)
    return replace(host_view(host.name, seen.result()), complete=complete)


def host_view(name: str, facts: HostFacts) -> HostView:
    """A host's facts with the capture capabilities they show (its `-A` listing, else its version's)."""
    from esxcap.esxi.capabilities import Capabilities

    caps = Capabilities.for_version(facts.version.version_tuple)
    if facts.capture_points:
        caps = caps.with_points(facts.capture_points)
    return HostView(name, facts, caps)


async def completed(view: HostView) -> HostView:
    """The host's view from its complete facts (raises what discovering them raised)."""
    if view.complete is None:
        return view
    return host_view(view.name, await view.complete)


def start_recording(opened: Sequence[OpenHost[HostView]]) -> Recording:
    """For every host planned from its first look: its complete facts, then the static sections they
    lack, asked while the capture runs (on the discovery's channels, after it: under sshd's MaxSessions)."""

    async def whole(o: OpenHost[HostView]) -> HostFacts:
        assert o.value.complete is not None
        return await fill_sections(o.conn, o.host, await o.value.complete)

    return {o.host.name: asyncio.create_task(whole(o)) for o in opened if o.value.complete is not None}


async def recorded_facts(
    recording: Recording,
    first: dict[str, HostView],
    targets: Sequence[Target],
    interrupted: bool,
    warn: Callable[[str], None],
) -> dict[str, HostFacts]:
    """The facts the sidecars record, with what they say against the first look (as warnings, also kept
    in the facts); after an interruption, or where they cannot be had, the first look stays (said)."""
    found: dict[str, HostFacts] = {}
    for name, task in recording.items():
        if interrupted:
            task.cancel()
            warn(f"{name}: the capture records only what net-stats -l showed (interrupted)")
            continue
        try:
            facts = await task
        except HostError as exc:
            warn(f"{exc.message}; the capture records only what net-stats -l showed")
            continue
        shown = set(first[name].facts.warnings)
        said = unconfirmed([t for t in targets if t.host == name], facts)
        for warning in [*(w for w in facts.warnings if w not in shown), *said]:
            warn(warning)
        found[name] = replace(facts, warnings=(*facts.warnings, *said))
    return found
