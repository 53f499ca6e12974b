"""Running a planned capture across hosts (what `capture` and the recipes share): discovery with the
capture points for each opened host, clock checks at start and end, one sink per output, every stream
under the wrapper until the common stop, then sidecars, the summary, and the optional path view,
viewer and ticket bundle."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from esxcap.capture.destinations import OutputChoice, sinks_for
from esxcap.capture.run import (
    StopControl,
    StreamRun,
    deadline_for,
    install_stop_signals,
    run_host_streams,
    start_clock,
)
from esxcap.capture.sinks import REORDER_WINDOW_NS
from esxcap.cli import output
from esxcap.cli.main import EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL
from esxcap.errors import HostError
from esxcap.inventory import HostConfig
from esxcap.plan.planner import CaptureOptions, HostView, Stream
from esxcap.ssh.session import HostResult, OpenHost
from esxcap.ssh.transport import Connection


@dataclass(frozen=True)
class MultiOptions:
    """What a capture across hosts adds: split files, clock alignment, the path view, the file's name,
    and the ticket to bundle the files for afterwards."""

    split: bool = False
    align_clocks: bool = False
    path: bool = False
    name: str | None = None
    bundle: str | None = None


async def prepare_host(host: HostConfig, conn: Connection) -> HostView:
    from esxcap.esxi.capabilities import Capabilities
    from esxcap.ssh.discovery import discover

    facts = await discover(conn, host, capture_points=True)
    caps = Capabilities.for_version(facts.version.version_tuple)
    if facts.capture_points:
        caps = caps.with_points(facts.capture_points)
    return HostView(host.name, facts, caps)


async def capture_streams(
    opened: list[OpenHost[HostView]],
    failed: list[HostResult[HostView]],
    planned: list[Stream],
    choice: OutputChoice,
    duration: float | None,
    max_bytes: int | None,
    console: bool,
    hexdump: bool,
    open_after: bool,
    json_out: bool,
    options: CaptureOptions,
    multi: MultiOptions,
) -> int:
    from esxcap.capture import clock

    used = {s.target.host for s in planned}
    conns = {o.host.name: o.conn for o in opened if o.host.name in used}
    checks = await clock.check_all(conns, {})
    started = time.time()
    outputs = sinks_for(planned, choice, started, max_bytes, console, hexdump, multi.name)
    sinks = outputs.sinks
    runs = [StreamRun(stream, sinks[i]) for i, stream in enumerate(planned)]
    clock.annotate(runs, checks, multi.align_clocks)
    control = StopControl()
    remove_signals = install_stop_signals(control, output.info)
    deadline = deadline_for(duration)
    by_host: dict[str, list[StreamRun]] = {}
    for run in runs:
        by_host.setdefault(run.stream.target.host, []).append(run)
    progress = output.CaptureProgress(runs)
    try:
        async with progress:
            timer = asyncio.create_task(start_clock(runs, control, duration))
            host_errors = await asyncio.gather(
                *(
                    run_host_streams(conns[name], host_runs, control, deadline)
                    for name, host_runs in by_host.items()
                ),
                return_exceptions=True,
            )
            timer.cancel()
    finally:
        remove_signals()
        end_ns = time.time_ns()
        files = {id(s): s.finish(end_ns) for s in set(sinks)}
        outputs.close()
    for host_runs, error in zip(by_host.values(), host_errors, strict=True):
        if isinstance(error, HostError):
            for run in host_runs:
                run.error = run.error or error
        elif isinstance(error, BaseException):
            raise error
    if not control.abort.is_set():
        checks = await clock.check_all(conns, checks)
    for warning in clock.warnings(list(checks.values()), REORDER_WINDOW_NS, multi.align_clocks):
        output.warning(warning)
    made = sorted({p for p in files.values() if p is not None})
    if multi.split:
        from esxcap.capture.destinations import split_file

        for path in made:
            output.info(f"--split: {len(split_file(path))} files beside {path}")
    extra: dict[str, object] = {"clocks": [c.as_dict() for c in checks.values()]}
    if multi.path and made:
        from esxcap.cli.multi import path_report

        extra["path"] = path_report(made[0])
    from esxcap.capture.metadata import write_capture_sidecars

    write_capture_sidecars(
        runs,
        files,
        {o.host.name: (o.host, o.value.facts) for o in opened},
        [{"host": f.host.name, "error": f.error.message, "hint": f.error.hint} for f in failed if f.error],
        started,
        end_ns / 1e9,
        options,
        {"duration_s": duration, "max_bytes": max_bytes, "stop_reason": control.reason},
        clocks={name: c.as_dict() for name, c in checks.items()},
    )
    output.capture_summary(
        runs,
        {id(s): f for s, f in ((s, files[id(s)]) for s in set(sinks))},
        failed,
        json_out,
        to_stderr=choice.stdout,
        extra=extra,
    )
    if open_after and choice.paths:
        from esxcap.capture.viewers import open_file_command

        for path in {p for p in files.values() if p is not None}:
            await (await asyncio.create_subprocess_exec(*open_file_command(path))).wait()
    if control.abort.is_set():
        return EXIT_INTERRUPTED
    if multi.bundle and made:
        from esxcap.cli.ticket import bundle_captures
        from esxcap.ticket.bundle import BundleOptions

        # archive, analysis and upload block: off the event loop
        await asyncio.to_thread(bundle_captures, made, BundleOptions(ticket=multi.bundle), None, None)
    bad = sum(1 for r in runs if r.error is not None) + len(failed)
    total = len(runs) + len(failed)
    if not bad:
        return EXIT_OK
    return EXIT_ALL_FAILED if bad == total else EXIT_PARTIAL
