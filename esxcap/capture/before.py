"""The before-window of a triggered capture: the packets of the last seconds, as the batches of encoded
blocks the sink released (each with the local times of its first and last packet: no object per
packet), held in memory up to a byte bound and spilled beyond it to a private temporary file in the
destination folder (unlinked at once: nothing is left behind, whatever ends the run)."""

from __future__ import annotations

import os
import struct
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

Buffer = bytes | memoryview
COMPACT_MIN = 64 << 20
"""The spill file is compacted when its expired head is larger than this and than what it still holds."""
READ_CHUNK = 4 << 20
_LENGTH = struct.Struct("<4xI")


def split_blocks(data: Buffer) -> list[memoryview]:
    """Whole pcapng blocks laid end to end, one view each."""
    view = memoryview(data)
    blocks, pos = [], 0
    while pos + 12 <= len(view):
        (length,) = _LENGTH.unpack_from(view, pos)
        blocks.append(view[pos : pos + length])
        pos += length
    return blocks


class BeforeBuffer:
    """Batches of blocks in the order taken; `prune` lets go of the batches wholly older than a horizon,
    `since` gives back those that reach a time (spilled ones first: they are the oldest)."""

    def __init__(self, max_bytes: int, spill_dir: Path) -> None:
        self.max_bytes = max_bytes
        self._spill_dir = spill_dir
        self._memory: deque[tuple[int, list[Buffer], int]] = deque()
        """(local time of the newest packet, blocks, their bytes)."""
        self.memory_bytes = 0
        self._disk: deque[tuple[int, int, int]] = deque()
        """Spilled batches: (local time of the newest packet, offset in the spill file, length)."""
        self._file: IO[bytes] | None = None
        self._end = 0
        self.spilled_bytes = 0
        """Bytes spilled and not yet expired."""
        self.spills = 0
        self.peak_spilled = 0
        """The most the spill file held at once."""

    def add(self, newest: int, blocks: list[Buffer]) -> None:
        """Keep a batch of blocks whose newest packet's local time is `newest`."""
        size = sum(map(len, blocks))
        self._memory.append((newest, blocks, size))
        self.memory_bytes += size
        if self.memory_bytes > self.max_bytes:
            self._spill(self.memory_bytes - self.max_bytes * 3 // 4)

    def _spill(self, nbytes: int) -> None:
        """Move the oldest batches holding at least `nbytes` to the spill file, in one write."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                dir=self._spill_dir, prefix=".esxcap-before-"
            )
        moved: list[Buffer] = []
        size = 0
        while self._memory and size < nbytes:
            newest, blocks, length = self._memory.popleft()
            self._disk.append((newest, self._end + size, length))
            moved += blocks
            size += length
        data = memoryview(b"".join(moved))
        done = 0
        while done < size:
            done += os.pwrite(self._file.fileno(), data[done:], self._end + done)
        self._end += size
        self.memory_bytes -= size
        self.spilled_bytes += size
        self.peak_spilled = max(self.peak_spilled, self.spilled_bytes)
        self.spills += 1

    def prune(self, horizon: int) -> None:
        """Let go of every batch whose packets are all older than `horizon` (local ns)."""
        disk = self._disk
        while disk and disk[0][0] < horizon:
            self.spilled_bytes -= disk.popleft()[2]
        memory = self._memory
        while memory and memory[0][0] < horizon:
            self.memory_bytes -= memory.popleft()[2]
        if self._file is not None and not disk:
            self._file.truncate(0)
            self._end = 0
        elif disk and disk[0][1] > max(COMPACT_MIN, self.spilled_bytes):
            self._compact()

    def _compact(self) -> None:
        """Move what the spill file still holds to its start."""
        assert self._file is not None
        fd, start = self._file.fileno(), self._disk[0][1]
        done = 0
        while start + done < self._end:
            chunk = os.pread(fd, min(READ_CHUNK, self._end - start - done), start + done)
            os.pwrite(fd, chunk, done)
            done += len(chunk)
        self._file.truncate(done)
        self._end = done
        self._disk = deque((newest, offset - start, length) for newest, offset, length in self._disk)

    def since(self, start: int) -> Iterator[list[Buffer]]:
        """The batches whose newest packet is at `start` or later, oldest first (they may begin earlier)."""
        if self._file is not None:
            fd = self._file.fileno()
            for newest, offset, length in list(self._disk):
                if newest >= start:
                    yield list(split_blocks(os.pread(fd, length, offset)))
        for newest, blocks, _size in list(self._memory):
            if newest >= start:
                yield blocks

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
