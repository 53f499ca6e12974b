"""`esxcap merge` on files: finished captures into one time-ordered pcapng, refusing an output that is
one of the inputs, dropping an input given twice (with a warning), warning on inputs cut mid-packet (as
mergecap does), and leaving nothing behind when an input cannot be merged."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from esxcap.capture.files import check_destination, create_part, place
from esxcap.capture.sinks import open_stream_file, stream_file_kind
from esxcap.errors import UsageError
from esxcap.pcap import MergeResult, PcapngWriter
from esxcap.pcap.filemerge import merge_files as merge_blocks


def distinct_inputs(files: Sequence[Path], out: Path, warn: Callable[[str], None]) -> list[Path]:
    """The inputs that exist, each file once (the same file under two names counts once), none of
    them the output."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}", "check the paths")
    seen: dict[tuple[int, int], Path] = {}
    kept: list[Path] = []
    for path in files:
        info = path.stat()
        first = seen.setdefault((info.st_dev, info.st_ino), path)
        if first is not path:
            warn(f"{path} is the same file as {first}: merged once (twice would double every packet)")
            continue
        kept.append(path)
    with contextlib.suppress(FileNotFoundError):
        target = out.stat()
        if (target.st_dev, target.st_ino) in seen:
            raise UsageError(
                f"the output {out} is also one of the inputs",
                "write the merged file elsewhere with -o, or leave it out of the inputs",
            )
    return kept


def merge_files(
    files: Sequence[Path], out: Path, force: bool, warn: Callable[[str], None]
) -> tuple[Path, MergeResult, int]:
    """Merge `files` into `out` (a private `.part` given the name when complete, esxcap.capture.files;
    a FIFO or character device is written straight into); returns the name written, the result and
    the number of inputs merged."""
    inputs = distinct_inputs(files, out, warn)
    part: Path | None = None
    if stream_file_kind(out) is not None:
        sink = open_stream_file(out)
    else:
        check_destination(out, force, "merged file")
        part, sink = create_part(out)
    handles = [path.open("rb") for path in inputs]
    try:
        with sink:
            merged = merge_blocks(
                [(handle, path.name) for handle, path in zip(handles, inputs, strict=True)],
                PcapngWriter(sink, comments=(f"merged by esxcap from {len(inputs)} files",)),
            )
    except BaseException:
        if part is not None:
            os.unlink(part)
        raise
    finally:
        for handle in handles:
            handle.close()
    for path, cut in zip(inputs, merged.truncated_bytes, strict=True):
        if cut:
            warn(
                f"{path.name} ends in the middle of a packet: its last {cut} bytes "
                "were left out (the file was cut while being written)"
            )
    return (out if part is None else place(part, out, force)), merged.result, len(inputs)
