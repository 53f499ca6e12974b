"""esxcap as a Wireshark extcap: `python -m esxcap.cli.extcap ARGS`, run by the launcher that `esxcap extcap
install` writes into Wireshark's extcap folder (the `esxcap` front refuses `--extcap-*` options).

Wireshark calls it with `--extcap-interfaces`, `--extcap-dlts`, `--extcap-config` (those three answer from
the inventory and the discovery cache, without SSH), `--extcap-config --extcap-reload-option target` (a
live discovery of that one host) and `--capture --fifo PATH` (the capture pipeline writing pcapng into the
FIFO until Wireshark sends SIGINT or SIGTERM, or closes the FIFO). Arguments are read tolerantly: options
a newer Wireshark adds are ignored. Errors are one line each on stderr, which Wireshark shows in a dialog;
nothing else is written there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from esxcap.cli import output
from esxcap.cli.exitcodes import ExitCode
from esxcap.cli.extcap_dialog import (
    FLOW_FILTERS,
    TARGET_OPTION,
    Interface,
    config_lines,
    dlt_lines,
    interface_lines,
    interfaces,
    target_lines,
)
from esxcap.cli.main import report
from esxcap.errors import ConfigError, EsxcapError, UsageError
from esxcap.inventory import Inventory, find_inventory, load_inventory
from esxcap.ssh.discovery_cache import cache_dir, load


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"extcap arguments: {message}", "reinstall with esxcap extcap install")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="esxcap-extcap", add_help=False, allow_abbrev=False)
    for flag in ("--extcap-interfaces", "--extcap-dlts", "--extcap-config", "--capture"):
        parser.add_argument(flag, action="store_true")
    for option in ("--extcap-version", "--extcap-interface", "--extcap-reload-option", "--fifo"):
        parser.add_argument(option)
    parser.add_argument("--extcap-capture-filter", default="")
    parser.add_argument(f"--{TARGET_OPTION}", default="")
    parser.add_argument("--point", action="append", default=[])
    parser.add_argument("--dir", default="")
    for call, _label in FLOW_FILTERS:
        parser.add_argument(f"--{call}", default="")
    for option in ("--count", "--duration", "--max-bytes", "--snaplen", "--also-save"):
        parser.add_argument(option, default="")
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Wireshark's arguments; options this version does not know are left out."""
    args, _unknown = _parser().parse_known_args(list(argv))
    return args


def load_extcap_inventory() -> Inventory:
    inventory = load_inventory(find_inventory(None, os.environ, Path.cwd(), Path.home()))
    if not inventory.hosts and not inventory.recipes:
        raise ConfigError(
            "no inventory for the esxcap extcap",
            "install it with an inventory: esxcap -i INVENTORY.yaml extcap install",
        )
    return inventory


def _interface(inventory: Inventory, name: str | None) -> Interface:
    found = interfaces(inventory).get(name or "")
    if found is None:
        raise UsageError(
            f"no esxcap interface {name!r} in {inventory.path}",
            "restart Wireshark to list the inventory's hosts again",
        )
    return found


def _show(lines: Sequence[str]) -> None:
    output.text("".join(line + "\n" for line in lines))


def run(argv: Sequence[str]) -> int:
    """Answer one call from Wireshark; returns the exit code."""
    args = parse(argv)
    inventory = load_extcap_inventory()
    if args.extcap_interfaces:
        _show(interface_lines(inventory))
        return ExitCode.OK
    interface = _interface(inventory, args.extcap_interface)
    folder = cache_dir(os.environ, Path.home())
    cached = load(folder, interface.host.name) if interface.host else None
    if args.extcap_dlts:
        _show(dlt_lines(interface))
    elif args.extcap_config and args.extcap_reload_option:
        if args.extcap_reload_option != TARGET_OPTION or interface.host is None:
            return ExitCode.OK
        from esxcap.cli.extcap_capture import rediscover

        _show(target_lines(rediscover(interface.host, folder)))
    elif args.extcap_config:
        _show(config_lines(interface, cached))
    elif args.capture:
        if not args.fifo:
            raise UsageError("--capture needs --fifo PATH", "start the capture from Wireshark")
        from esxcap.cli.extcap_capture import capture_into

        return capture_into(Path(args.fifo), interface, args, folder)
    else:
        raise UsageError(
            "nothing asked: give --extcap-interfaces, --extcap-config or --capture",
            "Wireshark runs this; install it with esxcap extcap install",
        )
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> None:
    import warnings

    warnings.simplefilter("ignore")  # Wireshark shows every stderr line as an error
    output.errors_only()
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except EsxcapError as error:
        code = report(error)
    sys.exit(code)


if __name__ == "__main__":
    main()
