"""`recipe ...`: the common questions as multi-host capture plans, run exactly like `capture`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from esxcap.cli.common import Connect, app, grouped, run_job
from esxcap.cli.options import Delivery, HostChoice, StopWhen, capture_options
from esxcap.cli.run import CaptureRequest, run_request
from esxcap.plan import recipes
from esxcap.plan.planner import HostView, Stream

recipe_app = typer.Typer(
    help="Capture plans for common questions (vm-to-vm, vmk, dvfilter, uplink); see them with --dry-run.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(recipe_app, name="recipe")


def _run(
    build: Callable[[list[HostView]], recipes.Recipe],
    hosts: HostChoice,
    stop: StopWhen,
    delivery: Delivery,
    connect: Connect,
    vm_names: tuple[str, ...] = (),
) -> None:
    """Run a recipe exactly as `capture` runs its targets (the same flow, checks and exit codes)."""
    request = CaptureRequest.of(
        hosts, connect, delivery, stop, capture_options(stop), host_bound=False, vm_names=vm_names
    )

    def plan(views: list[HostView]) -> tuple[list[Stream], str | None]:
        recipe = build(views)
        return recipes.plan(recipe, views, request.options), recipe.name

    run_job(lambda: run_request(request, plan))


def _on_host(name: str) -> HostChoice:
    """A recipe about one named host works on that host alone."""
    return HostChoice(host=[name], parallel=1)


@recipe_app.command("vm-to-vm")
@grouped
def vm_to_vm(
    vm_a: Annotated[str, typer.Argument(help="The VM that starts the conversation (A).", metavar="A")],
    vm_b: Annotated[str, typer.Argument(help="The VM it talks to (B).", metavar="B")],
    hosts: HostChoice,
    stop: StopWhen,
    delivery: Delivery,
    connect: Connect,
    nic_a: Annotated[str | None, typer.Option(help="A's vNIC (1 = first, or ethN).", metavar="N")] = None,
    nic_b: Annotated[str | None, typer.Option(help="B's vNIC (1 = first, or ethN).", metavar="N")] = None,
    ip_a: Annotated[
        str | None, typer.Option(help="A's IPv4 address, when VMware Tools reports none.", metavar="IP")
    ] = None,
    ip_b: Annotated[
        str | None, typer.Option(help="B's IPv4 address, when VMware Tools reports none.", metavar="IP")
    ] = None,
) -> None:
    """A's vNIC, A's uplink out, B's uplink in, B's vNIC (or the same-host variant), filtered on both IPs."""
    _run(
        lambda views: recipes.vm_to_vm(views, vm_a, vm_b, nic_a, nic_b, ip_a, ip_b),
        hosts,
        stop,
        delivery,
        connect,
    )


@recipe_app.command("vmk")
@grouped
def vmk(
    target_host: Annotated[str, typer.Argument(metavar="HOST", help="Inventory host name.")],
    vmknic: Annotated[str, typer.Argument(metavar="VMK", help="VMkernel NIC, e.g. vmk1.")],
    stop: StopWhen,
    delivery: Delivery,
    connect: Connect,
) -> None:
    """A vmknic's traffic both ways (vMotion, vSAN, management) and its switch's linked uplinks."""
    _run(
        lambda views: recipes.vmk(views, target_host, vmknic), _on_host(target_host), stop, delivery, connect
    )


@recipe_app.command("dvfilter")
@grouped
def dvfilter(
    vm: Annotated[str, typer.Argument(help="VM display name.", metavar="VM")],
    hosts: HostChoice,
    stop: StopWhen,
    delivery: Delivery,
    connect: Connect,
    nic: Annotated[str | None, typer.Option(help="The vNIC (1 = first, or ethN).", metavar="N")] = None,
) -> None:
    """Before and after each DVFilter of a VM's vNIC (PreDVFilter, PostDVFilter), and the Drop point."""
    _run(lambda views: recipes.dvfilter(views, vm, nic), hosts, stop, delivery, connect, (vm,))


@recipe_app.command("uplink")
@grouped
def uplink(
    target_host: Annotated[str, typer.Argument(metavar="HOST", help="Inventory host name.")],
    vmnic: Annotated[str, typer.Argument(metavar="VMNIC", help="Physical NIC, e.g. vmnic2.")],
    stop: StopWhen,
    delivery: Delivery,
    connect: Connect,
    vlan: Annotated[str | None, typer.Option(help="Only this VLAN ID.", metavar="VLAN")] = None,
) -> None:
    """An uplink's receive and send points, on one VLAN with --vlan."""
    _run(
        lambda views: recipes.uplink(views, target_host, vmnic, vlan),
        _on_host(target_host),
        stop,
        delivery,
        connect,
    )
