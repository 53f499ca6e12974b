"""Running a planned capture across hosts (what `capture`, the recipes and every other front share): the
capture points of each opened host, clock checks at start and end, one sink per output, every stream
under the wrapper until the common stop, then the split files and the sidecars.

What is shown, and how, is the caller's: progress, notices and console lines go through its `Reporter`;
the result comes back as a `CaptureOutcome` for the caller to summarise and turn into an exit code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from esxcap.capture import clock
from esxcap.capture.destinations import ConsoleView, OutputChoice, sinks_for, split_file
from esxcap.capture.first_look import recorded_facts, start_recording
from esxcap.capture.metadata import add_to_sidecars, write_capture_sidecars
from esxcap.capture.ring import ring_summary
from esxcap.capture.run import (
    StopControl,
    StreamRun,
    deadline_for,
    install_stop_signals,
    note_streams_still_counting,
    run_host_streams,
    settle_stop_reasons,
    start_clock,
)
from esxcap.capture.sinks import REORDER_WINDOW_NS, CaptureSink
from esxcap.capture.triggered import (
    TriggerEvent,
    TriggerRecorder,
    tap_ring,
    to_local_ns,
    triggered_outputs,
)
from esxcap.errors import HostError
from esxcap.esxi.models import HostFacts
from esxcap.pcap.triggers import TriggerPlan
from esxcap.plan.planner import CaptureOptions, HostView, Stream
from esxcap.ssh.session import HostResult, OpenHost


@dataclass(frozen=True)
class RunSettings:
    """How a planned capture runs: where packets go, when it stops (besides `options.count`), whether
    packets are shown as they come, and what is kept besides the merged file."""

    choice: OutputChoice
    options: CaptureOptions
    duration: float | None = None
    max_bytes: int | None = None
    console: bool = False
    hexdump: bool = False
    split: bool = False
    align_clocks: bool = False
    name: str | None = None
    trigger: TriggerPlan | None = None


class Reporter(Protocol):
    """Where a running capture speaks: notices, warnings, one line per packet, live progress."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def packet(self, line: str) -> None: ...

    def progress(self, runs: Sequence[StreamRun]) -> AbstractAsyncContextManager[object]: ...


@dataclass
class CaptureOutcome:
    """What a capture did: every stream's run, the file each sink became, the files made, the hosts
    that could not be opened, the clock checks, and whether the user interrupted it."""

    runs: list[StreamRun]
    files: dict[int, Path | None]
    made: list[Path]
    failed: list[HostResult[HostView]]
    clocks: dict[str, clock.ClockCheck]
    interrupted: bool
    stop_reason: str | None
    receive_paths: dict[str, str]
    """Host -> how its output was read (Connection.receive_path)."""
    events: list[dict[str, object]] | None = None
    """--trigger: each event kept (its file, window, triggers, failures)."""


async def _note_clocks(
    reading: asyncio.Task[dict[str, clock.ClockCheck]],
    runs: Sequence[StreamRun],
    align: bool,
    then: Callable[[dict[str, clock.ClockCheck]], None] | None,
) -> None:
    """Once the start clocks are read (while pktcap-uw starts), note them on every stream and hand them
    to `then` (a trigger's recorder), before any stream writes a packet."""
    try:
        checks = await reading
        clock.annotate(runs, checks, align)
        if then is not None:
            then(checks)
    finally:
        for run in runs:
            run.noted.set()


def _count_what_was_written(runs: Sequence[StreamRun]) -> None:
    """After a failed write, each stream's packets and bytes are what its file holds, not what came."""
    for run in runs:
        written = run.sink.written
        if written is not None and run.iface is not None:
            run.packets, run.bytes = written.get(run.iface, (0, 0))


def _files_of(sink: CaptureSink, files: dict[int, Path | None]) -> list[Path | None]:
    """The files a sink made: its file, or a ring's kept segments."""
    return [s.path for s in sink.ring.segments] if sink.ring is not None else [files[id(sink)]]


def stop_with_term(runs: list[StreamRun], builds: dict[str, str], reporter: Reporter) -> None:
    """Streams on builds where `esxcap doctor` saw INT ignored by pktcap-uw are stopped with TERM."""
    from esxcap.ssh.host_memory import int_ignored

    for host in sorted({run.stream.target.host for run in runs}):
        if not int_ignored(builds[host]):
            continue
        reporter.info(
            f"{host}: esxcap doctor found that INT does not stop pktcap-uw on build {builds[host]}; "
            "stopping with TERM (no trailer, so no drop count)"
        )
        for run in runs:
            run.term_to_stop = run.term_to_stop or run.stream.target.host == host


async def run_capture(
    opened: Sequence[OpenHost[HostView]],
    failed: Sequence[HostResult[HostView]],
    planned: Sequence[Stream],
    settings: RunSettings,
    reporter: Reporter,
) -> CaptureOutcome:
    """Run every planned stream until the common stop; split and describe the files made."""
    used = {s.target.host for s in planned}
    conns = {o.host.name: o.conn for o in opened if o.host.name in used}
    reading = asyncio.create_task(clock.check_all(conns, {}))
    recording = start_recording([o for o in opened if o.host.name in used])
    for warning in (w for o in opened if o.host.name in used for w in o.value.facts.warnings):
        reporter.warning(warning)
    started = time.time()
    show = reporter.packet if settings.console or settings.hexdump else None
    recorder: TriggerRecorder | None = None
    if settings.trigger is not None and settings.choice.ring is None:
        view = ConsoleView(settings.hexdump, show) if show is not None else None
        outputs, recorder = triggered_outputs(
            planned,
            settings.choice,
            started,
            settings.trigger,
            reporter.info,
            settings.name,
            settings.max_bytes,
            view,
            reporter.warning,
        )
    else:
        outputs = sinks_for(
            planned,
            settings.choice,
            started,
            settings.max_bytes,
            show,
            settings.hexdump,
            settings.name,
            reporter.warning,
        )
        if settings.trigger is not None:
            recorder = tap_ring(outputs.sinks, planned, started, settings.trigger, reporter.info)
    sinks = outputs.sinks
    runs = [StreamRun(stream, sinks[i], noted=asyncio.Event()) for i, stream in enumerate(planned)]
    stop_with_term(runs, {o.host.name: o.value.facts.version.build for o in opened}, reporter)
    control = StopControl()
    armed = recorder

    def arm(checks: dict[str, clock.ClockCheck]) -> None:
        if armed is not None:
            _arm(armed, runs, checks, control)

    noting = asyncio.create_task(_note_clocks(reading, runs, settings.align_clocks, arm))
    remove_signals = install_stop_signals(control, reporter.info)
    deadline = deadline_for(settings.duration)
    by_host: dict[str, list[StreamRun]] = {}
    for run in runs:
        by_host.setdefault(run.stream.target.host, []).append(run)
    try:
        async with reporter.progress(runs):
            timer = asyncio.create_task(start_clock(runs, control, settings.duration))
            waiting = asyncio.create_task(note_streams_still_counting(runs, control, reporter.info))
            host_errors = await asyncio.gather(
                *(
                    run_host_streams(conns[name], host_runs, control, deadline)
                    for name, host_runs in by_host.items()
                ),
                return_exceptions=True,
            )
            timer.cancel()
            waiting.cancel()
    finally:
        remove_signals()
        noting.cancel()
        end_ns = time.time_ns()
        files = {id(s): s.finish(end_ns) for s in set(sinks)}
        outputs.close()
        events = recorder.finish() if recorder is not None else []
        _count_what_was_written(runs)
    unexpected: BaseException | None = None
    for host_runs, error in zip(by_host.values(), host_errors, strict=True):
        if isinstance(error, HostError):
            for run in host_runs:
                run.error = run.error or error
        elif isinstance(error, BaseException):
            unexpected = unexpected or error
    made = sorted(
        {p for s in set(sinks) for p in _files_of(s, files) if p is not None} | {e.path for e in events}
    )
    reason = settle_stop_reasons(control, runs)
    failures = [
        {"host": f.host.name, "error": f.error.message, "hint": f.error.hint} for f in failed if f.error
    ]
    checks: dict[str, clock.ClockCheck] = {}
    facts: dict[str, HostFacts] = {}  # until the complete facts are in (a Ctrl-C now: the first look)
    try:
        checks = await reading
        targets = list(dict.fromkeys(s.target for s in planned))
        views = {o.host.name: o.value for o in opened}
        facts = await recorded_facts(recording, views, targets, control.abort.is_set(), reporter.warning)
        if unexpected is not None:
            raise unexpected
        if not control.abort.is_set():
            checks = await clock.check_all(conns, checks)
        for warning in clock.warnings(list(checks.values()), REORDER_WINDOW_NS, settings.align_clocks):
            reporter.warning(warning)
        if recorder is not None and not events:
            reporter.info(f"--trigger {recorder.plan.condition.text} did not fire: no event was kept")
        for ring in {s.ring for s in sinks if s.ring is not None}:
            reporter.info(ring_summary(ring))
        if settings.split and settings.choice.ring is None:
            for path in made:
                reporter.info(f"--split: {len(split_file(path))} files beside {path}")
    finally:
        # the files' metadata is written whatever ended the capture (a bug included: it stays loud)
        def sidecars(of: dict[int, Path | None]) -> None:
            write_capture_sidecars(
                runs,
                of,
                {o.host.name: (o.host, facts.get(o.host.name, o.value.facts)) for o in opened},
                failures,
                started,
                end_ns / 1e9,
                settings.options,
                {"duration_s": settings.duration, "max_bytes": settings.max_bytes, "stop_reason": reason},
                reporter.warning,
                clocks={name: c.as_dict() for name, c in checks.items()},
            )

        sidecars(files)
        described = _describe_events(events, recorder, runs, reporter) if recorder else None
        for event, document in zip(events, described or [], strict=True):
            sidecars({id(sinks[0]): event.path})
            add_to_sidecars([event.path], "trigger", document, reporter.warning)
    receive_paths = {name: conn.receive_path for name, conn in conns.items()}
    return CaptureOutcome(
        runs, files, made, list(failed), checks, control.abort.is_set(), reason, receive_paths, described
    )


def _arm(
    recorder: TriggerRecorder,
    runs: Sequence[StreamRun],
    checks: dict[str, clock.ClockCheck],
    control: StopControl,
) -> None:
    """Tell the recorder each stream's clock and point, and let the last event stop the capture."""
    for run in runs:
        check_ = checks.get(run.stream.target.host)
        offset = check_.start.offset_ns if check_ is not None and check_.start is not None else None
        recorder.expect(
            run.stream.interface_name, to_local_ns(run.shift_ns, offset), run.stream.point_label == "Drop"
        )
    loop = asyncio.get_running_loop()
    kept = recorder.plan.events

    def stop_after(seconds: float) -> None:
        loop.call_later(seconds, control.stop, f"--trigger: {kept} event(s) kept")

    recorder.on_last_event = stop_after


def _describe_events(
    events: Sequence[TriggerEvent],
    recorder: TriggerRecorder,
    runs: Sequence[StreamRun],
    reporter: Reporter,
) -> list[dict[str, object]]:
    """Each event as the metadata records it; a stream that failed before its window ended is said."""
    described = []
    for event in events:
        document = event.as_dict(recorder.names)
        failed = [
            {"stream": r.stream.interface_name, "error": r.error.message}
            for r in runs
            if r.error is not None and (r.ended_at or 0) * 1e9 <= event.end_ns
        ]
        document["failed_during_window"] = failed
        document["before_window_spilled_bytes"] = recorder.before.peak_spilled
        for failure in failed:
            reporter.warning(
                f"trigger event {event.number}: {failure['stream']} failed before its window ended "
                f"({failure['error']}); {event.path.name} holds what arrived"
            )
        packets, streams = sum(event.packets.values()), len(event.packets)
        reporter.info(f"trigger event {event.number}: {event.path} ({packets} packets of {streams} streams)")
        described.append(document)
    return described
