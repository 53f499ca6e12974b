"""The extcap's two calls that reach the hosts: the dialog's reload (a live discovery of one host, saved to
the discovery cache) and the capture (the `capture` or `recipe` pipeline writing pcapng into Wireshark's
FIFO). Hosts are reached as on the command line: keys, agent or the inventory's `password_env`; nobody is
there to type a password or to accept a new host key."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from esxcap.capture.destinations import OutputChoice
from esxcap.capture.job import MultiOptions, capture_streams, prepare_host
from esxcap.cli import output
from esxcap.cli.extcap import stop_conditions
from esxcap.cli.extcap_dialog import DIRECTIONS, FLOW_FILTERS, Interface
from esxcap.cli.main import EXIT_ALL_FAILED
from esxcap.errors import UsageError
from esxcap.esxi.pktcap import Direction, FlowFilter
from esxcap.inventory import HostConfig, Inventory, SavedRecipe
from esxcap.plan import recipes
from esxcap.plan.choices import request_for
from esxcap.plan.planner import CaptureOptions, HostView, Stream, resolve, streams
from esxcap.ssh.discovery_cache import CachedHost, remember
from esxcap.ssh.session import HostResult, SessionOptions, close_hosts, open_hosts

NO_PROMPT = SessionOptions(password=lambda _prompt: None)


def _first_error(failed: list[HostResult[HostView]]) -> int:
    for result in failed:
        if result.error is not None:
            output.error(f"{result.host.name}: {result.error.message}", result.error.hint)
    return EXIT_ALL_FAILED


def rediscover(host: HostConfig, folder: Path) -> CachedHost:
    """Discover `host` now (the dialog's reload) and keep the result."""

    async def job() -> CachedHost:
        opened, failed = await open_hosts([host], NO_PROMPT, prepare_host, 1)
        await close_hosts(opened)
        if failed and failed[0].error is not None:
            raise failed[0].error
        return remember(folder, [(o.host.name, o.value.facts) for o in opened])[host.name]

    return asyncio.run(job())


def capture_options(args: argparse.Namespace, snaplen: int, count: int | None) -> CaptureOptions:
    """The dialog's target options as `capture` takes them."""
    direction: Direction = "both"
    for value, _label in DIRECTIONS:
        if args.dir == value:
            direction = value
    if args.dir and args.dir != direction:
        raise UsageError(f"direction {args.dir!r} is not in, out or both", "pick a direction in the dialog")
    points = tuple(p for given in args.point for p in given.split(",") if p)
    filters = {
        call.replace("-", "_"): getattr(args, call.replace("-", "_")) or None for call, _ in FLOW_FILTERS
    }
    filters["mac"] = filters.pop("any_mac")
    return CaptureOptions(
        direction=direction,
        points=points,
        count=count,
        snaplen=snaplen,
        filters=FlowFilter(**filters),
    )


def _recipe_hosts(inventory: Inventory, recipe: SavedRecipe) -> list[HostConfig]:
    if recipe.kind in ("vmk", "uplink"):
        return inventory.select([recipe.arguments[0]])
    return list(inventory.hosts.values())


def _recipe(recipe: SavedRecipe, views: list[HostView]) -> recipes.Recipe:
    args = recipe.arguments
    if recipe.kind == "vm-to-vm":
        return recipes.vm_to_vm(views, args[0], args[1], None, None)
    if recipe.kind == "vmk":
        return recipes.vmk(views, args[0], args[1])
    if recipe.kind == "dvfilter":
        return recipes.dvfilter(views, args[0])
    return recipes.uplink(views, args[0], args[1])


def capture_into(
    fifo: Path, interface: Interface, inventory: Inventory, args: argparse.Namespace, folder: Path
) -> int:
    """Run the capture the dialog describes into `fifo`; returns the exit code."""
    if args.extcap_capture_filter.strip():
        raise UsageError(
            "esxcap does not take Wireshark capture filters",
            "clear the capture filter; use the flow filters in the interface's options",
        )
    count, duration, max_bytes, snaplen = stop_conditions(args)
    if interface.host is not None:
        if not args.target:
            raise UsageError(
                f"no target chosen on {interface.host.name}",
                "open the interface's options and pick a target (reload lists the host's targets)",
            )
        hosts, options = [interface.host], capture_options(args, snaplen, count)
        requests = [request_for(args.target)]
    else:
        assert interface.recipe is not None
        hosts, options = (
            _recipe_hosts(inventory, interface.recipe),
            CaptureOptions(count=count, snaplen=snaplen),
        )

    def plan(views: list[HostView]) -> list[Stream]:
        if interface.host is not None:
            return streams(resolve(requests, views, True), options, {v.name: v.caps for v in views})
        assert interface.recipe is not None
        return recipes.plan(_recipe(interface.recipe, views), views, options)

    async def job() -> int:
        opened, failed = await open_hosts(hosts, NO_PROMPT, prepare_host, 10)
        try:
            if not opened:
                return _first_error(failed)
            remember(folder, [(o.host.name, o.value.facts) for o in opened])
            planned = plan([o.value for o in opened])
            return await capture_streams(
                opened, failed, planned, OutputChoice(device=fifo), duration, max_bytes,
                False, False, False, False, options, MultiOptions(),
            )  # fmt: skip
        finally:
            await close_hosts(opened)

    _quiet_stdout()
    return asyncio.run(job())


def _quiet_stdout() -> None:
    """Wireshark reads the FIFO, not stdout: the capture's summary table goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
