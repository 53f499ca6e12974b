"""Validation of every user-supplied value that can reach a pktcap-uw argv.

Each validator takes the value and the option it was given to (so the error names it), returns the
canonical form pktcap-uw gets, or raises `UsageError(message, hint)` whose hint shows the accepted form.
Chosen forms, stricter than pktcap-uw where a loose form is ambiguous:

* MAC: six hex pairs separated by `:` or `-`, any case -> lower-case colon form.
* IPv4: dotted quad without leading zeros; `--srcip/--dstip` also take `/0`..`/32` (host bits may be set).
* ethtype: hex with `0x` (1-4 digits) or a name (ipv4 arp rarp vlan ipv6 lldp ...) -> `0x%04x`.
  Bare digits are refused: `0800` and `2048` would mean different things to different people.
* IP protocol: hex with `0x` (1-2 digits) or a name (icmp igmp tcp udp gre esp ah) -> `0x%02x`.
* Uplink: `vmnicN`, and `vusbN` (USB NICs of the USB network driver are uplinks too).
* Switch port id: decimal or `0x` hex (pktcap-uw echoes ids in hex) -> decimal, unsigned 32-bit.
* snaplen: 0 (whole packet) or 24..262144; count: 1..2^32-1.
* Filter expression (`--rcf`): one printable line, passed on as typed; pktcap-uw parses it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from difflib import get_close_matches

from esxcap.errors import UsageError

ETHTYPES = {
    "ipv4": 0x0800,
    "arp": 0x0806,
    "rarp": 0x8035,
    "vlan": 0x8100,
    "ipv6": 0x86DD,
    "lldp": 0x88CC,
    "qinq": 0x88A8,
    "lacp": 0x8809,
}
IP_PROTOCOLS = {"icmp": 0x01, "igmp": 0x02, "tcp": 0x06, "udp": 0x11, "gre": 0x2F, "esp": 0x32, "ah": 0x33}

U32_MAX = 2**32 - 1
SNAPLEN_MIN = 24
SNAPLEN_MAX = 262144
MAX_FILTER_EXPRESSION = 1024

_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX = re.compile(r"0x([0-9a-f]+)")
_PREFIX = re.compile(r"0|[1-9][0-9]?")
_VMK = re.compile(r"vmk(0|[1-9][0-9]*)")
_UPLINK = re.compile(r"(vmnic|vusb)(0|[1-9][0-9]*)")
_LIF = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FUNCTION = re.compile(rf"(?:{_IDENT}\.)?{_IDENT}(?::(?:0|[1-9][0-9]*|0x[0-9a-f]+))?")
_WORDS = {
    "--dir": {"0": 0, "1": 1, "2": 2, "input": 0, "output": 1, "inputandoutput": 2, "rx": 0, "tx": 1},
    "--stage": {"0": 0, "1": 1, "pre": 0, "post": 1},
}


def _bad(option: str, value: object, accepted: str) -> UsageError:
    return UsageError(f"{option}: invalid value {str(value)!r}", f"accepted: {accepted}")


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else str(value)


def _number(value: str | int, option: str, low: int, high: int, accepted: str, hex_ok: bool = False) -> int:
    if isinstance(value, bool):
        raise _bad(option, value, accepted)
    if isinstance(value, int):
        number = value
    else:
        text = value.strip().lower()
        hex_match = _HEX.fullmatch(text) if hex_ok else None
        if hex_match:
            number = int(hex_match.group(1), 16)
        elif _DECIMAL.fullmatch(text):
            number = int(text)
        else:
            raise _bad(option, value, accepted)
    if not low <= number <= high:
        raise _bad(option, value, accepted)
    return number


def mac(value: str, option: str) -> str:
    text = _text(value).lower()
    if not _MAC.fullmatch(text):
        raise _bad(option, value, "a MAC address like 00:50:56:ab:cd:ef (':' or '-' separators)")
    return text.replace("-", ":")


def ipv4(value: str, option: str) -> str:
    """A plain IPv4 address (`--ip`)."""
    text = _text(value)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise _bad(option, value, "an IPv4 address like 10.0.0.5") from None


def ipv4_prefix(value: str, option: str) -> str:
    """An IPv4 address with an optional `/prefix` 0-32 (`--srcip`, `--dstip`)."""
    text = _text(value)
    address, slash, prefix = text.partition("/")
    accepted = "an IPv4 address with an optional /prefix 0-32, like 10.0.0.5 or 10.0.0.0/24"
    if slash and not (_PREFIX.fullmatch(prefix) and int(prefix) <= 32):
        raise _bad(option, value, accepted)
    try:
        canonical = str(ipaddress.IPv4Address(address))
    except ValueError:
        raise _bad(option, value, accepted) from None
    return f"{canonical}/{int(prefix)}" if slash else canonical


def port(value: str | int, option: str) -> int:
    return _number(value, option, 0, 65535, "a port number 0-65535")


def vlan(value: str | int, option: str) -> int:
    return _number(value, option, 0, 4095, "a VLAN id 0-4095")


def vxlan(value: str | int, option: str) -> int:
    return _number(value, option, 0, 2**24 - 1, "a VXLAN id 0-16777215")


def switchport(value: str | int, option: str) -> int:
    return _number(
        value, option, 0, U32_MAX, "a numeric switch port id like 50331657 (or 0x03000009)", hex_ok=True
    )


def count(value: str | int, option: str) -> int:
    return _number(value, option, 1, U32_MAX, "a packet count of 1 or more")


def snaplen(value: str | int, option: str) -> int:
    accepted = f"0 (whole packet) or a length of {SNAPLEN_MIN}-{SNAPLEN_MAX} bytes"
    length = _number(value, option, 0, SNAPLEN_MAX, accepted)
    if 0 < length < SNAPLEN_MIN:
        raise _bad(option, value, accepted)
    return length


def ethtype(value: str | int, option: str) -> str:
    accepted = f"hex with 0x like 0x0800, or one of: {', '.join(ETHTYPES)}"
    text = _text(value).lower()
    if text in ETHTYPES:
        return f"0x{ETHTYPES[text]:04x}"
    match = _HEX.fullmatch(text)
    if not match or len(match.group(1)) > 4:
        raise _bad(option, value, accepted)
    return f"0x{int(match.group(1), 16):04x}"


def proto(value: str | int, option: str) -> str:
    accepted = f"hex with 0x like 0x06, or one of: {', '.join(IP_PROTOCOLS)}"
    text = _text(value).lower()
    if text in IP_PROTOCOLS:
        return f"0x{IP_PROTOCOLS[text]:02x}"
    match = _HEX.fullmatch(text)
    if not match or len(match.group(1)) > 2:
        raise _bad(option, value, accepted)
    return f"0x{int(match.group(1), 16):02x}"


def vmk(value: str, option: str) -> str:
    text = _text(value).lower()
    if not _VMK.fullmatch(text):
        raise _bad(option, value, "a VMkernel NIC name like vmk0")
    return text


def uplink(value: str, option: str) -> str:
    text = _text(value).lower()
    if not _UPLINK.fullmatch(text):
        raise _bad(option, value, "a physical NIC name like vmnic0 (or vusb0)")
    return text


def lif_id(value: str, option: str) -> str:
    text = _text(value)
    if not _LIF.fullmatch(text):
        raise _bad(option, value, "a VDR logical interface id as net-vdr prints it, like 138800000002")
    return text


def dvfilter(value: str, option: str) -> str:
    """A DVFilter name as `summarize-dvfilter` prints it: printable, no whitespace, not option-like."""
    text = value if isinstance(value, str) else str(value)
    if (
        not text
        or len(text) > 255
        or text.startswith("-")
        or any(ch.isspace() or not ch.isprintable() for ch in text)
    ):
        raise _bad(
            option,
            value,
            "a filter name like nic-36445-eth0-vmware-sfw.2 (no spaces or control "
            "characters, not starting with '-')",
        )
    return text


def function(value: str, option: str) -> str:
    """`-f [module.]function[:offset]` for the Dynamic, IOChain and TcpipDispatch points."""
    text = _text(value)
    if not _FUNCTION.fullmatch(text):
        raise _bad(option, value, "[module.]function[:offset], like vmkernel.IOChain_Resume or Net_Fn:0x10")
    return text


def filter_expression(value: str, option: str) -> str:
    """A pcap filter expression for pktcap-uw's `--rcf`: one line of printable text, kept as typed (it
    travels as one argv element, quoted once by esxi/remote.py); not empty, not option-like."""
    text = value if isinstance(value, str) else str(value)
    if (
        not text.strip()
        or len(text) > MAX_FILTER_EXPRESSION
        or text.lstrip().startswith("-")
        or any(not (ch.isprintable() or ch == "\t") for ch in text)
    ):
        raise _bad(
            option,
            value,
            f"a pcap filter expression such as 'host 10.0.0.5 and tcp port 443' (one line, at most "
            f"{MAX_FILTER_EXPRESSION} characters, not starting with '-')",
        )
    return text


def capture_point(value: str, option: str, known: Iterable[str]) -> str:
    """A capture point name, matched case-insensitively against `known`, in its canonical spelling."""
    names = {name.lower(): name for name in known}
    text = value.strip() if isinstance(value, str) else ""
    canonical = names.get(text.lower())
    if canonical is None:
        listing = "'esxcap points HOST' lists a host's points"
        close = [names[n] for n in get_close_matches(text.lower(), sorted(names), n=3, cutoff=0.6)]
        if close:
            raise UsageError(
                f"{option}: invalid value {value!r}", f"did you mean {' or '.join(close)}? {listing}"
            )
        raise _bad(
            option,
            value,
            f"a capture point name such as {', '.join(sorted(names.values())[:8])}, ...; {listing}",
        )
    return canonical


def direction_code(value: str | int, option: str) -> int:
    """pktcap-uw's `--dir` (0|1|2, input|output|inputAndOutput, rx|tx) -> 0, 1 or 2."""
    return _word(value, "--dir", option, "0|input|rx, 1|output|tx or 2|inputAndOutput")


def stage_code(value: str | int, option: str) -> int:
    """pktcap-uw's `--stage` (0|1, pre|post) -> 0 or 1."""
    return _word(value, "--stage", option, "0|pre or 1|post")


def _word(value: str | int, table: str, option: str, accepted: str) -> int:
    if isinstance(value, bool):
        raise _bad(option, value, accepted)
    code = _WORDS[table].get(_text(value).lower())
    if code is None:
        raise _bad(option, value, accepted)
    return code
