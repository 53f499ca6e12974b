"""The one flow of `capture` and every recipe: open the hosts, plan, show the plan (--dry-run) or run it,
then the summary, the path view, the viewer and the ticket bundle, and the exit code.

A command builds a `CaptureRequest` from its option groups at the top and hands it here with the
function that turns the opened hosts into streams; nothing else differs between them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from esxcap.capture.job import CaptureOutcome, RunSettings, prepare_host, run_capture
from esxcap.cli import output
from esxcap.cli.common import Connect, select_hosts
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.cli.options import Delivery, StopWhen
from esxcap.errors import UsageError
from esxcap.plan.planner import CaptureOptions, HostView, Stream
from esxcap.ssh.session import HostResult, close_hosts, open_hosts

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
    hosts = select_hosts(request.hosts, request.group)
    opened, failed = await open_hosts(hosts, request.connect.session(), prepare_host, request.parallel)
    try:
        if not opened:
            output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
            return ExitCode.ALL_FAILED
        try:
            planned, name = plan([o.value for o in opened])
        except UsageError as error:
            if not failed:
                raise
            unsearched = ", ".join(f.host.name for f in failed)
            hint = "; ".join(filter(None, (error.hint, f"not searched (unreachable): {unsearched}")))
            raise UsageError(error.message, hint) from None
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
        )
        shown_failed = failed if request.host_bound else []
        # console lines keep off stdout when it carries the capture or the JSON document
        reporter = output.CaptureReporter(packets_to_stderr=choice.stdout or request.delivery.json_out)
        outcome = await run_capture(used, shown_failed, planned, settings, reporter)
        return await _after(outcome, request.delivery, choice.stdout)
    finally:
        await close_hosts(opened)


async def _after(outcome: CaptureOutcome, delivery: Delivery, to_stderr: bool) -> int:
    """Summary, path view, viewer and bundle of a finished capture; its exit code."""
    extra: dict[str, object] = {"clocks": [c.as_dict() for c in outcome.clocks.values()]}
    if delivery.show_path and outcome.made:
        from esxcap.cli.path import path_report

        extra["path"] = path_report(outcome.made[0])
    output.capture_summary(outcome.runs, outcome.files, outcome.failed, delivery.json_out, to_stderr, extra)
    if delivery.open_after and outcome.made:
        from esxcap.capture.viewers import open_file_command

        for path in outcome.made:
            await (await asyncio.create_subprocess_exec(*open_file_command(path))).wait()
    if outcome.interrupted:
        return ExitCode.INTERRUPTED
    if delivery.bundle and outcome.made:
        await _bundle(outcome.made, delivery.bundle)
    bad = sum(1 for r in outcome.runs if r.error is not None) + len(outcome.failed)
    return outcome_code(bad, len(outcome.runs) + len(outcome.failed))


async def _bundle(made: list[Path], ticket: str) -> None:
    from esxcap.cli.ticket import bundle_captures
    from esxcap.ticket.bundle import BundleOptions

    # archive, analysis and upload block: off the event loop
    await asyncio.to_thread(bundle_captures, made, BundleOptions(ticket=ticket), None, None)
