"""Quoting argv for the remote shell, and splitting a batch's output back per command."""

from __future__ import annotations

import shlex
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.esxi.remote import Batch, command_line

HOSTILE = [
    "evil$(touch /tmp/x);x",
    "a'b\"c",
    "`id`",
    "; rm -rf /",
    "データベース01",
    "tab\there",
    "new\nline",
    "",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=6))
def test_command_line_round_trips_through_posix_splitting(argv: list[str]) -> None:
    assert shlex.split(command_line(argv)) == argv


def test_hostile_values_reach_a_real_shell_as_data(tmp_path) -> None:
    # /bin/sh receives the quoted line and prints each argument back; nothing runs.
    argv = ["printf", r"%s\0", *HOSTILE]
    out = subprocess.run(["sh", "-c", command_line(argv)], cwd=tmp_path, capture_output=True, check=True)
    assert out.stdout.decode().split("\0")[:-1] == HOSTILE
    assert list(tmp_path.iterdir()) == []


def test_batch_runs_in_a_real_shell_and_splits_per_command() -> None:
    batch = Batch(
        (("echo", "one two"), ("sh", "-c", "echo err >&2; exit 3"), ("printf", "%s", "no newline")), "abc123"
    )
    out = subprocess.run(batch.argv(), capture_output=True, check=True).stdout.decode()
    assert batch.split(out) == [("one two\n", 0), ("err\n", 3), ("no newline", 0)]


def test_batch_reports_a_missing_marker_as_unfinished() -> None:
    batch = Batch((("a",), ("b",)), "tok")
    text = f"out a\n{batch.marker(0)} 0\npartial b"
    assert batch.split(text) == [("out a\n", 0), ("partial b", None)]


def test_output_cannot_fake_a_marker_without_the_token() -> None:
    batch = Batch((("a",), ("b",)), "realtoken")
    text = f"ESXCAP-faketoken-1 0\n{batch.marker(0)} 0\nB\n{batch.marker(1)} 0\n"
    assert batch.split(text) == [("ESXCAP-faketoken-1 0\n", 0), ("B\n", 0)]
