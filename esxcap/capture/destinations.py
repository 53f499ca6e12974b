"""Where a capture's packets go (`-o FILE`, `-o DIR`, `-o -`, `--live`) and what each file is called.

Every capture writes ONE pcapng, all its streams merged into one timeline while they stream (each
stream an interface; the sinks' reorder window, 1 s, puts them in time order): by default in ./captures,
named `<UTC time>-<host>-<target>.pcapng` for one target, `<UTC time>-<name>.pcapng` for several
(`merged-<H>hosts-<S>streams` unless a recipe names it). `--split` also keeps one file per stream,
written from the merged file when the capture ends (`<merged name>-<host>-<target>-<point>.pcapng`).
`-o` naming a FIFO or character device (Wireshark's extcap FIFO, /dev/null) writes straight into it, like
a stream: no `.part`, no rename, no chmod, no sidecar. `--ring` writes segments named after that file
(esxcap.capture.ring; with --split one ring per stream, no merged ring) and one sidecar `<base>.json`.
`--live` alone streams into the viewer; with `-o FILE`, `-o DIR` or `--ring` the files are written as
usual and the viewer gets the same packets (esxcap.capture.tee).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, cast

from esxcap import __version__
from esxcap.capture.files import check_destination, check_folder, create_part, place
from esxcap.capture.ring import Ring, RingSpec, check_free_space, ring_base
from esxcap.capture.ringpick import find_rings
from esxcap.capture.sinks import CaptureSink, CopyingStream, open_stream_file, stream_file_kind
from esxcap.capture.tee import BlockWriter, ViewerFeed, ViewerTee
from esxcap.errors import UsageError
from esxcap.esxi.remote import command_line
from esxcap.pcap import CaptureFile, PcapngWriter, Record
from esxcap.plan.planner import Stream

DEFAULT_DIR = Path("captures")
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class OutputChoice:
    """The user's -o/--live choice: a file, a directory, stdout, a live viewer, or a FIFO or character
    device (`device`) written as a stream."""

    file: Path | None = None
    directory: Path | None = None
    stdout: bool = False
    live: bool = False
    split: bool = False
    device: Path | None = None
    copy: Path | None = None
    """With `device`: a file that also gets everything written into it (the extcap's "also save to")."""
    force: bool = False
    ring: RingSpec | None = None
    """--ring: segments named after the file (without its suffix) or, in a directory, the capture."""

    @property
    def paths(self) -> bool:
        return self.file is not None or self.directory is not None


def choose_output(
    out: str | None,
    live: bool,
    stdout_is_tty: bool,
    split: bool = False,
    path: bool = False,
    force: bool = False,
    ring: RingSpec | None = None,
) -> OutputChoice:
    """Check -o/--live/--split/--path/--force/--ring and say where packets go; a file or folder that
    cannot be written (or lacks the ring's space) is refused now, before anything connects."""
    device = Path(out).expanduser() if out not in (None, "-") else None
    if device is not None and stream_file_kind(device) is None:
        device = None
    if ring is not None:
        return _ring_output(out, live, device, split, ring)
    for wanted, option in ((split, "--split"), (path, "--path")):
        if wanted and ((live and out is None) or out == "-" or device is not None):
            raise UsageError(
                f"{option} reads the finished file; a live stream leaves none",
                f"drop {option}, or write -o FILE" + (" beside --live" if live else ""),
            )
    if live:
        if out is None:
            return OutputChoice(live=True)
        if out == "-" or device is not None:
            raise UsageError(
                f"--live and -o {out} both take the stream: one reader each",
                "drop one of them, or keep a file with --live -o FILE",
            )
        return replace(choose_output(out, False, stdout_is_tty, split, path, force), live=True)
    if out == "-":
        if stdout_is_tty:
            raise UsageError(
                "refusing to write a binary capture to the terminal",
                "pipe it (esxcap capture ... -o - | wireshark -k -i -) or write a file with -o FILE",
            )
        return OutputChoice(stdout=True)
    if out is None:
        return OutputChoice(directory=_folder(DEFAULT_DIR), split=split, force=force)
    if device is not None:
        return OutputChoice(device=device)
    where = Path(out).expanduser()
    if out.endswith(("/", "\\")) or where.is_dir():
        return OutputChoice(directory=_folder(where), split=split, force=force)
    check_destination(where, force)
    return OutputChoice(file=where, split=split, force=force)


def _ring_output(
    out: str | None, live: bool, device: Path | None, split: bool, ring: RingSpec
) -> OutputChoice:
    """Where a ring's segments go: -o FILE (segments named after it) or a folder (default ./captures)
    with enough free space; never a stream or a FIFO (a ring is files that come and go). A live viewer
    may watch a ring, but not the separate rings of --split."""
    if out == "-" or device is not None:
        what = "-o -" if out == "-" else f"-o {device}"
        raise UsageError(
            f"--ring writes segment files; {what} is a stream, which has none",
            "drop --ring, or write the ring to a folder with -o DIR/",
        )
    if live and split:
        raise UsageError(
            "--live shows one stream; --ring --split writes a separate ring per stream",
            "drop --split to watch the merged ring, or drop --live",
        )
    where = Path(out).expanduser() if out is not None else DEFAULT_DIR
    if out is None or out.endswith(("/", "\\")) or where.is_dir():
        choice = OutputChoice(directory=_folder(where), split=split, ring=ring, live=live)
    else:
        check_folder(where.parent, "ring")
        _check_new_ring(ring_base(where), split)
        choice = OutputChoice(file=where, split=split, ring=ring, live=live)
    check_free_space(choice.directory or where.parent, ring)
    return choice


def _check_new_ring(base: Path, split: bool) -> None:
    """Refuse a ring base that an earlier ring already used: its segments would mix with the new ones
    (bundle --last would pick from both) and its sidecar would be replaced. With --split the rings are
    `<base>-<stream>`, each with its own sidecar."""
    if split:
        rings = find_rings(base.parent) if base.parent.is_dir() else {}
        taken = [s for b, found in rings.items() if b.name.startswith(f"{base.name}-") for s in found]
        sidecars = [p for p in base.parent.glob(f"{glob.escape(base.name)}-*.json") if p.is_file()]
    else:
        taken = find_rings(base).get(base, [])
        sidecars = [p for p in [base.with_name(f"{base.name}.json")] if os.path.lexists(p)]
    if taken or sidecars:
        found = taken[0].name if taken else sidecars[0].name
        raise UsageError(
            f"{base} already has a ring ({found}); esxcap does not overwrite files",
            "choose another name with -o, or a folder (-o DIR/) where each ring gets its own base",
        )


def _folder(folder: Path) -> Path:
    """The output folder the user named (or ./captures), created if missing but only it: a missing
    folder above it is refused rather than made."""
    if not folder.is_dir() and folder.parent.is_dir():
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(
                f"cannot create the output folder {folder}: {exc.strerror or exc}",
                "choose a folder you can write to with -o",
            ) from exc
    check_folder(folder, "capture")
    return folder


def safe_name(text: str) -> str:
    """A file-name-safe form of a host or target label (letters of any script are kept)."""
    return _UNSAFE.sub("_", text).strip("_") or "capture"


def section_comments(planned: Sequence[Stream], started: float) -> list[str]:
    """The pcapng section comment: which tool, who ran it, when, and the exact remote commands."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    from esxcap.capture.metadata import operator

    lines = [
        f"esxcap {__version__} capture started {stamp} by {operator()}",
        "remote commands (each under esxcap's stop-safe wrapper):",
    ]
    lines += [f"{s.target.host}: {command_line(s.argv)}" for s in planned]
    return ["\n".join(lines)]


class ConsoleView:
    """`--console`/`--hex`: one line per packet as it is written (tshark's summary when tshark is
    installed, the built-in one otherwise), handed to `show` (the caller's printer)."""

    def __init__(self, hexdump: bool, show: Callable[[str], None]) -> None:
        from esxcap.capture.viewers import TsharkSummarizer, find_tshark

        self._summarizer = TsharkSummarizer(find_tshark(), hex_dump=hexdump)
        self._print = show
        self._seen = 0

    def __call__(self, name: str, record: Record) -> None:
        self._seen += 1
        self._summarizer.feed(record, name.replace(":", " "), self._seen)
        self._show()

    def _show(self) -> None:
        for line in self._summarizer.ready():
            self._print(line)

    def close(self) -> None:
        self._summarizer.close()
        self._show()


@dataclass
class Outputs:
    """The sinks of one capture (streams of one file share a sink), plus a live viewer and console view."""

    sinks: list[CaptureSink]
    viewer: subprocess.Popen[bytes] | None = None
    console: ConsoleView | None = None
    device: IO[bytes] | None = None
    feed: ViewerFeed | None = None
    """`--live` with a file: the viewer's copy of the packets, ended once the file is finished."""

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        if self.device is not None:
            with contextlib.suppress(OSError):
                self.device.close()
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
    console: Callable[[str], None] | None,
    hexdump: bool,
    name: str | None,
    notice: Callable[[str], None],
) -> Outputs:
    """The one sink every stream writes to (listed once per stream), the live viewer and the console
    view (`console` prints its lines); `name` names the merged file in a directory (default:
    `merged_name`); `notice` tells of a live viewer that left while a file is being kept."""
    comments = section_comments(planned, started)
    view = ConsoleView(hexdump, console) if console is not None else None
    if choice.stdout or (choice.live and not choice.paths):
        viewer = None
        sink_to: IO[bytes] | None = sys.stdout.buffer
        if choice.live:
            viewer = _start_live_viewer()
            sink_to = viewer.stdin
        assert sink_to is not None
        shared = CaptureSink(sink_to, comments, max_bytes, view, flush_each=True)
        return Outputs([shared] * len(planned), viewer, view)
    if choice.device is not None:
        device = open_stream_file(choice.device)
        if choice.copy is not None:
            device = cast(IO[bytes], CopyingStream(device, choice.copy))
        shared = CaptureSink(device, comments, max_bytes, view, flush_each=True)
        return Outputs([shared] * len(planned), None, view, device)
    feed, tee = live_viewer(choice, comments, notice)
    if choice.ring is not None:
        sinks = _ring_sinks(planned, choice, choice.ring, comments, started, max_bytes, view, name, tee)
        return Outputs(sinks, None, view, feed=feed)
    if choice.file is not None:
        sink = CaptureSink(choice.file, comments, max_bytes, view, force=choice.force, tee=tee)
        return Outputs([sink] * len(planned), None, view, feed=feed)
    path = _merged_path(planned, choice, started, name)
    return Outputs(
        [CaptureSink(path, comments, max_bytes, view, tee=tee)] * len(planned), None, view, feed=feed
    )


def live_viewer(
    choice: OutputChoice, comments: Sequence[str], notice: Callable[[str], None]
) -> tuple[ViewerFeed | None, Callable[[BlockWriter], PcapngWriter] | None]:
    """`--live` with files: the started viewer's feed, and the tee that gives a sink's writer to it (to
    pass as CaptureSink's `tee`); (None, None) without --live."""
    if not choice.live:
        return None, None
    feed = ViewerFeed(_live_viewer_input(), notice)
    return feed, lambda writer: ViewerTee(writer, feed, comments)


def _start_live_viewer() -> subprocess.Popen[bytes]:
    from esxcap.capture.viewers import live_viewer_command, start_viewer

    return start_viewer(live_viewer_command())


def _live_viewer_input() -> IO[bytes]:
    """`--live` with files: the live viewer's stdin, for a ViewerFeed that owns it from now on."""
    stdin = _start_live_viewer().stdin
    assert stdin is not None
    return stdin


def _merged_path(planned: Sequence[Stream], choice: OutputChoice, started: float, name: str | None) -> Path:
    """The merged file's path: -o FILE, else `<UTC time>-<name>.pcapng` in the folder."""
    if choice.file is not None:
        return choice.file
    assert choice.directory is not None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return choice.directory / f"{stamp}-{safe_name(name or merged_name(planned))}.pcapng"


def _ring_sinks(
    planned: Sequence[Stream],
    choice: OutputChoice,
    spec: RingSpec,
    comments: list[str],
    started: float,
    max_bytes: int | None,
    view: ConsoleView | None,
    name: str | None,
    tee: Callable[[BlockWriter], PcapngWriter] | None,
) -> list[CaptureSink]:
    """One ring for the merged capture (`tee`: a live viewer also gets its packets), or with --split one
    ring per stream (no merged one: each stream keeps its own K segments); the rings' base is the merged
    file's path without `.pcapng`."""
    merged = _merged_path(planned, choice, started, name)
    base = ring_base(merged)
    if not choice.split:
        return [CaptureSink(Ring(base, spec, comments), comments, max_bytes, view, tee=tee)] * len(planned)
    check_free_space(base.parent, spec, len(planned))
    return [
        CaptureSink(
            Ring(base.with_name(f"{base.name}-{stream_file_label(s.interface_name)}"), spec, comments),
            comments,
            max_bytes,
            view,
        )
        for s in planned
    ]


def stream_file_label(interface_name: str) -> str:
    """`<host>-<target>-<point>` of a stream's interface name, file-name safe (as --split names files)."""
    host, _, rest = interface_name.partition(":")
    return f"{safe_name(host)}-{safe_name(rest)}"


def merged_name(planned: Sequence[Stream]) -> str:
    """`<host>-<target>` when every stream has one target, else `merged-<H>hosts-<S>streams`."""
    targets = {(s.target.host, s.target.label) for s in planned}
    if len(targets) == 1:
        host, label = next(iter(targets))
        return f"{safe_name(host)}-{safe_name(label)}"
    return f"merged-{len({s.target.host for s in planned})}hosts-{len(planned)}streams"


def split_file(merged: Path) -> list[Path]:
    """`--split`: one pcapng per interface of `merged`, beside it, named after it and the interface,
    with the interface's description, comments and statistics (written as a private `.part`, then
    given its name without replacing anything: esxcap.capture.files)."""
    made: dict[int, tuple[Path, Path, IO[bytes], PcapngWriter]] = {}
    with merged.open("rb") as handle:
        source = CaptureFile(handle, merged.name)
        try:
            for record in source:
                if record.interface not in made:
                    iface = source.interfaces[record.interface]
                    path = merged.with_name(f"{merged.stem}-{stream_file_label(iface.name)}.pcapng")
                    part, fileobj = create_part(path)
                    section = source.sections[0].comments if source.sections else ()
                    writer = PcapngWriter(fileobj, comments=(*section, f"split from {merged.name}"))
                    writer.add_interface(iface)
                    made[record.interface] = (path, part, fileobj, writer)
                made[record.interface][3].write_record(record, 0)
            for stats in source.statistics:
                if stats.interface in made:
                    made[stats.interface][3].write_statistics(replace(stats, interface=0))
        finally:
            for _path, _part, fileobj, _writer in made.values():
                fileobj.close()
    return [place(part, path) for path, part, _f, _w in made.values()]
