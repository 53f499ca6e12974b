"""The `esxcap` entry point: the global options and the command table, known without importing typer or
any command's module, so `esxcap --help` and `esxcap --version` answer at interpreter speed. The module
of the command asked for is imported only to run it; typer then parses the whole command line (global
options included).

Also the one place that maps errors to exit codes (`report`); the codes and the outcome -> code map are
`esxcap.cli.exitcodes`.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from importlib import import_module
from typing import NamedTuple

from esxcap import __version__
from esxcap.cli import INVENTORY_HELP, output
from esxcap.cli.exitcodes import ExitCode
from esxcap.errors import Cancelled, ConfigError, EsxcapError, UsageError

PROG = "esxcap"

COMMANDS: dict[str, tuple[str, str]] = {
    "hosts": (
        "cli.discover",
        "Show the resolved inventory: address, user, key and where passwords come from (never a password).",
    ),
    "discover": (
        "cli.discover",
        "Show VMs with their vNIC switch ports, vmknics, uplinks, switches and portgroups of each host.",
    ),
    "find": (
        "cli.discover",
        "Which host runs a VM, or owns a MAC or IP; every match is listed with its switch port.",
    ),
    "doctor": (
        "cli.doctor",
        "Self-check hosts once: what esxcap cannot know from here, as a report to paste into a bug.",
    ),
    "sim": (
        "cli.discover",
        "Serve simulated ESXi hosts on 127.0.0.1 until Ctrl-C, with a ready-to-use inventory.",
    ),
    "capture": (
        "cli.capture",
        "Capture packets on ESXi hosts: pktcap-uw streamed back over SSH into pcapng files, stopped safely.",
    ),
    "points": (
        "cli.capture",
        "List a host's pktcap-uw capture points (`pktcap-uw -A`, else the table for its ESXi version).",
    ),
    "cleanup": (
        "cli.capture",
        "Find leftover captures: stop the ones esxcap started; list others (stopped only with --all).",
    ),
    "merge": (
        "cli.merge",
        "Merge captures into one time-ordered pcapng, one interface per input interface.",
    ),
    "path": (
        "cli.path",
        "Each flow's packets through the capture points in order, per-hop latency, where they got lost.",
    ),
    "recipe": (
        "cli.recipe",
        "Capture plans for common questions (vm-to-vm, vmk, dvfilter, uplink); see them with --dry-run.",
    ),
    "bundle": (
        "cli.ticket",
        "Pack captures for a support ticket: archive, manifest.json, SHA256SUMS and README.txt.",
    ),
    "verify": ("cli.ticket", "Re-check a bundle's checksums and manifest; name what is missing or altered."),
    "attach": (
        "cli.ticket",
        "Upload an existing bundle (every part and its checksum list, when it was split) to a ticket.",
    ),
    "analyze": (
        "cli.ticket",
        "Summarise a capture with tshark's dissectors: interfaces, protocols, conversations, problems.",
    ),
    "extcap": (
        "cli.extcap_install",
        "Install esxcap as a Wireshark extcap: every inventory host in Wireshark's interface list.",
    ),
}
"""Command name -> (module under esxcap that defines it, one-line summary as in its own --help)."""

INVENTORY_OPTIONS = ("-i", "--inventory")
HELP_OPTIONS = ("-h", "--help")


class FrontRequest(NamedTuple):
    """What the command line asks of the entry point: `help` (asked for), `missing` (no command given),
    `version`, `run` a command, or `error`."""

    action: str
    command: str | None = None
    message: str | None = None
    hint: str | None = None
    verbose: bool = False


def read_front(args: list[str]) -> FrontRequest:
    """Walk the global options up to the command name; the rest of the line is the command's."""
    position, inventory = 0, None
    while position < len(args):
        arg = args[position]
        if arg in HELP_OPTIONS:
            return FrontRequest("help")
        if arg == "--version" or (arg == "--verbose" and "--version" in args[position + 1 :]):
            return FrontRequest("version", verbose="--verbose" in args[position:])
        if arg in INVENTORY_OPTIONS:
            if position + 1 >= len(args):
                return FrontRequest("error", message=f"option {arg} needs a value", hint="-i FILE")
            inventory = args[position + 1]
            position += 2
            continue
        if arg.startswith("--inventory=") or (arg.startswith("-i") and not arg.startswith("--")):
            position += 1
            continue
        if arg == "--" and position + 1 < len(args):
            arg = args[position + 1]
        elif arg.startswith("--extcap-"):
            return FrontRequest(
                "error",
                message=f"{arg} is Wireshark's: the extcap runs as python -m esxcap.cli.extcap",
                hint=f"{PROG} extcap install puts it where Wireshark looks",
            )
        elif arg.startswith("-"):
            return FrontRequest("error", message=f"no such option: {arg}", hint=f"{PROG} --help lists them")
        if arg not in COMMANDS:
            return FrontRequest("error", message=f"no such command: {arg}", hint=_suggest(arg))
        late = next(
            (a for a in args[position + 1 :] if a in INVENTORY_OPTIONS or a.startswith("--inventory=")), None
        )
        if late is not None:
            return FrontRequest(
                "error",
                message=f"{late} is a global option: it goes before the command",
                hint=f"{PROG} -i FILE {arg} ...",
            )
        return FrontRequest("run", command=arg)
    if not args:
        return FrontRequest("missing")
    taken = f"-i took '{inventory}' as the inventory file; " if inventory in COMMANDS else ""
    return FrontRequest("error", message="no command given", hint=f"{taken}{PROG} --help lists the commands")


def _suggest(name: str) -> str:
    from difflib import get_close_matches

    close = get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}{PROG} --help lists the commands"


def front_help() -> str:
    """The top-level help: usage, global options and every command with its summary."""
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (
        f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]...\n\n"
        "  Packet captures on VMware ESXi hosts over SSH.\n\n"
        "Options:\n"
        f"  -i, --inventory <path>  {INVENTORY_HELP}\n"
        "  --version [--verbose]   Print the version (--verbose: and the SSH libraries' state).\n"
        "  -h, --help              Show this message and exit.\n\n"
        f"Commands:\n{commands}\n\n"
        f"Each command has its own help: {PROG} COMMAND --help\n"
    )


def library_versions() -> str:
    """The SSH libraries esxcap runs on and whether asyncssh's fast receive path is in use; imports them."""
    from importlib.metadata import version

    quiet_library_warnings()
    from esxcap.ssh.transport.liboqs_lookup import liboqs_lookup_without_subprocess

    with liboqs_lookup_without_subprocess():
        from esxcap.ssh.transport import asyncssh_receive

    return (
        f"python {sys.version.split()[0]}\n{asyncssh_receive.state()}\n"
        f"paramiko {version('paramiko')}\ncryptography {version('cryptography')}\n"
    )


def quiet_library_warnings() -> None:
    """Silence the library deprecation notices an admin cannot act on; they would land between our own
    messages. ESXi 5.5/6.0 hosts only speak finite-field Diffie-Hellman; cryptography 51 deprecates DSA,
    which asyncssh still names as it loads (it never uses DSA keys unless asked to)."""
    warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields")
    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")


def report(error: EsxcapError) -> int:
    """Show an error that ended a command and give its exit code: 2 for usage/config, 5 for a
    confirmation answered no, else 1."""
    if isinstance(error, Cancelled):
        output.info(f"cancelled: {error.message}" + (f" ({error.hint})" if error.hint else ""))
        return ExitCode.CANCELLED
    output.error(error.message, error.hint)
    return ExitCode.USAGE if isinstance(error, UsageError | ConfigError) else ExitCode.ALL_FAILED


def _undo_ignored_sigchld() -> None:
    """Children of a process that ignores SIGCHLD cannot be waited for: asyncio would report every local
    tool it runs (tshark for analysis, viewers) as failed with status 255."""
    if hasattr(signal, "SIGCHLD") and signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def main() -> None:
    try:
        _run_command_line()
    except (BrokenPipeError, output.StdoutClosed):
        _stdout_closed()


def _run_command_line() -> None:
    request = read_front(sys.argv[1:])
    if request.action in ("help", "missing"):
        output.text(front_help())
        sys.exit(ExitCode.OK if request.action == "help" else ExitCode.USAGE)
    if request.action == "version":
        output.text(f"{PROG} {__version__}\n" + (library_versions() if request.verbose else ""))
        sys.exit(ExitCode.OK)
    if request.action == "error":
        sys.exit(report(UsageError(request.message or "", request.hint)))
    _undo_ignored_sigchld()
    quiet_library_warnings()
    module, _ = COMMANDS[request.command or ""]
    import_module(f"esxcap.{module}")
    from typer.main import get_command

    from esxcap.cli import coercion
    from esxcap.cli.common import app, plain_help

    coercion.install()

    try:
        plain_help(get_command(app))(prog_name=PROG)
    except EsxcapError as error:
        sys.exit(report(error))


def _stdout_closed() -> None:
    """The reader of stdout (`| head`, a closed viewer) went away: what it wanted it has; end quietly
    (exit 0), with nothing more written to the closed pipe, not even at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(ExitCode.OK)
