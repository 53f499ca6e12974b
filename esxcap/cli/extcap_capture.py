"""The extcap's two calls that reach the hosts: the dialog's reload (a live discovery of one host, saved to
the discovery cache) and the capture: the dialog's fields become the option groups `capture` (or, for a
recipe interface, `recipe`) is built from, and the same `CaptureRequest` runs through the same flow with
Wireshark's FIFO as the output. Hosts are reached as on the command line: keys, agent or the inventory's
`password_env`; nobody is there to type a password or to accept a new host key."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from esxcap.capture.destinations import OutputChoice
from esxcap.capture.first_look import prepare_host
from esxcap.cli.common import Connect
from esxcap.cli.extcap_dialog import FLOW_FILTERS, Interface
from esxcap.cli.options import Delivery, Filters, Points, StopWhen, capture_options
from esxcap.cli.run import CaptureRequest, Planner, run_request
from esxcap.errors import UsageError
from esxcap.inventory import HostConfig, SavedRecipe
from esxcap.plan import recipes
from esxcap.plan.choices import request_for
from esxcap.plan.planner import CaptureOptions, HostView, Stream, resolve, streams
from esxcap.ssh.discovery_cache import CachedHost, remember
from esxcap.ssh.session import close_hosts, open_hosts

FILTER_FIELDS = tuple(call.replace("-", "_") for call, _label in FLOW_FILTERS)
"""The dialog's flow filter fields as the `Filters` group (and argparse) name them."""


@dataclass(frozen=True)
class IntoFifo(Delivery):
    """`-o FIFO`, with the dialog's "also save to" file."""

    copy: Path | None = None

    def choice(self, stdout_is_tty: bool) -> OutputChoice | None:
        chosen = super().choice(stdout_is_tty)
        return replace(chosen, copy=self.copy) if chosen is not None else None


def rediscover(host: HostConfig, folder: Path) -> CachedHost:
    """Discover `host` now (the dialog's reload) and keep the result."""

    async def job() -> CachedHost:
        opened, failed = await open_hosts([host], Connect().session(), prepare_host, 1)
        await close_hosts(opened)
        if failed and failed[0].error is not None:
            raise failed[0].error
        return remember(folder, [(o.host.name, o.value.facts) for o in opened])[host.name]

    return asyncio.run(job())


def _number(args: argparse.Namespace, name: str, whole: bool) -> float | None:
    """A numeric field as typed in the dialog (empty: not set); the ranges are StopWhen's."""
    text = str(getattr(args, name.replace("-", "_"))).strip()
    if not text:
        return None
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise UsageError(f"{name} {text!r} is not a number", f"fix {name} in the interface's options")
    return value


def stop_when(args: argparse.Namespace) -> StopWhen:
    count, duration = _number(args, "count", True), _number(args, "duration", False)
    max_bytes, snaplen = _number(args, "max-bytes", True), _number(args, "snaplen", True)
    return StopWhen(
        count=None if count is None else int(count),
        duration=duration,
        max_bytes_text=None if max_bytes is None else str(int(max_bytes)),
        snaplen=int(snaplen or 0),
    )


def _request(
    hosts: list[str] | None, host_bound: bool, delivery: Delivery, stop: StopWhen, options: CaptureOptions
) -> CaptureRequest:
    """The request `capture` would build: reached as on the command line, never accepting a new key."""
    return CaptureRequest(
        hosts=hosts,
        group=None,
        parallel=10,
        host_bound=host_bound,
        connect=Connect(),
        delivery=delivery,
        stop=stop,
        options=options,
    )


def _host_request(
    host: HostConfig, args: argparse.Namespace, delivery: Delivery
) -> tuple[CaptureRequest, Planner]:
    if not args.target:
        raise UsageError(
            f"no target chosen on {host.name}",
            "open the interface's options and pick a target (reload lists the host's targets)",
        )
    targets = [request_for(args.target)]
    ticked = [point for given in args.point for point in given.split(",") if point]
    points = Points(direction=args.dir or "both", point=ticked or None)
    # Wireshark's capture filter is a pcap expression: pktcap-uw's --rcf takes it on ESXi 7.0+
    expression = args.extcap_capture_filter.strip() or None
    filters = Filters(**{name: getattr(args, name) or None for name in FILTER_FIELDS}, expression=expression)
    stop = stop_when(args)
    request = _request([host.name], True, delivery, stop, capture_options(stop, points, filters))

    def plan(views: list[HostView]) -> tuple[list[Stream], str | None]:
        resolved = resolve(targets, views, True)
        return streams(resolved.targets, request.options, {v.name: v.caps for v in views}), None

    return request, plan


def _recipe(recipe: SavedRecipe, views: list[HostView]) -> recipes.Recipe:
    args = recipe.arguments
    if recipe.kind == "vm-to-vm":
        return recipes.vm_to_vm(views, args[0], args[1])
    if recipe.kind == "vmk":
        return recipes.vmk(views, args[0], args[1])
    if recipe.kind == "dvfilter":
        return recipes.dvfilter(views, args[0])
    return recipes.uplink(views, args[0], args[1])


def _recipe_request(
    recipe: SavedRecipe, args: argparse.Namespace, delivery: Delivery
) -> tuple[CaptureRequest, Planner]:
    on_one_host = recipe.kind in ("vmk", "uplink")
    stop = stop_when(args)
    hosts = [recipe.arguments[0]] if on_one_host else None
    request = _request(hosts, on_one_host, delivery, stop, capture_options(stop))

    def plan(views: list[HostView]) -> tuple[list[Stream], str | None]:
        return recipes.plan(_recipe(recipe, views), views, request.options), recipe.name

    return request, plan


def capture_into(fifo: Path, interface: Interface, args: argparse.Namespace, folder: Path) -> int:
    """Run the capture the dialog describes into `fifo`; returns the exit code."""
    if args.extcap_capture_filter.strip() and interface.host is None:
        raise UsageError(
            "a recipe interface takes no capture filter (each recipe filters its own streams)",
            "clear the capture filter, or capture one host's target with it",
        )
    also = args.also_save.strip()
    delivery = IntoFifo(out=str(fifo), copy=Path(also).expanduser() if also else None)
    if interface.host is not None:
        request, plan = _host_request(interface.host, args, delivery)
    else:
        assert interface.recipe is not None
        request, plan = _recipe_request(interface.recipe, args, delivery)

    def plan_and_remember(views: list[HostView]) -> tuple[list[Stream], str | None]:
        remember(folder, [(v.name, v.facts) for v in views])
        return plan(views)

    _quiet_stdout()
    return asyncio.run(run_request(request, plan_and_remember))


def _quiet_stdout() -> None:
    """Wireshark reads the FIFO, not stdout: the capture's summary table goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
