"""The capture commands: `capture` (with --dry-run), `points` and `cleanup`; the flow `capture`
shares with the recipes is `esxcap.cli.run`'s."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from esxcap.cli import output
from esxcap.cli.common import (
    Connect,
    GroupOpt,
    HostOpt,
    JsonOpt,
    ParallelOpt,
    app,
    grouped,
    named_hosts,
    run_job,
    select_hosts,
)
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.cli.options import (
    Delivery,
    Filters,
    HostChoice,
    Points,
    StopWhen,
    Targets,
    capture_options,
)
from esxcap.cli.run import CaptureRequest, run_request
from esxcap.errors import Cancelled, UsageError
from esxcap.inventory import HostConfig
from esxcap.plan.planner import HostView, Stream, resolve, streams
from esxcap.plan.scope import scope_for
from esxcap.ssh.session import HostResult, close_hosts, open_hosts, run_on_hosts
from esxcap.ssh.transport import Connection


@app.command()
@grouped
def capture(
    targets: Targets,
    hosts: HostChoice,
    points: Points,
    stop: StopWhen,
    filters: Filters,
    delivery: Delivery,
    connect: Connect,
) -> None:
    """Capture packets on ESXi hosts: pktcap-uw streamed back over SSH into pcapng files, stopped safely."""
    requests = targets.requests()
    request = CaptureRequest.of(
        hosts,
        connect,
        delivery,
        stop,
        capture_options(stop, points, filters),
        host_bound=targets.host_bound,
        vm_names=tuple(targets.vm or ()) if all(r.kind == "vm" for r in requests) else (),
        scope=scope_for(requests),
    )
    explicit = bool(hosts.host or hosts.group or targets.all_hosts)

    def plan(views: list[HostView]) -> tuple[list[Stream], str | None]:
        resolved = resolve(requests, views, explicit)
        for note in resolved.notes:
            output.info(note)
        planned = streams(resolved.targets, request.options, {v.name: v.caps for v in views})
        if targets.wide and not delivery.dry_run and not targets.yes:
            _confirm_wide(planned)
        return planned, None

    run_job(lambda: run_request(request, plan))


def _confirm_wide(planned: list[Stream]) -> None:
    """Show what a wide selection (--many, --portgroup) would capture and ask; scripts say --yes."""
    chosen = sorted({(s.target.host, s.target.label) for s in planned})
    output.info(f"this captures {len(planned)} streams of {len(chosen)} targets:")
    for host, label in chosen:
        output.info(f"  {host}: {label}")
    if not sys.stdin.isatty():
        raise UsageError(
            f"a wide selection of {len(chosen)} targets needs confirming", "add --yes (or --dry-run)"
        )
    if not typer.confirm("Capture all of these?"):
        raise Cancelled("nothing captured", "narrow the selection, or see it with --dry-run")


@app.command()
@grouped
def points(
    host: Annotated[str, typer.Argument(help="Inventory host name or [user@]address[:port].")],
    connect: Connect,
    json_out: JsonOpt = False,
) -> None:
    """List a host's pktcap-uw capture points (`pktcap-uw -A`, else the table for its ESXi version)."""
    from esxcap.esxi import parsers
    from esxcap.esxi.capabilities import Capabilities
    from esxcap.esxi.pktcap_output import read_available_points
    from esxcap.ssh.discovery import AVAILABLE_POINTS_ARGV, run_batch

    async def job() -> int:
        [target] = select_hosts([host], None)

        async def ask(cfg: HostConfig, conn: Connection) -> tuple[str, tuple[str, ...]]:
            version_text, listed = await run_batch(
                conn, cfg, [parsers.VMWARE_VL_ARGV, AVAILABLE_POINTS_ARGV], 1
            )
            version = parsers.parse_vmware_vl(version_text or "")
            listing = read_available_points(listed or "")
            for message in listing.warnings(cfg.name) if listed else ():
                output.warning(message)
            if listing.points:
                return "from pktcap-uw -A", listing.points
            return (
                f"pktcap-uw -A gave nothing readable; ESXi {version.version} table",
                Capabilities.for_version(version.version_tuple).points,
            )

        opened, failed = await open_hosts([target], connect.session(), ask, 1)
        await close_hosts(opened)
        if failed and failed[0].error:
            raise failed[0].error
        source, names = opened[0].value
        output.points(target.name, names, source, json_out)
        return ExitCode.OK

    run_job(job)


@app.command()
@grouped
def cleanup(
    connect: Connect,
    host: Annotated[list[str] | None, typer.Argument(help="Hosts to clean; default: the inventory.")] = None,
    host_opt: HostOpt = None,
    group: GroupOpt = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Also stop pktcap-uw processes esxcap did not start (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --all: do not ask.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list; stop nothing.")] = False,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
) -> None:
    """Find leftover captures: stop the ones esxcap started; list others (stopped only with --all)."""
    from esxcap.ssh.cleanup import clean_host

    ask = everything and not yes and not dry_run
    if ask and not sys.stdin.isatty():
        raise UsageError("--all stops captures other people started", "confirm with --yes")

    async def job() -> int:
        hosts = select_hosts(named_hosts(host, host_opt), group)

        async def clean(listing_only: bool) -> list[HostResult[list[dict[str, Any]]]]:
            return await run_on_hosts(
                hosts, connect.session(), lambda h, c: clean_host(h, c, everything, listing_only), parallel
            )

        if ask:
            listed = await clean(True)
            output.cleanup_report([row for r in listed if r.value for row in r.value], False)
            if not typer.confirm("Stop every pktcap-uw listed above, including ones esxcap did not start?"):
                raise Cancelled("nothing stopped", "run without --all to stop only esxcap's own captures")
        results = await clean(dry_run)
        rows = [row for r in results if r.value for row in r.value]
        output.cleanup_report(rows, json_out)
        output.host_errors([(r.host.name, r.error.message, r.error.hint) for r in results if r.error])
        bad = sum(
            1 for r in results if r.error or any(row["action"] == "failed to stop" for row in r.value or ())
        )
        return outcome_code(bad, len(results))

    run_job(job)
