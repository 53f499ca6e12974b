"""What every esxcap command shares: the typer app, common options, inventory and host selection, the
password prompt, and the exit code of a per-host result list (the codes themselves are in `esxcap.cli.main`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import inspect
import os
import sys
import threading
import typing
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from esxcap.cli import INVENTORY_HELP, output
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.errors import ConfigError
from esxcap.inventory import HostConfig, Inventory, find_inventory, load_inventory
from esxcap.ssh.session import HostResult, SessionOptions
from esxcap.ssh.transport.passwords import Passwords

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

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
HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--host", "-H", help="Host to work on (repeatable), as the arguments name them.", metavar="HOST"
    ),
]
"""`--host`/`-H` beside the HOST arguments, as `capture` and the recipes take it."""


def named_hosts(arguments: list[str] | None, options: list[str] | None) -> list[str] | None:
    """The hosts named as arguments and with --host/-H, in order; None when none was."""
    return [*(arguments or ()), *(options or ())] or None


GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Only the hosts of this inventory group.", metavar="GROUP")
]
ParallelOpt = Annotated[int, typer.Option("--parallel", "-P", help="Hosts contacted at once.", metavar="N")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
AcceptNewOpt = Annotated[
    bool,
    typer.Option("--accept-new", help="Record host keys not seen before (a changed key is always refused)."),
]
TransportOpt = Annotated[
    str | None,
    typer.Option(
        "--transport", help="SSH library: asyncssh (default) or paramiko.", metavar="asyncssh|paramiko"
    ),
]
SamePasswordOpt = Annotated[
    bool,
    typer.Option(
        "--same-password",
        help="Ask once for one password for every host without password_env (a host that rejects it "
        "is not asked again: ESXi locks accounts after a few failures).",
    ),
]


def run_job(job: Callable[[], Coroutine[Any, Any, int]], until_interrupted: bool = False) -> None:
    """Run one command's job (its esxcap errors reach `cli.main`); Ctrl-C outside a capture exits 130,
    or 0 for a job that runs until interrupted (the simulator)."""
    try:
        code = asyncio.run(job())
    except KeyboardInterrupt:
        if until_interrupted:
            raise typer.Exit(ExitCode.OK) from None
        output.error("interrupted")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
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


def plain_help(command: Any) -> Any:
    """`command` (a click command from typer, its subcommands too) with help that names values (HOST,
    FILES, N, PATH) and never shows Python types: typer prints `<list[Path]>` or `<str>` for a parameter
    without a metavar, and beside an argument's metavar too."""
    from typer.core import TyperArgument, TyperOption

    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or str(param.name).upper()
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010 - this instance only
        elif isinstance(param, TyperOption) and param.metavar is None and not (param.is_flag or param.count):
            kind = param.bare_type()
            param.metavar = {"int": "N", "float": "N", "Path": "PATH"}.get(kind, str(param.name).upper())
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


class OptionGroup:
    """Marker base of the option groups (frozen dataclasses whose fields carry their typer option and
    whose `__post_init__` validates them) that `grouped` expands."""


def grouped(command: F) -> F:
    """Expand each parameter annotated with an `OptionGroup` into the group's options (after the
    command's own options, in the order the groups are declared) and call `command` with one validated
    group object per such parameter."""
    signature = inspect.signature(command, eval_str=True)
    own: list[inspect.Parameter] = []
    expanded: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[Any], list[str]]] = {}
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if isinstance(group, type) and issubclass(group, OptionGroup):
            hints = typing.get_type_hints(group, include_extras=True)
            fields = dataclasses.fields(typing.cast(Any, group))
            groups[parameter.name] = (group, [f.name for f in fields])
            expanded += [
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name], default=f.default
                )
                for f in fields
            ]
        else:
            own.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def with_groups(**kwargs: Any) -> Any:
        for name, (group, names) in groups.items():
            kwargs[name] = group(**{n: kwargs.pop(n) for n in names})
        return command(**kwargs)

    with_groups.__signature__ = signature.replace(parameters=own + expanded)  # type: ignore[attr-defined]
    return typing.cast(F, with_groups)


@dataclass(frozen=True)
class Connect(OptionGroup):
    """How to reach the hosts."""

    accept_new: AcceptNewOpt = False
    transport: TransportOpt = None
    same_password: SamePasswordOpt = False

    @functools.cached_property
    def passwords(self) -> Passwords:
        """The command's one set of passwords: each asked once, none sent twice to a host."""
        return Passwords(prompt_password, same_password=self.same_password)

    def session(self) -> SessionOptions:
        return SessionOptions(password=self.passwords, accept_new=self.accept_new, transport=self.transport)


def exit_code(results: Sequence[HostResult[Any]]) -> int:
    """The exit code of a job run on every host."""
    return outcome_code(sum(1 for r in results if r.error is not None), len(results))


def error_rows(results: Sequence[HostResult[Any]]) -> list[tuple[str, str, str | None]]:
    return [(r.host.name, r.error.message, r.error.hint) for r in results if r.error is not None]


def error_dicts(results: Sequence[HostResult[Any]]) -> list[dict[str, Any]]:
    return [{"host": host, "error": message, "hint": hint} for host, message, hint in error_rows(results)]
