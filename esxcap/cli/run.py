"""The one flow of `capture` and every recipe: open the hosts, plan, show the plan (--dry-run) or run it,
then the summary, the path view, the viewer and the ticket bundle, and the exit code.

A command builds a `CaptureRequest` from its option groups at the top and hands it here with the
function that turns the opened hosts into streams; nothing else differs between them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from esxcap.capture.destinations import OutputChoice
from esxcap.capture.first_look import completed, prepare_host
from esxcap.capture.job import CaptureOutcome, RunSettings, run_capture
from esxcap.capture.metadata import add_to_sidecars
from esxcap.capture.sinks import DiskFull
from esxcap.cli import output
from esxcap.cli.common import Connect, load_inventory_or_empty, prompt_password, select_hosts
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.cli.options import Delivery, HostChoice, StopWhen
from esxcap.errors import HostError, UsageError
from esxcap.inventory import HostConfig
from esxcap.plan.planner import CaptureOptions, HostView, Stream
from esxcap.plan.scope import DiscoveryScope
from esxcap.plan.sizes import human_size
from esxcap.ssh.session import HostResult, OpenHost, close_hosts, open_hosts
from esxcap.ssh.transport import Connection

if TYPE_CHECKING:
    from esxcap.vcenter.assist import Assist

Planner = Callable[[list[HostView]], tuple[list[Stream], str | None]]
"""Opened hosts -> the streams to run and the name of the merged file (None: named after the streams)."""


@dataclass(frozen=True)
class CaptureRequest:
    """Everything a capture command was asked, from its option groups.

    `hosts`/`group` select the inventory hosts; `host_bound` says whether targets are put on those
    hosts (a host that cannot be reached then fails the capture) or searched for on them (then an
    unreachable host is a warning when every target was found elsewhere)."""

    hosts: Sequence[str] | None
    group: str | None
    parallel: int
    host_bound: bool
    connect: Connect
    delivery: Delivery
    stop: StopWhen
    options: CaptureOptions
    vm_names: tuple[str, ...] = ()
    """The VMs asked for by name: with a vCenter in the inventory, it says where they run."""
    enable_ssh: bool = False
    scope: DiscoveryScope | None = None
    """What discovery the targets need on each host; None: everything (recipes read all of it)."""

    @classmethod
    def of(
        cls,
        hosts: HostChoice,
        connect: Connect,
        delivery: Delivery,
        stop: StopWhen,
        options: CaptureOptions,
        *,
        host_bound: bool,
        vm_names: tuple[str, ...] = (),
        scope: DiscoveryScope | None = None,
    ) -> CaptureRequest:
        """The request a command's option groups make."""
        return cls(
            hosts.host,
            hosts.group,
            hosts.parallel,
            host_bound,
            connect,
            delivery,
            stop,
            options,
            vm_names,
            hosts.enable_ssh,
            scope,
        )


def _failures(failed: Sequence[HostResult[HostView]], request: CaptureRequest) -> int:
    """How many unreachable hosts count against the exit code (see `CaptureRequest`)."""
    if request.host_bound:
        return len(failed)
    for f in failed:
        if f.error is not None:
            output.warning(f"{f.host.name} could not be searched: {f.error.message}")
    return 0


async def run_request(request: CaptureRequest, plan: Planner) -> int:
    """Open, plan, dry-run or capture, report; returns the exit code."""
    choice = request.delivery.choice(sys.stdout.isatty())
    if request.stop.trigger is not None and choice is not None and not choice.paths:
        raise UsageError(
            "--trigger writes one file per event; a stream output (-o -, --live, a FIFO) keeps none",
            "write them to a folder with -o FOLDER (or leave -o out: ./captures)",
        )
    if request.stop.trigger is not None and choice is not None and choice.ring and choice.split:
        raise UsageError(
            "--trigger taps the merged ring; --ring --split keeps one ring per stream and no merged one",
            "drop --split (or --ring)",
        )
    inventory = load_inventory_or_empty()
    if not (inventory.vcenter and request.vm_names and not (request.hosts or request.group)):
        if request.enable_ssh:
            raise UsageError(
                "--enable-ssh starts SSH through vCenter, for VMs that vCenter locates",
                "add a vcenter block to the inventory (README: vCenter) and name VMs with --vm, no --host",
            )
        return await _run_on(select_hosts(request.hosts, request.group), request, plan, choice, None)
    from esxcap.vcenter.assist import Assist
    from esxcap.vcenter.client import Vcenter

    vcenter = await asyncio.to_thread(
        Vcenter.connect, inventory.vcenter, prompt_password, request.connect.accept_new
    )
    try:
        vms = await asyncio.to_thread(vcenter.vms)
        assist = Assist(vcenter, request.enable_ssh, output.info, inventory.vcenter.ssh_start_timeout)
        hosts = assist.hosts_for(inventory, request.vm_names, vms)
        output.info(f"vCenter: SSH to {len(hosts)} host(s) of the estate: {', '.join(h.name for h in hosts)}")
        try:
            await assist.open(hosts)
            # the located hosts are where the targets are: one that fails fails the capture
            return await _run_on(hosts, replace(request, host_bound=True), plan, choice, assist)
        finally:
            await assist.release()
    finally:
        await asyncio.to_thread(vcenter.close)


async def _run_on(
    hosts: list[HostConfig],
    request: CaptureRequest,
    plan: Planner,
    choice: OutputChoice | None,
    assist: Assist | None,
) -> int:
    def discover(host: HostConfig, conn: Connection) -> Awaitable[HostView]:
        return prepare_host(host, conn, request.scope)

    prepare = assist.prepare(discover) if assist else discover
    opened, failed = await open_hosts(hosts, request.connect.session(), prepare, request.parallel)
    if assist is not None and not request.enable_ssh:
        failed = [_suggest_enable_ssh(f) for f in failed]
    try:
        if not opened:
            output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
            return ExitCode.ALL_FAILED
        try:
            planned, name, opened, failed = await _plan(plan, opened, failed, at_once=choice is not None)
        except UsageError as error:
            if not failed:
                raise
            unsearched = ", ".join(f.host.name for f in failed)
            hint = "; ".join(filter(None, (error.hint, f"not searched (unreachable): {unsearched}")))
            raise UsageError(error.message, hint) from None
        if not opened:
            output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
            return ExitCode.ALL_FAILED
        used = [o for o in opened if any(s.target.host == o.host.name for s in planned)]
        counted = _failures(failed, request)
        if choice is None:
            output.dry_run(planned, [(o.value.name, o.value.facts) for o in used], request.delivery.json_out)
            if request.host_bound:
                output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
            return outcome_code(counted, len(used) + counted)
        settings = RunSettings(
            choice=choice,
            options=request.options,
            duration=request.stop.duration,
            max_bytes=request.stop.max_bytes,
            console=request.delivery.console,
            hexdump=request.delivery.hexdump,
            split=request.delivery.split,
            align_clocks=request.delivery.align_clocks,
            name=name,
            trigger=request.stop.trigger_plan(),
        )
        shown_failed = failed if request.host_bound or assist else []
        # console lines keep off stdout when it carries the capture or the JSON document
        reporter = output.CaptureReporter(packets_to_stderr=choice.stdout or request.delivery.json_out)
        outcome = await run_capture(used, shown_failed, planned, settings, reporter)
        extra: dict[str, object] = {}
        if assist is not None:
            await assist.release()
            extra["vcenter"] = assist.as_dict()
            add_to_sidecars(outcome.made, "vcenter", extra["vcenter"], output.warning)
        return await _after(outcome, request.delivery, choice.stdout, extra, request.stop.max_bytes)
    finally:
        await _forget_first_looks(opened)
        await close_hosts(opened)


FIRST_LOOK_STREAMS = 4
"""Streams a host may run while its discovery goes on (at most CHANNELS execs): with the clock check and
a stop command, under sshd's MaxSessions of 10."""


async def _plan(
    plan: Planner, opened: list[OpenHost[HostView]], failed: list[HostResult[HostView]], *, at_once: bool
) -> tuple[list[Stream], str | None, list[OpenHost[HostView]], list[HostResult[HostView]]]:
    """The streams, planned from the hosts' first look when that settles everything (and the capture is
    to start `at_once`), else from their complete facts; a host whose complete facts fail is failed."""
    if at_once and any(o.value.complete is not None for o in opened):
        try:
            planned, name = plan([o.value for o in opened])
            per_host = [sum(1 for s in planned if s.target.host == o.host.name) for o in opened]
            if max(per_host, default=0) <= FIRST_LOOK_STREAMS:
                return planned, name, opened, failed
        except UsageError:
            pass  # planned again from what esxcli says, with the errors a full discovery gives
    kept, failed = [], list(failed)
    for o in opened:
        try:
            kept.append(replace(o, value=await completed(o.value)))
        except HostError as error:
            failed.append(HostResult(o.host, error=error))
            await o.conn.close()
    planned, name = plan([o.value for o in kept]) if kept else ([], None)
    return planned, name, kept, failed


async def _forget_first_looks(opened: Sequence[OpenHost[HostView]]) -> None:
    """Stop the discoveries still going on before their connections close."""
    pending = [o.value.complete for o in opened if isinstance(o.value.complete, asyncio.Task)]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _suggest_enable_ssh(failed: HostResult[HostView]) -> HostResult[HostView]:
    """A host vCenter located whose SSH is off: say that --enable-ssh turns it on for the capture."""
    if failed.error is None or "refused" not in failed.error.message:
        return failed
    hint = "its SSH service is off: add --enable-ssh to start it through vCenter for this capture only"
    return replace(failed, error=HostError(failed.error.message, hint))


async def _after(
    outcome: CaptureOutcome,
    delivery: Delivery,
    to_stderr: bool,
    extra: dict[str, object],
    max_bytes: int | None,
) -> int:
    """Summary, path view, viewer and bundle of a finished capture; its exit code."""
    extra["stop_reason"] = outcome.stop_reason
    extra["clocks"] = [c.as_dict() for c in outcome.clocks.values()]
    extra["connections"] = outcome.receive_paths
    if outcome.events is not None:
        extra["triggers"] = outcome.events
    if delivery.show_path and outcome.made:
        from esxcap.cli.path import path_report

        extra["path"] = path_report(outcome.made[0])
    output.capture_summary(outcome.runs, outcome.files, outcome.failed, delivery.json_out, to_stderr, extra)
    if outcome.stop_reason == "max-bytes" and max_bytes is not None:
        output.info(f"stopped at --max-bytes {human_size(max_bytes)}: the next packet would have passed it")
    if delivery.open_after and outcome.made:
        from esxcap.capture.viewers import open_file_command

        for path in outcome.made:
            await (await asyncio.create_subprocess_exec(*open_file_command(path))).wait()
    if outcome.interrupted:
        return ExitCode.INTERRUPTED
    if delivery.bundle and outcome.made:
        await _bundle(outcome.made, delivery.bundle)
    bad = sum(1 for r in outcome.runs if r.error is not None) + len(outcome.failed)
    disk_full = any(isinstance(r.error, DiskFull) for r in outcome.runs)
    return outcome_code(bad, len(outcome.runs) + len(outcome.failed), disk_full=disk_full)


async def _bundle(made: list[Path], ticket: str) -> None:
    from esxcap.cli.ticket import bundle_captures
    from esxcap.ticket.bundle import BundleOptions

    # archive, analysis and upload block: off the event loop
    await asyncio.to_thread(bundle_captures, made, BundleOptions(ticket=ticket), None, None)
