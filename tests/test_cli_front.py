"""The entry point's command table and global options: what it reads without typer, that the table
matches what the command modules declare, and that `--help` imports neither typer nor a command."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env

from esxcap.cli.main import COMMANDS, FrontRequest, front_help, read_front
from esxcap.ssh.transport import asyncssh_receive


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], FrontRequest("missing")),
        (["-h"], FrontRequest("help")),
        (["-i", "inv.yaml", "--help"], FrontRequest("help")),
        (["--version"], FrontRequest("version")),
        (["--version", "--verbose"], FrontRequest("version", verbose=True)),
        (["--verbose", "--version"], FrontRequest("version", verbose=True)),
        (["-i", "inv.yaml", "capture", "--help"], FrontRequest("run", "capture")),
        (["--inventory=inv.yaml", "discover"], FrontRequest("run", "discover")),
        (["-iinv.yaml", "hosts"], FrontRequest("run", "hosts")),
        (["-i", "inv.yaml", "--", "hosts"], FrontRequest("run", "hosts")),
    ],
)
def test_front_reads_global_options_up_to_the_command(args: list[str], expected: FrontRequest) -> None:
    assert read_front(args) == expected


def test_front_errors_name_the_word_and_the_next_step() -> None:
    typo = read_front(["captur", "--vm", "a"])
    assert typo.action == "error" and "captur" in (typo.message or "") and "'capture'" in (typo.hint or "")
    option = read_front(["--bogus", "capture"])
    assert option.action == "error" and "--bogus" in (option.message or "")
    late = read_front(["discover", "-i", "inv.yaml"])
    assert late.action == "error" and "global option" in (late.message or "")
    assert late.hint == "esxcap -i FILE discover ..."
    dangling = read_front(["-i"])
    assert dangling.action == "error" and "-i" in (dangling.message or "")
    no_command = read_front(["-i", "capture"])
    assert no_command.action == "error" and "-i took 'capture'" in (no_command.hint or "")


def _declared() -> dict[str, str]:
    """Every command typer knows once all command modules are imported, with its help text."""
    from esxcap.cli.common import app

    for module in {module for module, _ in COMMANDS.values()}:
        import_module(f"esxcap.{module}")
    declared = {
        (c.name or c.callback.__name__): c.callback.__doc__ or ""
        for c in app.registered_commands
        if c.callback is not None
    }
    for group in app.registered_groups:
        declared[str(group.name)] = str(group.typer_instance.info.help) if group.typer_instance else ""
    return declared


def test_command_table_matches_the_command_modules() -> None:
    declared = _declared()
    assert set(declared) == set(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        first_paragraph = " ".join(declared[name].strip().split("\n\n")[0].split())
        assert first_paragraph == summary, name


def test_each_command_module_declares_its_commands() -> None:
    """The front imports only the table's module for a command: that module alone must declare it."""
    code = (
        "import sys; from importlib import import_module; from esxcap.cli.main import COMMANDS;"
        "from esxcap.cli.common import app;"
        "import_module('esxcap.' + COMMANDS[sys.argv[1]][0]);"
        "names = {c.name or c.callback.__name__ for c in app.registered_commands};"
        "names |= {g.name for g in app.registered_groups};"
        "sys.exit(0 if sys.argv[1] in names else 1)"
    )
    for name in COMMANDS:
        assert subprocess.run([sys.executable, "-c", code, name], check=False).returncode == 0, name


def test_help_and_version_import_neither_typer_nor_a_command() -> None:
    code = (
        "import sys; from esxcap.cli.main import main\n"
        "for args in (['--help'], ['--version'], []):\n"
        "    sys.argv = ['esxcap', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in sys.modules if m.startswith('esxcap.cli_')\n"
        "         or m.split('.')[0] in ('typer', 'asyncio', 'asyncssh', 'yaml', 'rich')]\n"
        "print(heavy, file=sys.stderr); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_top_level_help_lists_every_command(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    result = esxcap("--help", env=env)
    assert result.code == 0 and result.stdout == front_help()
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name} " in result.stdout and summary in result.stdout
    bare = esxcap(env=env)
    assert bare.code == 2 and bare.stdout == front_help()
    missing = esxcap("-i", "inv.yaml", env=env)
    assert missing.code == 2 and "no command given" in missing.stderr


HELP_WITH_VALUES = [
    ("bundle",), ("merge",), ("find",), ("discover",), ("sim",), ("analyze",), ("recipe", "vm-to-vm"),
    ("recipe", "vmk"), ("recipe", "uplink"), ("extcap", "status"),
]  # fmt: skip


def test_help_names_values_never_python_types(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    for command in HELP_WITH_VALUES:
        shown = esxcap(*command, "--help", env=env)
        assert shown.code == 0, shown.stderr
        assert not re.search(r"<(str|int|float|path|list\[\w+\])>", shown.stdout, re.I), shown.stdout
    bundle = " ".join(esxcap("bundle", "--help", env=env).stdout.split())
    assert (
        "[CAPTURE]... " in bundle
        and "CAPTURE Capture files" in bundle
        and "https://HOST/PATH (credentials from" in bundle
    )
    assert "--attach URL" in bundle and "--split-size SIZE" in bundle
    assert "FILES pcap or pcapng files" in " ".join(esxcap("merge", "--help", env=env).stdout.split())
    verbose_first = esxcap("--verbose", "--version", env=env)
    assert verbose_first.code == 0 and "paramiko" in verbose_first.stdout


def test_unknown_command_and_option_exit_2_with_a_hint(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    typo = esxcap("discovr", env=env)
    assert typo.code == 2 and "discovr" in typo.stderr and "'discover'" in typo.stderr
    option = esxcap("--nope", "hosts", env=env)
    assert option.code == 2 and "--nope" in option.stderr


def test_global_inventory_option_reaches_the_command(tmp_path: Path) -> None:
    """`-i FILE` before the command is still honoured once typer takes over the whole line."""
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("hosts:\n  esx-front:\n    hostname: 10.9.9.9\n")
    result = esxcap("-i", str(inventory), "hosts", "--json", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    assert [h["name"] for h in result.json()["hosts"]] == ["esx-front"]


def test_inventory_mistakes_are_named(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    folder = esxcap("-i", str(tmp_path), "hosts", env=env)
    assert folder.code == 2 and "is a folder, not an inventory file" in folder.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("hosts: {}\n")
    nothing = esxcap("-i", str(empty), "hosts", env=env)
    assert nothing.code == 2 and f"inventory {empty} lists no hosts" in nothing.stderr
    late = esxcap("hosts", "-i", str(empty), env=env)
    assert late.code == 2 and "global option" in late.stderr and "esxcap -i FILE hosts" in late.stderr


def test_ctrl_c_stops_the_simulator_quietly(tmp_path: Path) -> None:
    import signal

    from polling import wait_until

    proc = subprocess.Popen(
        [sys.executable, "-m", "esxcap", "sim", "--state-dir", str(tmp_path / "state")],
        env=isolated_env(tmp_path),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert wait_until((tmp_path / "state" / "inventory.yaml").is_file, timeout=60)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "error" not in stderr, stderr


def test_version_verbose_says_whether_the_fast_receive_path_is_on(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    asyncssh, checked = version("asyncssh"), asyncssh_receive.CHECKED_VERSIONS
    default = esxcap("--version", "--verbose", env=env)
    assert default.code == 0 and default.stderr == ""
    lines = default.stdout.splitlines()
    assert lines[0] == esxcap("--version", env=env).stdout.strip()
    expected = (
        "active"
        if asyncssh in checked
        else f"off: asyncssh {asyncssh} is not a release it was checked against ({', '.join(checked)})"
    )
    assert f"asyncssh {asyncssh}: fast receive path {expected}" in lines
    assert f"paramiko {version('paramiko')}" in lines
    switched = esxcap("--version", "--verbose", env={**env, "ESXCAP_FAST_RECEIVE": "0"})
    assert (
        f"asyncssh {asyncssh}: fast receive path off: ESXCAP_FAST_RECEIVE=0" in switched.stdout.splitlines()
    )


def test_the_simulator_names_a_bad_state_folder_or_a_taken_port(tmp_path: Path) -> None:
    import socket

    env = isolated_env(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("")
    as_file = esxcap("sim", "--state-dir", str(afile), env=env, timeout=60)
    assert as_file.code == 2 and "is a file" in as_file.stderr and "Traceback" not in as_file.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = esxcap(
            "sim", "--state-dir", str(tmp_path / "s"), "--port-base", str(port), env=env, timeout=60
        )
    assert busy.code == 2 and "cannot listen" in busy.stderr and "Traceback" not in busy.stderr
