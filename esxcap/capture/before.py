"""The before-window of a triggered capture: the packets of the last seconds (encoded blocks with their
local times), held in memory up to a byte bound and spilled beyond it to a private temporary file in the
destination folder (unlinked at once: nothing is left behind, whatever ends the run)."""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

Buffer = bytes | memoryview
COMPACT_MIN = 64 << 20
"""The spill file is compacted when its expired head is larger than this and than what it still holds."""
READ_CHUNK = 4 << 20


class BeforeBuffer:
    """Blocks in the order taken, each with its local time; `prune` lets go of those older than a
    horizon, `since` yields those from a time on (spilled ones first: they are the oldest)."""

    def __init__(self, max_bytes: int, spill_dir: Path) -> None:
        self.max_bytes = max_bytes
        self._spill_dir = spill_dir
        self._memory: deque[tuple[int, Buffer]] = deque()
        self.memory_bytes = 0
        self._disk: deque[tuple[int, int, int]] = deque()
        """Spilled blocks: (local time, offset in the spill file, length)."""
        self._file: IO[bytes] | None = None
        self._end = 0
        self.spilled_bytes = 0
        """Bytes spilled and not yet expired."""
        self.spills = 0
        self.peak_spilled = 0
        """The most the spill file held at once."""

    def add(self, stamps: list[int], blocks: list[Buffer]) -> None:
        self._memory.extend(zip(stamps, blocks, strict=True))
        self.memory_bytes += sum(map(len, blocks))
        if self.memory_bytes > self.max_bytes:
            self._spill(self.memory_bytes - self.max_bytes * 3 // 4)

    def _spill(self, nbytes: int) -> None:
        """Move the oldest blocks holding at least `nbytes` to the spill file, in one write."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                dir=self._spill_dir, prefix=".esxcap-before-"
            )
        moved: list[Buffer] = []
        size = 0
        while self._memory and size < nbytes:
            local, block = self._memory.popleft()
            self._disk.append((local, self._end + size, len(block)))
            moved.append(block)
            size += len(block)
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
        """Let go of every block older than `horizon` (local ns)."""
        disk = self._disk
        while disk and disk[0][0] < horizon:
            self.spilled_bytes -= disk.popleft()[2]
        memory = self._memory
        while memory and memory[0][0] < horizon:
            self.memory_bytes -= len(memory.popleft()[1])
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
        self._disk = deque((local, offset - start, length) for local, offset, length in self._disk)

    def since(self, start: int) -> Iterator[tuple[int, Buffer]]:
        """The blocks whose local time is `start` or later, oldest first."""
        if self._file is not None:
            fd = self._file.fileno()
            for local, offset, length in list(self._disk):
                if local >= start:
                    yield local, os.pread(fd, length, offset)
        for local, block in list(self._memory):
            if local >= start:
                yield local, block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
