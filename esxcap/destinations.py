"""Where a capture's packets go (`-o FILE`, `-o DIR`, `-o -`, `--live`) and what each file is called.

Default: one pcapng per host and target in ./captures, named `<UTC time>-<host>-<target>.pcapng`.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from esxcap import __version__, output
from esxcap.errors import UsageError
from esxcap.pcap import Record
from esxcap.plan import Stream
from esxcap.remote import command_line
from esxcap.sinks import CaptureSink

DEFAULT_DIR = Path("captures")
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class OutputChoice:
    """The user's -o/--live choice: a file, a directory, stdout, or a live viewer."""

    file: Path | None = None
    directory: Path | None = None
    stdout: bool = False
    live: bool = False

    @property
    def paths(self) -> bool:
        return self.file is not None or self.directory is not None


def choose_output(out: str | None, live: bool, stdout_is_tty: bool) -> OutputChoice:
    """Check -o/--live and say where packets go."""
    if live:
        if out is not None:
            raise UsageError("--live shows the stream in a viewer; it takes no -o", "drop -o, or drop --live")
        return OutputChoice(live=True)
    if out == "-":
        if stdout_is_tty:
            raise UsageError(
                "refusing to write a binary capture to the terminal",
                "pipe it (esxcap capture ... -o - | wireshark -k -i -) or write a file with -o FILE",
            )
        return OutputChoice(stdout=True)
    if out is None:
        return OutputChoice(directory=DEFAULT_DIR)
    path = Path(out).expanduser()
    if out.endswith(("/", "\\")) or path.is_dir():
        return OutputChoice(directory=path)
    return OutputChoice(file=path)


def safe_name(text: str) -> str:
    """A file-name-safe form of a host or target label (letters of any script are kept)."""
    return _UNSAFE.sub("_", text).strip("_") or "capture"


def section_comments(planned: Sequence[Stream], started: float) -> list[str]:
    """The pcapng section comment: which tool, who ran it, when, and the exact remote commands."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    from esxcap.metadata import operator

    lines = [
        f"esxcap {__version__} capture started {stamp} by {operator()}",
        "remote commands (each under esxcap's stop-safe wrapper):",
    ]
    lines += [f"{s.target.host}: {command_line(s.argv)}" for s in planned]
    return ["\n".join(lines)]


class ConsoleView:
    """`--console`/`--hex`: one line per packet as it is written (tshark's summary when tshark is
    installed, the built-in one otherwise), on stdout, or stderr when stdout carries the capture."""

    def __init__(self, hexdump: bool, to_stderr: bool) -> None:
        from esxcap.viewers import TsharkSummarizer, find_tshark

        self._summarizer = TsharkSummarizer(find_tshark(), hex_dump=hexdump)
        self._to_stderr = to_stderr
        self._seen = 0

    def __call__(self, name: str, record: Record) -> None:
        self._seen += 1
        self._summarizer.feed(record, name.replace(":", " "), self._seen)
        self._show()

    def _show(self) -> None:
        for line in self._summarizer.ready():
            output.packet(line, self._to_stderr)

    def close(self) -> None:
        self._summarizer.close()
        self._show()


@dataclass
class Outputs:
    """The sinks of one capture (streams of one file share a sink), plus a live viewer and console view."""

    sinks: list[CaptureSink]
    viewer: subprocess.Popen[bytes] | None = None
    console: ConsoleView | None = None

    def close(self) -> None:
        if self.viewer is not None and self.viewer.stdin is not None:
            with contextlib.suppress(OSError):
                self.viewer.stdin.close()
        if self.console is not None:
            self.console.close()


def sinks_for(
    planned: Sequence[Stream],
    choice: OutputChoice,
    started: float,
    max_bytes: int | None,
    console: bool,
    hexdump: bool,
) -> Outputs:
    """One sink per stream (streams of one file share it), the live viewer and the console view."""
    comments = section_comments(planned, started)
    view = ConsoleView(hexdump, to_stderr=choice.stdout) if console or hexdump else None
    if choice.stdout or choice.live:
        viewer = None
        sink_to: IO[bytes] | None = sys.stdout.buffer
        if choice.live:
            from esxcap.viewers import live_viewer_command, start_viewer

            viewer = start_viewer(live_viewer_command())
            sink_to = viewer.stdin
        assert sink_to is not None
        shared = CaptureSink(sink_to, comments, max_bytes, view, flush_each=True)
        return Outputs([shared] * len(planned), viewer, view)
    if choice.file is not None:
        return Outputs([CaptureSink(choice.file, comments, max_bytes, view)] * len(planned), None, view)
    assert choice.directory is not None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    by_target: dict[tuple[str, str], CaptureSink] = {}
    sinks = []
    for stream in planned:
        key = (stream.target.host, stream.target.label)
        if key not in by_target:
            name = f"{stamp}-{safe_name(key[0])}-{safe_name(key[1])}.pcapng"
            by_target[key] = CaptureSink(choice.directory / name, comments, max_bytes, view)
        sinks.append(by_target[key])
    return Outputs(sinks, None, view)
