"""Exit codes agree across commands (esxcap.cli.exitcodes): a closed stdout reader is no failure (0), a
key file that is not there and a file that is no capture are the command's input errors (2), a VM that is
nowhere is 2 for `find` as for `capture`, and a confirmation answered no is "cancelled" (5)."""

from __future__ import annotations

import json
import os
import pty
from pathlib import Path

import pytest
import yaml
from clirun import CliResult, esxcap, isolated_env

from esxcap.cli.exitcodes import ExitCode
from esxcap.pcap import CaptureFile


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def into_closed_pipe(*args: str, env: dict[str, str]) -> CliResult:
    """The CLI with a stdout whose reader is gone (`| head` after its lines): every write meets EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return esxcap(*args, env=env, stdout=write_end)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args", [("discover",), ("discover", "--json"), ("find", "web*"), ("hosts",), ("--version",)]
)
def test_a_closed_stdout_ends_quietly_with_exit_0(running, env, args: tuple[str, ...]) -> None:
    result = into_closed_pipe("-i", str(running.sim.inventory_path), *args, env=env)
    assert (result.code, result.stderr) == (ExitCode.OK, ""), result.stderr


def test_console_lines_into_a_closed_pipe_stop_the_capture_with_complete_files(
    running, env, tmp_path
) -> None:
    out = tmp_path / "c.pcapng"
    result = into_closed_pipe(
        "-i", str(running.sim.inventory_path), "capture", "--vm", "web02", "-d", "20", "--console",
        "-o", str(out), env=env,
    )  # fmt: skip
    assert (result.code, result.stderr) == (ExitCode.OK, ""), result.stderr
    sidecar = json.loads(out.with_name("c.pcapng.json").read_text())
    assert sidecar["options"]["stop_reason"] == "output-closed"
    with out.open("rb") as handle:
        assert sidecar["packets"] == sum(1 for _ in CaptureFile(handle, out.name)) > 0


def test_an_identity_file_that_is_not_there_is_a_configuration_error(running, env, tmp_path) -> None:
    data = yaml.safe_load(running.sim.inventory_path.read_text())
    data["defaults"]["identity_file"] = str(tmp_path / "no-such-key")
    data["defaults"]["known_hosts"] = str(running.sim.state_dir / "known_hosts")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    for command in (("discover",), ("capture", "--vm", "web02", "-c", "1", "-o", str(tmp_path))):
        result = esxcap("-i", str(inventory), *command, env=env)
        assert result.code == ExitCode.USAGE, result.stderr
        assert f"identity_file {tmp_path / 'no-such-key'} does not exist" in result.stderr
    assert not list(tmp_path.glob("*.pcapng*"))


def test_merge_names_the_file_that_is_no_capture(env, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    result = esxcap("merge", str(notes), "-o", str(tmp_path / "m.pcapng"), env=env)
    assert result.code == ExitCode.USAGE and f"{notes} is not a pcap or pcapng file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".cache") == ["notes.txt"]


def answered(answer: str, *args: str, env: dict[str, str]) -> CliResult:
    """The CLI on a terminal (its stdin a pty) where the admin types `answer` to its question."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        return esxcap(*args, env=env, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


def test_no_to_a_confirmation_is_cancelled_not_a_usage_error(running, env, tmp_path) -> None:
    result = answered(
        "n", "-i", str(running.sim.inventory_path), "capture", "--vm", "web*", "--many", "-c", "1",
        "-o", str(tmp_path), env=env,
    )  # fmt: skip
    assert result.code == ExitCode.CANCELLED, result.stderr
    assert "cancelled: nothing captured" in result.stderr and "error" not in result.stderr
    assert not list(tmp_path.glob("*.pcapng*"))
