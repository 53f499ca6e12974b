"""Reading what `esxcap doctor` asks a host (pure): BusyBox's banner, `vdf -h`'s RAM disks, an esxcli
advanced option, `date +%s.%N`, the first bytes of `pktcap-uw -o -` and pktcap-uw's trailer.

Each reader returns None for text it cannot read: a self-check reports "unknown", it never guesses.
"""

from __future__ import annotations

import re

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "pcap (microseconds, little-endian)",
    b"\xa1\xb2\xc3\xd4": "pcap (microseconds, big-endian)",
    b"\x4d\x3c\xb2\xa1": "pcap (nanoseconds, little-endian)",
    b"\xa1\xb2\x3c\x4d": "pcap (nanoseconds, big-endian)",
}
SHELL_TIMEOUT = "/UserVars/ESXiShellTimeOut"
SHELL_INTERACTIVE_TIMEOUT = "/UserVars/ESXiShellInteractiveTimeOut"

_BUSYBOX = re.compile(r"BusyBox v(\d+(?:\.\d+)+)")
_INT_VALUE = re.compile(r"^\s*Int Value:\s*(-?\d+)\s*$", re.M)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
_TRAILERS = (
    re.compile(rb"Dumped (\d+) packets? to .*?, dropped (\d+) packets?"),
    re.compile(rb"Dump: (\d+), broken : \d+, drop: (\d+)"),
)


def busybox_version(text: str) -> str | None:
    """`1.29.3` from `BusyBox v1.29.3 (2019-09-04 ...) multi-call binary.`"""
    found = _BUSYBOX.search(text)
    return found.group(1) if found else None


def ramdisk_free_mb(text: str, name: str = "tmp") -> float | None:
    """Free MiB of one RAM disk in `vdf -h` (rows `NAME SIZE USED AVAILABLE USE% MOUNTED`)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == name:
            found = _SIZE.match(parts[3])
            if found is None:
                return None
            scale = {"": 1 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}[found.group(2)]
            return float(found.group(1)) * scale
    return None


def advanced_int(text: str) -> int | None:
    """`Int Value` of `esxcli system settings advanced list -o PATH`."""
    found = _INT_VALUE.search(text)
    return int(found.group(1)) if found else None


def date_precision(reply: str) -> str | None:
    """What `date +%s.%N` gave: "nanoseconds", "seconds" (%N printed literally or empty) or None."""
    seconds, _, fraction = reply.strip().partition(".")
    if not seconds.isdigit():
        return None
    return "nanoseconds" if fraction.isdigit() and len(fraction) == 9 else "seconds"


def pcap_start(data: bytes) -> str | None:
    """The pcap format the first four bytes announce, or None when they are not a pcap header."""
    return PCAP_MAGICS.get(data[:4])


def trailer_counts(stderr: bytes) -> tuple[int, int] | None:
    """(packets dumped, dropped) from pktcap-uw's trailer (6.0+ or the 5.5 form), None when absent."""
    for pattern in _TRAILERS:
        found = pattern.search(stderr)
        if found:
            return int(found.group(1)), int(found.group(2))
    return None
