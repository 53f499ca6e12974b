"""`esxcap merge` on files: finished captures into one time-ordered pcapng, refusing an output that is
one of the inputs, dropping an input given twice (with a warning), warning on inputs cut mid-packet (as
mergecap does), and leaving nothing behind when an input cannot be merged. The output is written by a
thread of its own, so that the merge reads and orders the next packets while the last ones are written."""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, cast

from esxcap.capture.files import check_destination, create_part, place
from esxcap.capture.sinks import OutputError, open_stream_file, stream_file_kind
from esxcap.errors import UsageError
from esxcap.pcap import MergeResult, PcapngWriter, is_capture_start
from esxcap.pcap.filemerge import merge_files as merge_blocks
from esxcap.pcap.pcapng import write_gathered


def distinct_inputs(files: Sequence[Path], out: Path, warn: Callable[[str], None]) -> list[Path]:
    """The inputs that exist, each file once (the same file under two names counts once), none of
    them the output."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}", "check the paths")
    for path in files:
        with path.open("rb") as handle:
            if not is_capture_start(handle.read(4)):
                raise UsageError(
                    f"{path} is not a pcap or pcapng file",
                    "merge takes capture files (e.g. ones esxcap wrote)",
                )
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


class BackgroundWrites:
    """Writes to `file` made by a thread: `write` and `write_parts` (gathered, see write_gathered) queue
    their bytes, at most `depth` batches ahead; a write error is raised by the next call, or by `finish`,
    which waits for every queued write."""

    def __init__(self, file: IO[bytes], name: Path, depth: int = 4) -> None:
        self._file = file
        self._name = name
        self._queue: queue.Queue[Sequence[bytes | memoryview] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._failed = False
        """A write failed: the writes queued after it are dropped."""
        self._thread = threading.Thread(target=self._run, name="merge-writes", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        self.write_parts([bytes(data)])
        return len(data)

    def write_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        self._raise()
        self._queue.put(parts)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while (parts := self._queue.get()) is not None:
            if self._failed:
                continue
            try:
                write_gathered(self._file, parts)
            except OSError as exc:  # raised in the merging thread
                self._failed = True
                self._error = OutputError(
                    f"cannot write the merged file {self._name}: {exc.strerror or exc}",
                    "free some space there, or write it elsewhere with -o",
                )
            except BaseException as exc:
                self._failed = True
                self._error = exc


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The merge makes a view per packet and no reference cycles: the cyclic garbage collector would
    walk every one of them for nothing (3% of the merge's instructions)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        with sink, _collector_paused():
            writes = BackgroundWrites(sink, out)
            try:
                merged = merge_blocks(
                    [(handle, path.name) for handle, path in zip(handles, inputs, strict=True)],
                    PcapngWriter(
                        cast("IO[bytes]", writes),  # it has what PcapngWriter uses: write, write_parts
                        comments=(f"merged by esxcap from {len(inputs)} files",),
                    ),
                )
            finally:
                writes.finish()
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
