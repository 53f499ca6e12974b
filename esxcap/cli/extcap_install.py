"""`esxcap extcap install | uninstall | status`: put esxcap into Wireshark's interface list.

`install` writes a small launcher into Wireshark's personal extcap folder that runs this esxcap's
interpreter with `-m esxcap.cli.extcap` and the inventory in use now. The folder is `--wireshark-dir`, else
what `tshark -G folders` names (`Personal Extcap path`, Wireshark 4.2+; `Personal configuration`/extcap
before), else `~/.local/lib/wireshark/extcap` (`%APPDATA%\\Wireshark\\extcap` with a `.bat` on Windows).
`install` remembers the folder it wrote into ($XDG_CONFIG_HOME/esxcap/extcap-folder, else
~/.config/esxcap/extcap-folder), so that `status` and `uninstall` find the launcher without being told
again. `status` says whether tshark lists the interfaces (`tshark -D`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from esxcap.cli import output
from esxcap.cli.common import app, state
from esxcap.cli.exitcodes import ExitCode
from esxcap.cli.extcap_dialog import HOST_PREFIX
from esxcap.errors import ConfigError, UsageError
from esxcap.inventory import find_inventory

MARK = "esxcap extcap launcher"
"""Written into every launcher: uninstall removes only files that carry it."""
TSHARK_TIMEOUT_S = 60

extcap_app = typer.Typer(
    help="Install esxcap as a Wireshark extcap: every inventory host in Wireshark's interface list.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(extcap_app, name="extcap")

DirOpt = Annotated[
    Path | None,
    typer.Option("--wireshark-dir", help="Wireshark's extcap folder; default: asked of tshark -G folders."),
]


def launcher_name(windows: bool) -> str:
    return "esxcap.bat" if windows else "esxcap"


def launcher_text(python: str, inventory: Path | None, windows: bool) -> str:
    """The launcher script: this interpreter, the extcap module, the inventory pinned."""
    if windows:
        lines = ["@echo off", f"rem {MARK}: Wireshark runs esxcap through this (esxcap extcap install)"]
        if inventory is not None:
            lines.append(f'set "ESXCAP_INVENTORY={inventory}"')
        lines.append(f'"{python}" -m esxcap.cli.extcap %*')
        return "\r\n".join(lines) + "\r\n"
    lines = ["#!/bin/sh", f"# {MARK}: Wireshark runs esxcap through this (esxcap extcap install)"]
    if inventory is not None:
        lines += [f"ESXCAP_INVENTORY={shlex.quote(str(inventory))}", "export ESXCAP_INVENTORY"]
    lines.append(f'exec {shlex.quote(python)} -m esxcap.cli.extcap "$@"')
    return "\n".join(lines) + "\n"


def folder_from_tshark(folders: str) -> Path | None:
    """The personal extcap folder in `tshark -G folders` output (4.2+), else the personal configuration
    folder's `extcap` (where 4.0 and 4.1 look)."""
    fields: dict[str, str] = {}
    for line in folders.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().casefold(), value.strip())
    if "personal extcap path" in fields:
        return Path(fields["personal extcap path"])
    if "personal configuration" in fields:
        return Path(fields["personal configuration"]) / "extcap"
    return None


def default_folder(env: Mapping[str, str], home: Path, windows: bool) -> Path:
    if windows and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "Wireshark" / "extcap"
    return home / ".local" / "lib" / "wireshark" / "extcap"


def _tshark(*args: str) -> subprocess.CompletedProcess[str] | None:
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    try:
        return subprocess.run(
            [tshark, *args], capture_output=True, text=True, timeout=TSHARK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _record(env: Mapping[str, str], home: Path) -> Path:
    """Where `install` notes the folder it wrote into."""
    config = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    return config / "esxcap" / "extcap-folder"


def _remembered() -> Path | None:
    try:
        text = _record(os.environ, Path.home()).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


def _remember(folder: Path | None) -> None:
    """Note the folder `install` wrote into (None: forget it); a failure only costs the note."""
    record = _record(os.environ, Path.home())
    try:
        if folder is None:
            record.unlink(missing_ok=True)
            return
        record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".esxcap-", dir=record.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{folder}\n")
        os.replace(temporary, record)
    except OSError as exc:
        output.warning(f"cannot note the extcap folder in {record}: {exc.strerror or exc}")


def extcap_folder(given: Path | None, remembered: bool = False) -> tuple[Path, str]:
    """The folder to use and how it was chosen (`remembered`: the one `install` last wrote into comes
    before tshark's answer)."""
    if given is not None:
        return given.expanduser().absolute(), "--wireshark-dir"
    noted = _remembered() if remembered else None
    if noted is not None:
        return noted, f"where install put it (noted in {_record(os.environ, Path.home())})"
    answer = _tshark("-G", "folders")
    found = folder_from_tshark(answer.stdout) if answer and answer.returncode == 0 else None
    if found is not None:
        return found, "tshark -G folders"
    return default_folder(os.environ, Path.home(), os.name == "nt"), "the default (no tshark to ask)"


def _is_ours(path: Path) -> bool:
    try:
        return MARK in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


@extcap_app.command()
def install(wireshark_dir: DirOpt = None) -> None:
    """Write the launcher into Wireshark's extcap folder (restart Wireshark to see the interfaces)."""
    inventory = find_inventory(state.inventory_path, os.environ, Path.cwd(), Path.home())
    if inventory is None:
        raise ConfigError(
            "no inventory to show in Wireshark",
            "name one: esxcap -i INVENTORY.yaml extcap install (see inventory.example.yaml)",
        )
    folder, how = extcap_folder(wireshark_dir)
    windows = os.name == "nt"
    path = folder / launcher_name(windows)
    if path.exists() and not _is_ours(path):
        raise UsageError(
            f"{path} exists and is not an esxcap launcher", "move it away, or choose --wireshark-dir"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".esxcap-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(launcher_text(sys.executable, inventory.resolve(), windows))
        os.chmod(temporary, 0o700)
        os.replace(temporary, path)
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", "choose another --wireshark-dir"
        ) from exc
    _remember(folder)
    output.info(f"installed {path} (folder from {how}), inventory {inventory.resolve()}")
    output.info("restart Wireshark; check with: esxcap extcap status")


@extcap_app.command()
def uninstall(wireshark_dir: DirOpt = None) -> None:
    """Remove the launcher that `install` wrote."""
    folder, how = extcap_folder(wireshark_dir, remembered=True)
    path = folder / launcher_name(os.name == "nt")
    if not path.exists():
        output.info(f"nothing to remove: no launcher at {path} (folder from {how})")
        return
    if not _is_ours(path):
        raise UsageError(
            f"{path} is not an esxcap launcher; it is left alone", "remove it yourself if unwanted"
        )
    path.unlink()
    if folder == _remembered():
        _remember(None)
    output.info(f"removed {path}")


@extcap_app.command()
def status(wireshark_dir: DirOpt = None) -> None:
    """Where the launcher is, and whether tshark lists esxcap's interfaces."""
    folder, how = extcap_folder(wireshark_dir, remembered=True)
    path = folder / launcher_name(os.name == "nt")
    installed = path.exists() and _is_ours(path)
    output.text(f"launcher: {path} ({'installed' if installed else 'not installed'}; folder from {how})\n")
    listing = _tshark("-D")
    if listing is None:
        output.text("tshark: not found, cannot ask which interfaces Wireshark sees\n")
        raise typer.Exit(ExitCode.OK if installed else ExitCode.ALL_FAILED)
    seen = [line.strip() for line in listing.stdout.splitlines() if f". {HOST_PREFIX}" in line]
    output.text(f"tshark -D lists {len(seen)} esxcap interface(s)\n" + "".join(f"  {s}\n" for s in seen))
    raise typer.Exit(ExitCode.OK if installed and seen else ExitCode.ALL_FAILED)
