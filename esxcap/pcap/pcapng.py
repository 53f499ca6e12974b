"""pcapng writing: one section (its comment holds e.g. the exact remote commands), one Interface
Description Block per stream, Enhanced Packet Blocks with nanosecond timestamps, and Interface Statistics
Blocks for what is only known at the end. Little-endian, as Wireshark and tshark read it."""

from __future__ import annotations

import errno
import io
import os
import struct
from collections.abc import Iterable, Sequence
from typing import IO

from esxcap import __version__
from esxcap.pcap.records import CaptureFormatError, Interface, InterfaceStatistics, Record

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 1
SPB_TYPE = 3
ISB_TYPE = 5
EPB_TYPE = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
USERAPPL = f"esxcap {__version__}"

OPT_END = 0
OPT_COMMENT = 1
SHB_HARDWARE, SHB_OS, SHB_USERAPPL = 2, 3, 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL, IF_TSOFFSET = 2, 3, 9, 14
ISB_STARTTIME, ISB_ENDTIME, ISB_IFRECV, ISB_IFDROP = 2, 3, 4, 5
EPB_FLAGS = 2
EPB_INBOUND, EPB_OUTBOUND = 1, 2
"""epb_flags bits 0-1 (the packet's direction relative to its interface): 01 inbound, 10 outbound."""
DIRECTION_FLAGS = {"inbound": EPB_INBOUND, "outbound": EPB_OUTBOUND}
TSRESOL_NANOS = 9
"""if_tsresol value written for every interface: timestamps count nanoseconds."""
_MAX_OPTION_LEN = 0xFFFC
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_EPB_HEAD = struct.Struct("<IIIIIII")
TIMESTAMP_LIMIT = 1 << 64
"""pcapng timestamps are unsigned 64-bit nanoseconds since 1970 as esxcap writes them."""


class TimestampRangeError(CaptureFormatError):
    """A packet's timestamp is before 1970 or past what pcapng can hold (a damaged or crafted input)."""

    def __init__(self, ts_ns: int) -> None:
        super().__init__(
            f"a packet's timestamp ({ts_ns} ns after 1970) is outside what pcapng can hold",
            "the input's timestamps are damaged; check it with capinfos, or leave that file out",
        )


_BATCH_PARTS = 3 * 64
"""write_records joins at most 64 packets per write: small buffers stay cheap to allocate and reuse."""


_IOV_MAX = 1024
"""Buffers per writev call (POSIX IOV_MAX on Linux and the BSDs)."""


def write_gathered(file: IO[bytes], parts: Sequence[bytes | memoryview]) -> None:
    """Append `parts` in order. Where `file` has a descriptor they go out with os.writev, straight from
    where they are (no joined copy); short writes are resumed where they stopped. A file with its own
    `write_parts` (e.g. one written by a thread) is handed them as they are."""
    write_parts = getattr(file, "write_parts", None)
    if write_parts is not None:
        write_parts(parts)
        return
    try:
        fd = file.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        file.write(b"".join(parts))
        return
    file.flush()
    for start in range(0, len(parts), _IOV_MAX):
        group = parts[start : start + _IOV_MAX]
        left = sum(map(len, group)) - os.writev(fd, group)
        while left:
            done = sum(map(len, group)) - left
            index = 0
            while done >= len(group[index]):
                done -= len(group[index])
                index += 1
            group = [memoryview(group[index])[done:], *group[index + 1 :]]
            written = os.writev(fd, group)
            if not written:
                raise OSError(errno.EIO, "the output accepted no more bytes")
            left -= written


def _pad(length: int) -> bytes:
    return _PAD[length % 4]


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + _pad(len(value))


def _text_options(code: int, texts: Iterable[str]) -> list[bytes]:
    """One option per text; a text too long for one option (64 KiB) is split at a UTF-8 boundary."""
    options = []
    for text in texts:
        raw = text.encode("utf-8")
        while raw:
            cut = min(len(raw), _MAX_OPTION_LEN)
            while cut < len(raw) and raw[cut] & 0xC0 == 0x80:
                cut -= 1
            options.append(_option(code, raw[:cut]))
            raw = raw[cut:]
    return options


def _timestamp(ts_ns: int) -> bytes:
    if not 0 <= ts_ns < TIMESTAMP_LIMIT:
        raise TimestampRangeError(ts_ns)
    return struct.pack("<II", ts_ns >> 32, ts_ns & 0xFFFFFFFF)


def epb_options(flags: int) -> bytes:
    """The options of an Enhanced Packet Block that carries only `flags` (epb_flags, with the end of
    options), or nothing for 0: what every packet of one stream ends with."""
    if not flags:
        return b""
    return _option(EPB_FLAGS, struct.pack("<I", flags)) + _option(OPT_END, b"")


def _block(block_type: int, body: bytes, options: Sequence[bytes]) -> bytes:
    opts = b"".join(options) + _option(OPT_END, b"") if options else b""
    total = 12 + len(body) + len(opts)
    return struct.pack("<II", block_type, total) + body + opts + struct.pack("<I", total)


def encode_epb(
    interface: int,
    ts_ns: int,
    data: bytes | memoryview,
    origlen: int | None = None,
    comments: Sequence[str] = (),
    flags: int = 0,
) -> bytes:
    """One Enhanced Packet Block. origlen defaults to the captured length; `flags` is epb_flags (0: none)."""
    if not 0 <= ts_ns < TIMESTAMP_LIMIT:
        raise TimestampRangeError(ts_ns)
    caplen = len(data)
    options = _text_options(OPT_COMMENT, comments) if comments else []
    if flags:
        options.append(_option(EPB_FLAGS, struct.pack("<I", flags)))
    opts = b"".join(options) + _option(OPT_END, b"") if options else b""
    padding = _pad(caplen)
    total = 32 + caplen + len(padding) + len(opts)
    head = _EPB_HEAD.pack(
        EPB_TYPE,
        total,
        interface,
        ts_ns >> 32,
        ts_ns & 0xFFFFFFFF,
        caplen,
        caplen if origlen is None else origlen,
    )
    return b"".join((head, data, padding, opts, total.to_bytes(4, "little")))


class PcapngWriter:
    """Writes one pcapng section to a binary file object; the Section Header Block is written at once.

    Interfaces may be added at any time, also after packets: an interface only has to be added before
    its first packet. Timestamps are nanoseconds since the epoch (if_tsresol 9 on every interface).
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        *,
        comments: Sequence[str] = (),
        userappl: str = USERAPPL,
        hardware: str | None = None,
        os: str | None = None,
    ) -> None:
        self._file = fileobj
        self.interfaces: list[Interface] = []
        self.packets = 0
        options = _text_options(OPT_COMMENT, comments)
        for code, text in ((SHB_HARDWARE, hardware), (SHB_OS, os), (SHB_USERAPPL, userappl)):
            if text is not None:
                options += _text_options(code, [text])
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
        fileobj.write(_block(SHB_TYPE, body, options))

    def add_interface(self, interface: Interface) -> int:
        """Write an Interface Description Block; return the interface id packets refer to."""
        options = _text_options(IF_NAME, [interface.name])
        if interface.description is not None:
            options += _text_options(IF_DESCRIPTION, [interface.description])
        options.append(_option(IF_TSRESOL, bytes([TSRESOL_NANOS])))
        options += _text_options(OPT_COMMENT, interface.comments)
        body = struct.pack("<HHI", interface.linktype, 0, interface.snaplen)
        self._file.write(_block(IDB_TYPE, body, options))
        self.interfaces.append(interface)
        return len(self.interfaces) - 1

    def write_packet(
        self,
        interface: int,
        ts_ns: int,
        data: bytes | memoryview,
        origlen: int | None = None,
        comments: Sequence[str] = (),
        flags: int = 0,
    ) -> None:
        """Write one Enhanced Packet Block. origlen defaults to the captured length; `flags` is
        epb_flags (EPB_INBOUND, EPB_OUTBOUND; 0: none)."""
        if not 0 <= interface < len(self.interfaces):
            self._check_interface(interface)
        self._file.write(encode_epb(interface, ts_ns, data, origlen, comments, flags))
        self.packets += 1

    def write_record(self, record: Record, interface: int | None = None) -> None:
        """Write a record as a packet of `interface` (default: the record's own interface index)."""
        self.write_packet(
            record.interface if interface is None else interface,
            record.ts_ns,
            record.data,
            record.origlen,
            record.comments,
            record.flags,
        )

    def write_records(self, items: Sequence[tuple[int, Record]]) -> None:
        """Write (interface, record) pairs in one write: the same bytes as `write_record` on each, with
        less work per packet (the live capture path writes hundreds of thousands a second)."""
        parts: list[bytes | memoryview] = []
        append, pack, count = parts.append, _EPB_HEAD.pack, len(self.interfaces)
        for interface, record in items:
            ts_ns, data = record.ts_ns, record.data
            if (
                record.comments
                or record.flags
                or not 0 <= ts_ns < TIMESTAMP_LIMIT
                or not 0 <= interface < count
            ):
                self._file.write(b"".join(parts))
                parts.clear()
                self.write_record(record, interface)
                continue
            caplen = len(data)
            padding = _PAD[caplen % 4]
            total = 32 + caplen + len(padding)
            append(pack(EPB_TYPE, total, interface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, caplen, record.origlen))
            append(data)
            append(padding + total.to_bytes(4, "little"))
            self.packets += 1
            if len(parts) >= _BATCH_PARTS:
                self._file.write(b"".join(parts))
                parts.clear()
        self._file.write(b"".join(parts))

    def write_blocks(self, parts: Sequence[bytes | memoryview], packets: int) -> None:
        """Append `packets` Enhanced Packet Blocks encoded elsewhere (the parts of a PcapngTranscoder
        batch) whose interfaces were added here."""
        write_gathered(self._file, parts)
        self.packets += packets

    def write_statistics(self, stats: InterfaceStatistics) -> None:
        """Write an Interface Statistics Block (counters and comments known at the end of a stream)."""
        self._check_interface(stats.interface)
        options = []
        for code, ts in ((ISB_STARTTIME, stats.starttime_ns), (ISB_ENDTIME, stats.endtime_ns)):
            if ts is not None:
                options.append(_option(code, _timestamp(ts)))
        for code, count in ((ISB_IFRECV, stats.received), (ISB_IFDROP, stats.dropped)):
            if count is not None:
                options.append(_option(code, struct.pack("<Q", count)))
        options += _text_options(OPT_COMMENT, stats.comments)
        body = struct.pack("<I", stats.interface) + _timestamp(stats.ts_ns)
        self._file.write(_block(ISB_TYPE, body, options))

    def _check_interface(self, interface: int) -> None:
        if not 0 <= interface < len(self.interfaces):
            raise ValueError(f"interface {interface} was not added (have {len(self.interfaces)})")
