"""The inventory and discovery commands: `hosts`, `discover`, `find`; and `sim`, the simulated hosts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from esxcap.cli import output
from esxcap.cli.common import (
    Connect,
    GroupOpt,
    HostOpt,
    HostsArg,
    JsonOpt,
    ParallelOpt,
    app,
    error_dicts,
    error_rows,
    exit_code,
    grouped,
    load_inventory_or_empty,
    named_hosts,
    prompt_password,
    run_job,
    select_hosts,
)
from esxcap.cli.exitcodes import ExitCode
from esxcap.errors import ConfigError, UsageError
from esxcap.inventory import HostConfig, Inventory
from esxcap.ssh.session import HostResult, SessionOptions, run_on_hosts

if TYPE_CHECKING:
    from esxcap.vcenter.estate import VcVm


async def _discover(hosts: list[HostConfig], options: SessionOptions, parallel: int) -> list[HostResult[Any]]:
    from esxcap.ssh.discovery import discover

    return await run_on_hosts(hosts, options, lambda _host, conn: discover(conn, _host), parallel)


VcenterOpt = Annotated[
    bool,
    typer.Option("--vcenter", help="Also the hosts the inventory's vCenter manages (clusters as groups)."),
]


async def _vcenter_inventory(connect: Connect) -> tuple[Inventory, list[VcVm]]:
    """The inventory plus every host its vCenter manages, and every VM vCenter knows (two queries)."""
    from esxcap.vcenter.client import Vcenter

    inventory = load_inventory_or_empty()
    if inventory.vcenter is None:
        raise ConfigError(
            f"--vcenter: {inventory.path or 'the inventory'} has no vcenter block",
            "add one (README: vCenter): vcenter: {address: vcsa.corp.local, password_env: VC_PASSWORD}",
        )
    vcenter = await asyncio.to_thread(Vcenter.connect, inventory.vcenter, prompt_password, connect.accept_new)
    try:
        known = await asyncio.to_thread(vcenter.hosts)
        vms = await asyncio.to_thread(vcenter.vms)
    finally:
        await asyncio.to_thread(vcenter.close)
    return inventory.with_vcenter_hosts([(h.name, h.cluster) for h in known]), vms


@app.command()
@grouped
def hosts(connect: Connect, json_out: JsonOpt = False, vcenter: VcenterOpt = False) -> None:
    """Show the resolved inventory: address, user, key and where passwords come from (never a password)."""

    async def job() -> int:
        inventory = (await _vcenter_inventory(connect))[0] if vcenter else load_inventory_or_empty()
        if not inventory.hosts:
            where = f"inventory {inventory.path}" if inventory.path else "no inventory file was found, and it"
            raise ConfigError(
                f"{where} lists no hosts",
                "write one (see inventory.example.yaml) and pass it with -i FILE, or name hosts to commands",
            )
        rows = [h.describe() for h in inventory.hosts.values()]
        if json_out:
            output.print_json({"hosts": rows})
        else:
            output.hosts(rows)
        return ExitCode.OK

    run_job(job)


@app.command()
@grouped
def discover(
    connect: Connect,
    host: HostsArg = None,
    host_opt: HostOpt = None,
    group: GroupOpt = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    vcenter: VcenterOpt = False,
) -> None:
    """Show VMs with their vNIC switch ports, vmknics, uplinks, switches and portgroups of each host."""
    host = named_hosts(host, host_opt)

    async def job() -> int:
        from esxcap.esxi.facts import host_dict
        from esxcap.ssh.discovery_cache import cache_dir, remember

        chosen = (
            (await _vcenter_inventory(connect))[0].select(list(host or ()), group)
            if vcenter
            else select_hosts(host, group)
        )
        results = await _discover(chosen, connect.session(), parallel)
        remember(cache_dir(os.environ, Path.home()), [(r.host.name, r.value) for r in results if r.value])
        if json_out:
            output.print_json(
                {
                    "hosts": [host_dict(r.host, r.value) for r in results if r.value is not None],
                    "errors": error_dicts(results),
                }
            )
        else:
            for r in results:
                if r.value is not None:
                    output.host_facts(r.host.name, f"{r.host.hostname}:{r.host.port}", r.value)
            output.host_errors(error_rows(results))
        return exit_code(results)

    run_job(job)


@app.command()
@grouped
def find(
    connect: Connect,
    text: Annotated[
        str, typer.Argument(help="VM name (exact, any case, or glob like 'web*'), MAC or IP address.")
    ],
    host: HostsArg = None,
    host_opt: HostOpt = None,
    group: GroupOpt = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
) -> None:
    """Which host runs a VM, or owns a MAC or IP; every match is listed with its switch port."""
    host = named_hosts(host, host_opt)

    if not text.strip():
        raise UsageError(
            "find needs something to look for", "give a VM name or glob, a vmknic, a MAC, an IP or a prefix"
        )

    async def job() -> int:
        from esxcap.plan.targets import find as find_matches

        results = await _discover(await _find_where(connect, text, host, group), connect.session(), parallel)
        found = find_matches(text, [(r.host.name, r.value) for r in results if r.value is not None])
        if json_out:
            output.print_json(
                {"query": text, "matches": [vars(m) for m in found], "errors": error_dicts(results)}
            )
        else:
            if found:
                output.matches(found)
            output.host_errors(error_rows(results))
        if not found and not json_out:
            searched = ", ".join(r.host.name for r in results if r.value is not None) or "no reachable host"
            output.error(
                f"nothing named '{text}' on {searched}", "try a glob ('web*'), a MAC or an IP address"
            )
        if found or not any(r.value is not None for r in results):
            return exit_code(results)
        return ExitCode.USAGE  # as `capture --vm` does for a VM that is nowhere

    run_job(job)


async def _find_where(
    connect: Connect, text: str, host: list[str] | None, group: str | None
) -> list[HostConfig]:
    """The hosts `find` asks over SSH: with a vCenter in the inventory (and no hosts named), only those
    running what vCenter says `text` names."""
    from esxcap.vcenter.estate import hosts_running

    if host or group or load_inventory_or_empty().vcenter is None:
        return select_hosts(host, group)
    inventory, vms = await _vcenter_inventory(connect)
    where = hosts_running(text, vms)
    chosen = list(inventory.hosts.values()) if where is None else [inventory.hosts[name] for name in where]
    output.info(f"vCenter: SSH to {len(chosen)} of {len(inventory.hosts)} hosts")
    if not chosen:
        raise UsageError(f"vCenter knows no running VM or vNIC '{text}'", "try a glob ('web*'), MAC or IP")
    return chosen


@app.command()
def sim(
    topology: Annotated[
        Path | None, typer.Option(help="Topology YAML; default: the built-in demo topology.")
    ] = None,
    port_base: Annotated[int, typer.Option(help="First port to listen on (0: any free ports).")] = 0,
    state_dir: Annotated[
        Path, typer.Option(help="Where inventory.yaml, known_hosts and the client key are written.")
    ] = Path("esxcap-sim"),
    esxcli_latency: Annotated[
        int | None,
        typer.Option(help="Milliseconds each esxcli call takes on every host (real hosts: 500-1000)."),
    ] = None,
) -> None:
    """Serve simulated ESXi hosts on 127.0.0.1 until Ctrl-C, with a ready-to-use inventory."""

    if esxcli_latency is not None and not 0 <= esxcli_latency <= 60_000:
        raise UsageError(f"--esxcli-latency {esxcli_latency}: out of range", "use 0 to 60000 milliseconds")

    async def job() -> int:
        from esxcap.sim import Simulator, serve_forever

        def ready(simulator: Simulator) -> None:
            for name, sim_host in simulator.hosts.items():
                output.info(f"{name}: 127.0.0.1:{sim_host.port}")
            output.info(f"state dir: {state_dir.resolve()}")
            output.info(f"try: esxcap -i {simulator.inventory_path} discover   (Ctrl-C stops the simulator)")

        await serve_forever(topology, port_base, state_dir, ready, esxcli_latency)
        return ExitCode.OK

    run_job(job, until_interrupted=True)
