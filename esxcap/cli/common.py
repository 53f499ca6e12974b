"""What every esxcap command shares: the typer app, common options, inventory and host selection, the
password prompt, and the exit code of a per-host result list (the codes themselves are in `esxcap.cli.main`).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from esxcap.cli import output
from esxcap.cli.main import EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, INVENTORY_HELP
from esxcap.errors import ConfigError
from esxcap.inventory import HostConfig, Inventory, find_inventory, load_inventory
from esxcap.ssh.session import HostResult, SessionOptions

T = TypeVar("T")

app = typer.Typer(
    name="esxcap",
    help="Packet captures on VMware ESXi hosts over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    inventory_path: Path | None = None


state = _State()


@app.callback()
def global_options(
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help=INVENTORY_HELP,
        ),
    ] = None,
) -> None:
    """Packet captures on VMware ESXi hosts over SSH (the front in `esxcap.cli.main` shows the full help)."""
    state.inventory_path = inventory


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
TransportOpt = Annotated[
    str | None, typer.Option("--transport", help="SSH library: asyncssh (default) or paramiko.")
]


def run_job(job: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run one command's job (its esxcap errors reach `cli.main`); Ctrl-C outside a capture exits 130."""
    try:
        code = asyncio.run(job())
    except KeyboardInterrupt:
        output.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


def load_inventory_or_empty() -> Inventory:
    path = find_inventory(state.inventory_path, os.environ, Path.cwd(), Path.home())
    inventory = load_inventory(path)
    for message in inventory.warnings:
        output.warning(message)
    return inventory


def select_hosts(hosts: Sequence[str] | None, group: str | None) -> list[HostConfig]:
    selected = load_inventory_or_empty().select(list(hosts or ()), group)
    if not selected:
        raise ConfigError(
            "no hosts to work on: the inventory is empty and none was named",
            "name a host (esxcap discover root@10.0.0.11) or write an inventory (see inventory.example.yaml)",
        )
    return selected


_prompt_lock = threading.Lock()


def prompt_password(prompt: str) -> str | None:
    """Ask on the terminal, one host at a time; without a terminal there is nobody to ask."""
    if not sys.stdin.isatty():
        return None
    with _prompt_lock:
        return getpass.getpass(prompt)


def session_options(accept_new: bool, transport: str | None) -> SessionOptions:
    return SessionOptions(password=prompt_password, accept_new=accept_new, transport=transport)


def exit_code(results: Sequence[HostResult[Any]]) -> int:
    failed = sum(1 for r in results if r.error is not None)
    if not failed:
        return EXIT_OK
    return EXIT_ALL_FAILED if failed == len(results) else EXIT_PARTIAL


def error_rows(results: Sequence[HostResult[Any]]) -> list[tuple[str, str, str | None]]:
    return [(r.host.name, r.error.message, r.error.hint) for r in results if r.error is not None]


def error_dicts(results: Sequence[HostResult[Any]]) -> list[dict[str, Any]]:
    return [{"host": host, "error": message, "hint": hint} for host, message, hint in error_rows(results)]
