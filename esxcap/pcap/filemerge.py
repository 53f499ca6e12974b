"""`merge_files()`: finished pcap/pcapng files into one pcapng at the block level, in mergecap's order.

Each input is read in large chunks and scanned into (key, block) pairs (esxcap.pcap.blockscan): the
blocks are the packets' Enhanced Packet Blocks as the output needs them, views into the chunk read. The
inputs' held packets are released up to the point no input can still precede (the smallest of the
inputs' last keys; ties: the later input first), ordered by one stable sort (Timsort merges the inputs'
runs in C) and written with gathered writes. Memory holds about one chunk per input.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from esxcap.pcap.blockscan import Buffer, PcapBlockScanner, PcapngBlockScanner
from esxcap.pcap.merge import MergeResult
from esxcap.pcap.pcapng import SHB_TYPE, PcapngWriter
from esxcap.pcap.records import CaptureFormatError, Interface

CHUNK_SIZE = 1 << 20
_SHB_MAGIC = SHB_TYPE.to_bytes(4, "little")


class Readable(Protocol):
    """A file read in chunks straight into buffers (a binary file opened for reading)."""

    def readinto(self, buffer: bytearray, /) -> int: ...


@dataclass(frozen=True)
class FileMergeResult:
    result: MergeResult
    truncated_bytes: tuple[int, ...]
    """Per input: bytes of a packet cut by the end of the file, left out (0: none)."""


class _Input:
    """One file being read: its scanner and the packets scanned but not yet written."""

    def __init__(self, index: int, file: Readable, name: str, writer: PcapngWriter, chunk_size: int) -> None:
        self.index = index
        self.file = file
        self.name = name
        self.chunk_size = chunk_size
        self.interfaces: list[int] = []
        """Output id of each interface of this file, in the order read."""
        self._writer = writer
        self.keys: list[int] = []
        self.blocks: list[Buffer] = []
        self.written = 0
        self.done = False
        self.truncated = 0
        first = self._read()
        while 0 < len(first) < 4:  # the first bytes tell pcap from pcapng
            more = self._read()
            if not more:
                break
            first += more
        self.scanner: PcapngBlockScanner | PcapBlockScanner = (
            PcapngBlockScanner(self._register)
            if first[:4] == _SHB_MAGIC
            else PcapBlockScanner(name, self._register)
        )
        self._scan(first)
        while not self.keys and not self.done:  # up to the first packet: the interfaces before it
            self.fill()

    def _register(self, interface: Interface) -> int:
        out = self._writer.add_interface(interface)
        self.interfaces.append(out)
        return out

    def _read(self) -> bytearray:
        chunk = bytearray(self.chunk_size)
        size = self.file.readinto(chunk)
        del chunk[size:]
        return chunk

    @property
    def last_key(self) -> int:
        """Every packet still to be scanned has a key at least this (-1: nothing scanned yet)."""
        return self.scanner.top

    def fill(self) -> None:
        """Scan the next chunk; at the end of the file, mark the input done."""
        self._scan(self._read())

    def _scan(self, chunk: bytearray) -> None:
        try:
            if not chunk:
                self.done = True
                self.truncated = self.scanner.finish()
                return
            keys, blocks = self.scanner.scan(chunk)
        except CaptureFormatError as exc:
            exc.message = f"{self.name}: {exc.message}"
            exc.hint = "check that the file is a pcap or pcapng capture"
            raise
        self.keys += keys
        self.blocks += blocks

    def take(self, count: int) -> tuple[list[int], list[Buffer]]:
        keys, blocks = self.keys[:count], self.blocks[:count]
        del self.keys[:count], self.blocks[:count]
        self.written += count
        return keys, blocks


def _release(inputs: Sequence[_Input], horizon: tuple[int, int] | None) -> list[Buffer]:
    """Every held packet that no input can still precede, in output order. `horizon` is the smallest
    (last key, -index) of the inputs not done (None: all are done)."""
    keys: list[int] = []
    blocks: list[Buffer] = []
    sources = 0
    for held in reversed(inputs):  # later inputs first: the stable sort then puts them first on ties
        if not held.keys:
            continue
        if horizon is None:
            count = len(held.keys)
        elif -held.index <= horizon[1]:
            count = bisect_right(held.keys, horizon[0])
        else:
            count = bisect_left(held.keys, horizon[0])
        if count:
            taken_keys, taken_blocks = held.take(count)
            keys += taken_keys
            blocks += taken_blocks
            sources += 1
    if sources > 1:
        blocks = list(map(blocks.__getitem__, sorted(range(len(keys)), key=keys.__getitem__)))
    return blocks


def merge_files(
    files: Sequence[tuple[Readable, str]], writer: PcapngWriter, chunk_size: int = CHUNK_SIZE
) -> FileMergeResult:
    """Write every packet of `files` ((file, name) pairs; a classic pcap's interface takes the name) to
    `writer` in mergecap's order: by timestamp, ties the later input first. Interfaces are declared in
    the order they are read (the inputs' first chunks in input order), statistics follow the packets."""
    inputs = [_Input(index, file, name, writer, chunk_size) for index, (file, name) in enumerate(files)]
    while True:
        live = [held for held in inputs if not held.done]
        horizon = min(((held.last_key, -held.index) for held in live), default=None)
        blocks = _release(inputs, horizon)
        if blocks:
            writer.write_blocks(blocks, len(blocks))
        if horizon is None:
            break
        inputs[-horizon[1]].fill()
    interface_map: dict[tuple[int, int], int] = {}
    for held in inputs:
        interface_map.update(((held.index, local), out) for local, out in enumerate(held.interfaces))
        for stats in held.scanner.statistics:
            writer.write_statistics(replace(stats, interface=held.interfaces[stats.interface]))
    per_input = tuple(held.written for held in inputs)
    result = MergeResult(sum(per_input), per_input, interface_map)
    return FileMergeResult(result, tuple(held.truncated for held in inputs))
