"""The simulated pktcap-uw's words: help, echo and status lines per version, the console packet dump.

ESXi 5.5/6.x lines have no period, 7.x/8.x lines end with one and add thread lines; in `-o` mode on 7+
every line after option parsing starts with `pktcap: ` (REFERENCE §1.6.6). The 6.0 help is verbatim; the
6.7+ help is the verbatim 8.x synopsis completed with the 6.0 option text (INFERRED). Filter echoes other
than IP protocol and source IP are INFERRED by analogy.
"""

from __future__ import annotations

import ipaddress
import re
import time

from esxcap.esxi.capabilities import Capabilities

HELP_60 = "".join(
    "Packet Capture and Trace command usage:\n"
    "\t== Create session to capture packets == \n"
    "\t pktcap-uw [--capture <capture point> | [--dir <0/1>] [--stage <0/1>]  \n"
    "\t        [-K|--kernelside]]\n"
    "\t    [--switchport <PortID> | --vmk <vmknic> | --uplink <vmnic> |\n"
    "\t       --dvfilter <filter name>]\n"
    "\t       --lifID <lif id for vdr>]\n"
    "\t    [-f [module name.]<function name>]\n"
    "\t    [-AFhP] [-p|--port <Socket PORT>]\n"
    "\t    [-c|--count <number>] [-s|--snapLen <length>]\n"
    "\t    [-o|--outfile <FILE>] [--console]\n"
    "\t    [Flow filter options]\n"
    "\n"
    "\t== Create session to trace packets path == \n"
    "\t pktcap-uw --trace\n"
    "\t    [-AFhP] [-p|--port <Socket PORT>]\n"
    "\t    [-c|--count <number>] [-s|--snapLen <length>]\n"
    "\t    [-o|--outfile <FILE>] [--console]\n"
    "\t    [Flow filter options]\n"
    "\n"
    "The command options:\n"
    "\t-p, --port <Socket PORT>\n"
    "\t\tSpecify the port number of vsocket server.\n"
    "\t-o, --outfile <FILE>\n"
    "\t\tSpecify the file name to dump the packets. If unset, \n"
    "\t\toutput to console by default. If '-', then stdout is used.\n"
    "\t-P, --ng   (only working with '-o')\n"
    "\t\tUsing the pcapng format to dump into the file.\n"
    "\t--console  (by default if without '-o')\n"
    "\t\tOutput the captured packet info to console.\n"
    "\t-s, --snaplen <length>\n"
    "\t\tOnly capture the first <length> packet buffer.\n"
    "\t\tThe minimum snap length is 24 bytes. However, setting \n"
    "\t\tsnaplen to 0 will capture entire packet.\n"
    "\t-c, --count <NUMBER>\n"
    "\t\tHow many count packets to capture.\n"
    "\t-h\n"
    "\t\tPrint this help.\n"
    "\t-A, --availpoints\n"
    "\t\tList all capture points supported.\n"
    "\t-F \n"
    "\t\tList all dynamic capture point functions supported.\n"
    "\t--capture <capture point>\n"
    "\t\tSpecify the capture point. Use '-A' to get the list.\n"
    "\t\tIf not specified, will select the capture point\n"
    "\t\tby --dir and --stage setting\n"
    "\n"
    "The switch port options:\n"
    "(for Port, Uplink and Etherswitch related capture points)\n"
    "\t--switchport <port ID>\n"
    "\t\tSpecify the switch port by ID\n"
    "\t--lifID <lif ID>\n"
    "\t\tSpecify the logical interface id of VDR port\n"
    "\t--vmk <vmk NIC>\n"
    "\t\tSpecify the switch port by vmk NIC\n"
    "\t--uplink <vmnic>\n"
    "\t\tSpecify the switch port by vmnic\n"
    "\n"
    "The capture point auto selection options without --capture:\n"
    "\t--dir <0|1>  (for --switchport, --vmk, --uplink)\n"
    "\t\tThe direction of flow: 0- Rx (Default), 1- Tx\n"
    "\t--stage <0|1>  (for --switchport, --vmk, --uplink, --dvfilter)\n"
    "\t\tThe stage at which to capture: 0- Pre: before, 1- Post:After\n"
    "\t--kernelside (for --uplink)\n"
    "\t\tThe capture point is in kernel instead of in driver\n"
    "\n"
    "The capture point options\n"
    "\t-f [module name.]<function name>\n"
    "\t\tThe function name. The Default module name is 'vmkernel'.\n"
    "\t\t(for 'Dynamic', 'IOChain' and 'TcpipDispatch' capture points)\n"
    "\t--dvfilter <filter name>\n"
    "\t\tSpecify the dvfilter name for DVFilter related points\n"
    "\n"
    "Flow filter options, it will be applied when set:\n"
    "\t--srcmac <xx:xx:xx:xx:xx>\n"
    "\t\tThe Ethernet source MAC address.\n"
    "\t--dstmac <xx:xx:xx:xx:xx>\n"
    "\t\tThe Ethernet destination MAC address.\n"
    "\t--mac <xx:xx:xx:xx:xx>\n"
    "\t\tThe Ethernet MAC address(src or dst).\n"
    "\t--ethtype 0x<ETHTYPE>\n"
    "\t\tThe Ethernet type. HEX format.\n"
    "\t--vlan <VLANID>\n"
    "\t\tThe Ethernet VLAN ID.\n"
    "\t--srcip <x.x.x.x[/<range>]>\n"
    "\t\tThe source IP address.\n"
    "\t--dstip <x.x.x.x[/<range>]>\n"
    "\t\tThe destination IP address.\n"
    "\t--ip <x.x.x.x>\n"
    "\t\tThe IP address(src or dst).\n"
    "\t--proto 0x<IPPROTYPE>\n"
    "\t\tThe IP protocol.\n"
    "\t--srcport <SRCPORT>\n"
    "\t\tThe TCP source port.\n"
    "\t--dstport <DSTPORT>\n"
    "\t\tThe TCP destination port.\n"
    "\t--tcpport <PORT>\n"
    "\t\tThe TCP port(src or dst).\n"
    "\t--vxlan <vxlan id>\n"
    "\t\tThe vxlan id of flow.\n"
)
_SYNOPSIS_8X = "".join(
    "Packet Capture and Trace command usage:\n"
    "\t== Create session to capture packets ==\n"
    "\t pktcap-uw [--capture <capture point>[,capture point]...\n"
    "\t      | [--dir <0|input|1|output|2|inputAndOutput>]\n"
    "\t        [--stage <0|pre|1|post>] [-K|--kernelside]]\n"
    "\t    [--switchport <PortID> | --vmk <vmknic> | --uplink <vmnic> |\n"
    "\t       --fcport [fastpathSwitchID.]<PortID> |\n"
    "\t       --dvfilter <filter name> |\n"
    "\t       --overlay <overlay class name>]\n"
    "\t    [--lifID <lif id for vdr>]\n"
    "\t    [-f [module name.]<function name>[:offset]]\n"
    "\t    [-AFhP] [-p|--port <Socket PORT>]\n"
)
_REST_FROM = HELP_60.index("\t    [-c|--count <number>]")


def help_text(caps: Capabilities) -> str:
    """`pktcap-uw -h` (stdout)."""
    return HELP_60 if caps.version < (6, 7) else _SYNOPSIS_8X + HELP_60[_REST_FROM:]


def usage_error(problem: str) -> str:
    """A command line pktcap-uw cannot parse (INFERRED: getopt's line, then a pointer to -h)."""
    return f"pktcap-uw: {problem}\nPlease check the usage with 'pktcap-uw -h'.\n"


PORT_GONE = "error: The port was disconnected; the capture ended."  # INFERRED (the `pktcap_fail_after` fault)
DIR_ECHO = ("The dir is Rx", "The dir is Output", "The dir is Input and Output")  # the last INFERRED

_FILTER_WORDS = {
    "srcmac": "source MAC address",
    "dstmac": "destination MAC address",
    "mac": "MAC address",
    "ethtype": "Ethernet type",
    "vlan": "VLAN ID",
    "srcip": "source IP address",
    "dstip": "destination IP address",
    "ip": "IP address",
    "proto": "IP protocol",
    "srcport": "source port",
    "dstport": "destination port",
    "tcpport": "TCP port",
    "vxlan": "vxlan id",
    "srctcpport": "source TCP port",
    "dsttcpport": "destination TCP port",
    "udpport": "UDP port",
    "srcudpport": "source UDP port",
    "dstudpport": "destination UDP port",
}
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,4}")


def filter_echo(name: str, value: str) -> str:
    return f"The session filter {_FILTER_WORDS[name]} is {value}"


def filter_value_ok(name: str, value: str) -> bool:
    """Whether pktcap-uw would take `value` for filter `name`."""
    if name in ("srcmac", "dstmac", "mac"):
        return bool(_MAC.fullmatch(value))
    if name in ("ethtype", "proto"):
        return bool(_HEX.fullmatch(value)) and (name == "ethtype" or int(value, 16) <= 0xFF)
    if name in ("srcip", "dstip", "ip"):
        try:
            ipaddress.IPv4Network(value if name != "ip" else value + "/32", strict=False)
        except ValueError:
            return False
        return True
    limit = {"vlan": 4095, "vxlan": 2**24 - 1}.get(name, 65535)
    return value.isdigit() and int(value) <= limit


class Says:
    """Status lines of one run, in the version's punctuation."""

    def __init__(self, new_style: bool) -> None:
        self.new_style = new_style
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(finish(text, self.new_style))


def finish(text: str, new_style: bool) -> str:
    return text + "." if new_style and not text.endswith(".") else text


def startup(
    new_style: bool, outfile: str | None, server_port: int, vsock_port: int, thread_ids: list[int]
) -> list[str]:
    """The lines after option parsing, up to the accepted vsock connection."""
    lines = []
    port_line = f"No server port specifed, select {server_port} as the port"
    target = "Output the packet info to console." if outfile is None else f"The output file is {outfile}"
    if new_style:
        lines += [finish(target, True), finish(port_line, True)] if outfile else [port_line + ".", target]
        lines += ["Local CID 2.", f"Listen on port {server_port}."]
        lines += [
            f"{n}: {t}."
            for n, t in zip(("Main thread", "Dump Thread", "Recv Thread"), thread_ids, strict=True)
        ]
        lines += ["Accept...", f"Vsock connection from port {vsock_port} cid 2."]
    else:
        lines += [port_line, target, "Local CID 2", f"Listen on port {server_port}"]
        lines.append(f"Accept...Vsock connection from port {vsock_port} cid 2")
    return lines


def trailer(
    new_style: bool, session: int, outfile: str | None, packets: int, dropped: int, v55: bool = False
) -> list[str]:
    """The closing lines; 5.5 sums up as `Dump: N, broken : B, drop: D, file err: E` (REFERENCE §9)."""
    where = "console" if outfile is None else f"file {outfile}"
    summary = [f"Dumped {packets} packet to {where}, dropped {dropped} packets.", "Done."]
    if v55:
        summary = [f"Dump: {packets}, broken : 0, drop: {dropped}, file err: 0", "Done."]
    if new_style:
        return [
            "Receive thread exiting...",
            "Dump thread exiting...",
            "Join with dump thread failed.",
            "Join with recvthread failed.",
            f"Destroying session {session}.",
            *summary,
        ]
    return [
        "Receive thread exiting... ",
        "Dump thread exiting... ",
        f"Destroying session {session} ",
        "",
        *summary,
    ]


def prefixed(lines: list[str], prefix: bool) -> bytes:
    return "".join(("pktcap: " if prefix else "") + line + "\n" for line in lines).encode()


def console_packet(new_style: bool, number: int, ts_ns: int, point: str, vlan: int, frame: bytes) -> str:
    """One packet of the console dump: header line, segment line, hex rows (REFERENCE §1.6.2-1.6.4)."""
    clock = time.strftime("%H:%M:%S", time.gmtime(ts_ns // 1_000_000_000))
    stamp = f"{clock}.{ts_ns // 1000 % 1_000_000:06d}[{number}]"
    tag = f"VLAN tag {vlan}, " if vlan else ""
    if new_style:
        head = f"{stamp} Captured at {point} point, {tag}Checksum not offloaded and verified, "
        head += f"length {len(frame)}."
        indent, segment, end = "\t", max(2048, len(frame)), ""
    else:
        head = (
            f"{stamp} Captured at {point} point, TSO not enabled, Checksum not offloaded and not verified, "
            f"{tag}length {len(frame)}."
        )
        indent, segment, end = "", len(frame), " "
    rows = [head, f"{indent}Segment[0] ---- {segment} bytes:"]
    for offset in range(0, len(frame), 16):
        chunk = frame[offset : offset + 16].hex()
        groups = " ".join(chunk[i : i + 4] for i in range(0, len(chunk), 4))
        rows.append(f"{indent}0x{offset:04x}:  {groups}{end}")
    return "\n".join(rows) + "\n"
