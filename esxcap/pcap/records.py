"""What every capture format here shares: the packet record, the interface description, the error types
and the sanity limits that keep a corrupt stream from turning into a giant allocation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from esxcap.errors import HostError

LINKTYPE_ETHERNET = 1
MAX_CAPLEN = 256 * 1024
"""No record may carry more bytes than this (Wireshark's own limit for Ethernet)."""
SNAPLEN_SLACK = 64
"""Bytes a record may exceed its stream's snaplen by before the stream is called corrupt."""
MAX_BLOCK_LEN = 16 * 1024 * 1024
"""Largest pcapng block accepted (packets are capped by MAX_CAPLEN; this bounds long comments)."""


class CaptureFormatError(HostError):
    """A byte stream that should hold a capture does not."""


class NotPcapError(CaptureFormatError):
    """The stream does not start like a capture file at all (typically the host printed an error instead)."""

    def __init__(self, reason: str, head: bytes) -> None:
        super().__init__(
            f"not a pcap stream: {reason}; it starts with {show_bytes(head)}",
            "the capture command did not produce packets; see the host's error output",
        )
        self.head = head


class CorruptCaptureError(CaptureFormatError):
    """The stream started as a capture but breaks its format at a given byte offset."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(
            f"corrupt capture stream at byte offset {offset}: {reason}",
            "every record before this offset is intact; the rest of the stream was not read",
        )
        self.offset = offset
        self.reason = reason


def show_bytes(head: bytes | bytearray | memoryview, limit: int = 32) -> str:
    """The first bytes of a stream as a printable, terminal-safe Python bytes literal."""
    data = bytes(head[:limit])
    more = "..." if len(head) > limit else ""
    return f"{data!r}{more}" if data else "nothing (empty stream)"


class Record(NamedTuple):
    """One captured packet.

    A NamedTuple rather than a dataclass because one is built per packet on the streaming hot path, where
    it is several times cheaper to create; it is just as immutable. `data` is usually a memoryview into the
    chunk the packet arrived in: no copy is made, and the chunk stays alive while the record does.
    """

    ts_ns: int
    """Capture time, nanoseconds since the Unix epoch."""
    origlen: int
    """Length of the packet on the wire (`caplen` is shorter when the capture was truncated by snaplen)."""
    data: bytes | memoryview
    interface: int = 0
    """Index into the reader's (or writer's) interfaces; always 0 for a classic pcap stream."""
    comments: tuple[str, ...] = ()
    flags: int = 0
    """pcapng epb_flags (bits 0-1: 01 inbound, 10 outbound); 0 when not known."""

    @property
    def caplen(self) -> int:
        """Number of packet bytes captured."""
        return len(self.data)


@dataclass(frozen=True)
class Interface:
    """One capture interface: in pcapng an Interface Description Block, in classic pcap the whole file."""

    name: str
    """E.g. `esx01:web01:VnicTx:out`."""
    linktype: int = LINKTYPE_ETHERNET
    snaplen: int = 0
    """0 means no limit."""
    description: str | None = None
    """E.g. `VM web01 eth0, portgroup VM Network, ESXi 8.0.2 build 22380479`."""
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """The Section Header Block's text options."""

    comments: tuple[str, ...] = ()
    userappl: str | None = None
    hardware: str | None = None
    os: str | None = None


@dataclass(frozen=True)
class InterfaceStatistics:
    """An Interface Statistics Block: counters and comments about one interface, usually written last.

    Timestamps are nanoseconds since the epoch; counters are None when the writer did not know them.
    """

    interface: int
    ts_ns: int
    starttime_ns: int | None = None
    endtime_ns: int | None = None
    received: int | None = None
    dropped: int | None = None
    comments: tuple[str, ...] = ()
