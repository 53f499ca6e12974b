"""Parsers for the two discovery commands that are not esxcli: `vmware -vl` and `net-stats -l`.

`net-stats -l` has fixed printf columns and a ClientName that runs to the end of the line (VM display
names may contain spaces); every row must re-render byte for byte with esxcap.esxi.layouts, so a row in any
other shape is an error rather than a guess.
"""

from __future__ import annotations

import re

from esxcap.errors import ParseError
from esxcap.esxi.layouts import NET_STATS_HEADER, format_net_stats_row
from esxcap.esxi.models import EsxiVersion, NetStatsPort
from esxcap.esxi.parsers.values import Where, u32

VMWARE_VL_ARGV = ("vmware", "-vl")
NET_STATS_ARGV = ("net-stats", "-l")

_VMWARE_V = re.compile(r"(?P<product>\S.*?) (?P<version>[0-9]+(?:\.[0-9]+)+) build-(?P<build>[0-9]+)")
_VMWARE_L = re.compile(
    r"(?P<product>\S.*?) (?P<version>[0-9]+(?:\.[0-9]+)*) (?:Update (?P<update>[0-9]+)|GA)"
)
_MAC = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
_NET_STATS_ROW = re.compile(
    r"(?P<port>[0-9]+) +(?P<type>[0-9]+) +(?P<subtype>[0-9]+)"
    rf" (?P<switch>.+?) +(?P<mac>{_MAC})  (?P<client>.*)"
)


def parse_vmware_vl(text: str) -> EsxiVersion:
    """`vmware -vl`: `VMware ESXi 6.7.0 build-8169922` then `VMware ESXi 6.7.0 Update 3` (or `GA`).

    A single first line (`vmware -v`) gives update None; `GA` gives update "0", as
    `esxcli system version get` reports it. The second line's version (two parts from 7.0 on) must
    be a prefix of the first's, and its product the same.
    """
    command = " ".join(VMWARE_VL_ARGV)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) > 2:
        raise ParseError(command, max(len(lines), 1), lines[-1] if lines else "", "expected one or two lines")
    first = _VMWARE_V.fullmatch(lines[0])
    if not first:
        raise ParseError(command, 1, lines[0], "expected '<product> <version> build-<number>'")
    update = None
    if len(lines) == 2:
        second = _VMWARE_L.fullmatch(lines[1])
        if not second:
            raise ParseError(command, 2, lines[1], "expected '<product> <version> Update <n>' or '... GA'")
        short, full = second["version"].split("."), first["version"].split(".")
        if second["product"] != first["product"] or full[: len(short)] != short:
            raise ParseError(command, 2, lines[1], "product or version differs from line 1")
        update = second["update"] or "0"
    return EsxiVersion(
        product=first["product"], version=first["version"], build=first["build"], update=update
    )


def parse_net_stats(text: str) -> tuple[NetStatsPort, ...]:
    """`net-stats -l`: one row per switch port under a fixed header; empty lines are skipped."""
    command = " ".join(NET_STATS_ARGV)
    lines = text.split("\n")
    if lines[0] != NET_STATS_HEADER:
        raise ParseError(command, 1, lines[0], "expected the net-stats header line")
    ports = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        where = Where(command, line_no, line)
        match = _NET_STATS_ROW.fullmatch(line)
        if not match:
            raise where.error("expected 'PortNum Type SubType SwitchName MACAddress  ClientName'")
        port = NetStatsPort(
            port_num=u32(match["port"], "PortNum", where),
            type=int(match["type"]),
            subtype=int(match["subtype"]),
            switch_name=match["switch"],
            mac=match["mac"],
            client_name=match["client"],
        )
        if format_net_stats_row(port) != line:
            raise where.error("columns are not where net-stats puts them")
        ports.append(port)
    return tuple(ports)
