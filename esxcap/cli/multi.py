"""Commands across hosts: `path` (the packet-path view of a capture file) and `recipe ...` (the common
questions as multi-host capture plans, run like `capture`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from esxcap.capture.destinations import choose_output
from esxcap.capture.job import MultiOptions, capture_streams, prepare_host
from esxcap.cli import output
from esxcap.cli.capture import CaptureHostOpt
from esxcap.cli.common import (
    AcceptNewOpt,
    GroupOpt,
    JsonOpt,
    ParallelOpt,
    TransportOpt,
    app,
    run_job,
    select_hosts,
    session_options,
)
from esxcap.cli.main import EXIT_ALL_FAILED, EXIT_OK
from esxcap.errors import UsageError
from esxcap.plan import recipes
from esxcap.plan.planner import CaptureOptions, HostView
from esxcap.ssh.session import close_hosts, open_hosts

recipe_app = typer.Typer(
    help="Capture plans for common questions (vm-to-vm, vmk, dvfilter, uplink); see them with --dry-run.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(recipe_app, name="recipe")

CountOpt = Annotated[int | None, typer.Option("--count", "-c", help="Stop each stream after N packets.")]
DurationOpt = Annotated[float | None, typer.Option("--duration", "-d", help="Stop after N seconds.")]
MaxBytesOpt = Annotated[int | None, typer.Option(help="Stop once this many packet bytes were written.")]
SnaplenOpt = Annotated[int, typer.Option("--snaplen", "-s", help="Bytes kept per packet (0 = all).")]
OutOpt = Annotated[str | None, typer.Option("--output", "-o", help="File, directory, or - for stdout.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the remote commands; run nothing.")]
SplitOpt = Annotated[bool, typer.Option("--split", help="Also keep one file per stream.")]
AlignOpt = Annotated[
    bool, typer.Option("--align-clocks", help="Shift each host's timestamps by its measured clock offset.")
]
PathOpt = Annotated[bool, typer.Option("--path", help="After the capture, show the packet-path view.")]


def path_report(path: Path) -> dict[str, object]:
    """The path view of a capture file, as its JSON document (read here, analysed by esxcap.pcap.path)."""
    from esxcap.pcap import CaptureFile
    from esxcap.pcap.path import analyze, as_dict

    if not path.is_file():
        raise UsageError(f"no such file: {path}", "check the path")
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        records = list(source)
        return {"file": str(path), **as_dict(analyze(source.interfaces, records))}


@app.command()
def path(
    file: Annotated[Path, typer.Argument(help="A pcapng written by esxcap capture (or any pcap/pcapng).")],
    json_out: JsonOpt = False,
) -> None:
    """Each flow's packets through the capture points in order, per-hop latency, where they got lost."""

    async def job() -> int:
        report = path_report(file)
        if json_out:
            output.print_json(report)
        else:
            output.path_view(report)
        return EXIT_OK

    run_job(job)


def _run(
    build: Callable[[list[HostView]], recipes.Recipe],
    host: list[str] | None,
    group: str | None,
    count: int | None,
    duration: float | None,
    max_bytes: int | None,
    snaplen: int,
    out: str | None,
    dry_run: bool,
    multi: MultiOptions,
    parallel: int,
    json_out: bool,
    accept_new: bool,
    transport: str | None,
) -> None:
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be more than 0 seconds", "e.g. --duration 30")
    choice = None if dry_run else choose_output(out, False, sys.stdout.isatty(), multi.split, multi.path)

    async def job() -> int:
        hosts = select_hosts(host, group)
        opened, failed = await open_hosts(
            hosts, session_options(accept_new, transport), prepare_host, parallel
        )
        try:
            output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
            if not opened:
                return EXIT_ALL_FAILED
            views = [o.value for o in opened]
            recipe = build(views)
            options = CaptureOptions(count=count, snaplen=snaplen)
            planned = recipes.plan(recipe, views, options)
            used = [o for o in opened if any(s.target.host == o.host.name for s in planned)]
            if dry_run:
                output.dry_run(planned, [(o.value.name, o.value.facts) for o in used], json_out)
                return EXIT_OK
            assert choice is not None
            named = MultiOptions(multi.split, multi.align_clocks, multi.path, recipe.name)
            return await capture_streams(
                used, [], planned, choice, duration, max_bytes, False, False, False, json_out, options, named
            )
        finally:
            await close_hosts(opened)

    run_job(job)


@recipe_app.command("vm-to-vm")
def vm_to_vm(
    vm_a: Annotated[str, typer.Argument(help="The VM that starts the conversation (A).")],
    vm_b: Annotated[str, typer.Argument(help="The VM it talks to (B).")],
    nic_a: Annotated[str | None, typer.Option(help="A's vNIC (1 = first, or ethN).")] = None,
    nic_b: Annotated[str | None, typer.Option(help="B's vNIC (1 = first, or ethN).")] = None,
    host: CaptureHostOpt = None,
    group: GroupOpt = None,
    count: CountOpt = None,
    duration: DurationOpt = None,
    max_bytes: MaxBytesOpt = None,
    snaplen: SnaplenOpt = 0,
    out: OutOpt = None,
    dry_run: DryRunOpt = False,
    split: SplitOpt = False,
    align_clocks: AlignOpt = False,
    show_path: PathOpt = False,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """A's vNIC, A's uplink out, B's uplink in, B's vNIC (or the same-host variant), filtered on both IPs."""
    _run(
        lambda views: recipes.vm_to_vm(views, vm_a, vm_b, nic_a, nic_b),
        host, group, count, duration, max_bytes, snaplen, out, dry_run,
        MultiOptions(split, align_clocks, show_path), parallel, json_out, accept_new, transport,
    )  # fmt: skip


@recipe_app.command("vmk")
def vmk(
    target_host: Annotated[str, typer.Argument(metavar="HOST", help="Inventory host name.")],
    vmknic: Annotated[str, typer.Argument(metavar="VMK", help="VMkernel NIC, e.g. vmk1.")],
    count: CountOpt = None,
    duration: DurationOpt = None,
    max_bytes: MaxBytesOpt = None,
    snaplen: SnaplenOpt = 0,
    out: OutOpt = None,
    dry_run: DryRunOpt = False,
    split: SplitOpt = False,
    align_clocks: AlignOpt = False,
    show_path: PathOpt = False,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """A vmknic's traffic both ways (vMotion, vSAN, management) and its switch's linked uplinks."""
    _run(
        lambda views: recipes.vmk(views, target_host, vmknic),
        [target_host], None, count, duration, max_bytes, snaplen, out, dry_run,
        MultiOptions(split, align_clocks, show_path), 1, json_out, accept_new, transport,
    )  # fmt: skip


@recipe_app.command("dvfilter")
def dvfilter(
    vm: Annotated[str, typer.Argument(help="VM display name.")],
    nic: Annotated[str | None, typer.Option(help="The vNIC (1 = first, or ethN).")] = None,
    host: CaptureHostOpt = None,
    group: GroupOpt = None,
    count: CountOpt = None,
    duration: DurationOpt = None,
    max_bytes: MaxBytesOpt = None,
    snaplen: SnaplenOpt = 0,
    out: OutOpt = None,
    dry_run: DryRunOpt = False,
    split: SplitOpt = False,
    show_path: PathOpt = False,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """Before and after each DVFilter of a VM's vNIC (PreDVFilter, PostDVFilter), and the Drop point."""
    _run(
        lambda views: recipes.dvfilter(views, vm, nic),
        host, group, count, duration, max_bytes, snaplen, out, dry_run,
        MultiOptions(split, False, show_path), parallel, json_out, accept_new, transport,
    )  # fmt: skip


@recipe_app.command("uplink")
def uplink(
    target_host: Annotated[str, typer.Argument(metavar="HOST", help="Inventory host name.")],
    vmnic: Annotated[str, typer.Argument(metavar="VMNIC", help="Physical NIC, e.g. vmnic2.")],
    vlan: Annotated[str | None, typer.Option(help="Only this VLAN ID.")] = None,
    count: CountOpt = None,
    duration: DurationOpt = None,
    max_bytes: MaxBytesOpt = None,
    snaplen: SnaplenOpt = 0,
    out: OutOpt = None,
    dry_run: DryRunOpt = False,
    split: SplitOpt = False,
    show_path: PathOpt = False,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """An uplink's receive and send points, on one VLAN with --vlan."""
    _run(
        lambda views: recipes.uplink(views, target_host, vmnic, vlan),
        [target_host], None, count, duration, max_bytes, snaplen, out, dry_run,
        MultiOptions(split, False, show_path), 1, json_out, accept_new, transport,
    )  # fmt: skip
