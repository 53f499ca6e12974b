"""The `esxcap` command line: parses options, runs one asyncio job per command, renders, maps errors to
exit codes (the only place that does): 0 all ok, 3 partial, 1 all hosts failed, 2 usage or config
error, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from esxcap import __version__, output
from esxcap.errors import ConfigError, EsxcapError, UsageError
from esxcap.inventory import HostConfig, Inventory, find_inventory, load_inventory
from esxcap.session import HostResult, SessionOptions, run_on_hosts

T = TypeVar("T")

EXIT_OK = 0
EXIT_ALL_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="esxcap",
    help="Packet captures on VMware ESXi hosts over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    inventory_path: Path | None = None


state = _State()

HostsArg = Annotated[
    list[str] | None, typer.Argument(help="Inventory host names or [user@]address[:port]; default: all.")
]
GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Only the hosts of this inventory group.")
]
ParallelOpt = Annotated[int, typer.Option("--parallel", "-P", help="Hosts contacted at once.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
AcceptNewOpt = Annotated[
    bool,
    typer.Option("--accept-new", help="Record host keys not seen before (a changed key is always refused)."),
]
TransportOpt = Annotated[str | None, typer.Option("--transport", help="SSH library: asyncssh.")]


def _fail(error: EsxcapError, code: int) -> NoReturn:
    output.error(error.message, error.hint)
    raise typer.Exit(code)


def _run(job: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run one command's job, mapping esxcap errors and Ctrl-C to exit codes."""
    try:
        code = asyncio.run(job())
    except (UsageError, ConfigError) as error:
        _fail(error, EXIT_USAGE)
    except EsxcapError as error:
        _fail(error, EXIT_ALL_FAILED)
    except KeyboardInterrupt:
        output.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


def _load_inventory() -> Inventory:
    path = find_inventory(state.inventory_path, os.environ, Path.cwd(), Path.home())
    inventory = load_inventory(path)
    for message in inventory.warnings:
        output.warning(message)
    return inventory


def _select(hosts: Sequence[str] | None, group: str | None) -> list[HostConfig]:
    selected = _load_inventory().select(list(hosts or ()), group)
    if not selected:
        raise ConfigError(
            "no hosts to work on: the inventory is empty and none was named",
            "name a host (esxcap discover root@10.0.0.11) or write an inventory (see inventory.example.yaml)",
        )
    return selected


def _prompt_password(prompt: str) -> str | None:
    """Ask on the terminal; without one there is nobody to ask."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt)


def _options(accept_new: bool, transport: str | None) -> SessionOptions:
    return SessionOptions(password=_prompt_password, accept_new=accept_new, transport=transport)


def _exit_code(results: Sequence[HostResult[Any]]) -> int:
    failed = sum(1 for r in results if r.error is not None)
    if not failed:
        return EXIT_OK
    return EXIT_ALL_FAILED if failed == len(results) else EXIT_PARTIAL


def _error_rows(results: Sequence[HostResult[Any]]) -> list[tuple[str, str, str | None]]:
    return [(r.host.name, r.error.message, r.error.hint) for r in results if r.error is not None]


def _error_dicts(results: Sequence[HostResult[Any]]) -> list[dict[str, Any]]:
    return [{"host": host, "error": message, "hint": hint} for host, message, hint in _error_rows(results)]


async def _discover(hosts: list[HostConfig], options: SessionOptions, parallel: int) -> list[HostResult[Any]]:
    from esxcap.discovery import discover

    return await run_on_hosts(hosts, options, lambda _host, conn: discover(conn, _host), parallel)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"esxcap {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help="Inventory YAML (else $ESXCAP_INVENTORY, ./inventory.yaml, ~/.config/esxcap/).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Packet captures on VMware ESXi hosts over SSH, from one host to fifty."""
    state.inventory_path = inventory


@app.command()
def hosts(json_out: JsonOpt = False) -> None:
    """Show the resolved inventory: address, user, key and where passwords come from (never a password)."""

    async def job() -> int:
        rows = [h.describe() for h in _load_inventory().hosts.values()]
        if json_out:
            output.print_json({"hosts": rows})
        else:
            output.hosts(rows)
        return EXIT_OK

    _run(job)


@app.command()
def discover(
    host: HostsArg = None,
    group: GroupOpt = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """Show VMs with their vNIC switch ports, vmknics, uplinks, switches and portgroups of each host."""

    async def job() -> int:
        from esxcap.facts import host_dict

        results = await _discover(_select(host, group), _options(accept_new, transport), parallel)
        if json_out:
            output.print_json(
                {
                    "hosts": [host_dict(r.host, r.value) for r in results if r.value is not None],
                    "errors": _error_dicts(results),
                }
            )
        else:
            for r in results:
                if r.value is not None:
                    output.host_facts(r.host.name, f"{r.host.hostname}:{r.host.port}", r.value)
            output.host_errors(_error_rows(results))
        return _exit_code(results)

    _run(job)


@app.command()
def find(
    text: Annotated[
        str, typer.Argument(help="VM name (exact, any case, or glob like 'web*'), MAC or IP address.")
    ],
    host: HostsArg = None,
    group: GroupOpt = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """Which host runs a VM, or owns a MAC or IP; every match is listed with its switch port."""

    async def job() -> int:
        from esxcap.targets import find as find_matches

        results = await _discover(_select(host, group), _options(accept_new, transport), parallel)
        found = find_matches(text, [(r.host.name, r.value) for r in results if r.value is not None])
        if json_out:
            output.print_json(
                {"query": text, "matches": [vars(m) for m in found], "errors": _error_dicts(results)}
            )
        else:
            if found:
                output.matches(found)
            output.host_errors(_error_rows(results))
        if not found and not json_out:
            searched = ", ".join(r.host.name for r in results if r.value is not None) or "no reachable host"
            output.error(
                f"nothing named '{text}' on {searched}", "try a glob ('web*'), a MAC or an IP address"
            )
        code = _exit_code(results)
        return code if found or code != EXIT_OK else EXIT_ALL_FAILED

    _run(job)


@app.command()
def sim(
    topology: Annotated[
        Path | None, typer.Option(help="Topology YAML; default: the built-in demo topology.")
    ] = None,
    port_base: Annotated[int, typer.Option(help="First port to listen on (0: any free ports).")] = 0,
    state_dir: Annotated[
        Path, typer.Option(help="Where inventory.yaml, known_hosts and the client key are written.")
    ] = Path("esxcap-sim"),
) -> None:
    """Serve simulated ESXi hosts on 127.0.0.1 until Ctrl-C, with a ready-to-use inventory."""

    async def job() -> int:
        from esxcap.sim import Simulator, serve_forever

        def ready(simulator: Simulator) -> None:
            for name, sim_host in simulator.hosts.items():
                output.info(f"{name}: 127.0.0.1:{sim_host.port}")
            output.info(f"state dir: {state_dir.resolve()}")
            output.info(f"try: esxcap -i {simulator.inventory_path} discover   (Ctrl-C stops the simulator)")

        await serve_forever(topology, port_base, state_dir, ready)
        return EXIT_OK

    try:
        _run(job)
    except typer.Exit as done:
        if done.exit_code == EXIT_INTERRUPTED:
            raise typer.Exit(EXIT_OK) from None
        raise


def main() -> None:
    # ESXi 5.5/6.0 hosts only speak finite-field Diffie-Hellman; the library's deprecation notice is
    # not something an admin can act on, and it would land between our own messages.
    warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields")
    app()
