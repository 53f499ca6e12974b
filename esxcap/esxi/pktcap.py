"""pktcap-uw invocations: the capture spec, the argv builder, and the in/out/both plan per target kind.

Pure: a `CaptureSpec` plus a host's `Capabilities` give an argv list (never a shell string; quoting
happens once, in esxcap.esxi.remote). Every value is validated again here, and anything the host cannot do
is refused with a UsageError naming the host, its ESXi version, what is unsupported and the alternative.
The argv always uses pktcap-uw's numeric `--dir`/`--stage` forms (word forms exist only on newer hosts)
and always streams the capture to stdout (`-o -`): nothing is written on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from esxcap.errors import UsageError
from esxcap.esxi import validate
from esxcap.esxi.capabilities import KNOWN_POINTS, Capabilities

SelectorKind = Literal["switchport", "vmk", "uplink", "lifID", "dvfilter", "none"]
TargetKind = Literal["vnic", "vmk", "switchport", "uplink"]
Direction = Literal["in", "out", "both"]

VNIC_POINTS = frozenset({"VnicRx", "VnicTx", "Vmxnet3Rx", "Vmxnet3Tx"})
UPLINK_POINTS = frozenset({"UplinkRcv", "UplinkSnd", "UplinkRcvKernel", "UplinkSndKernel"})
PORT_POINTS = frozenset({"PortInput", "PortOutput"})
DVFILTER_POINTS = frozenset({"PreDVFilter", "PostDVFilter"})
VDR_POINTS = frozenset({"VdrRxLeaf", "VdrTxLeaf", "VdrRxTerminal", "VdrTxTerminal"})
FUNCTION_POINTS = frozenset({"Dynamic", "IOChain", "TcpipDispatch"})
EQUIVALENT_POINTS = {
    "VnicRx": "Vmxnet3Rx",
    "VnicTx": "Vmxnet3Tx",
    "Vmxnet3Rx": "VnicRx",
    "Vmxnet3Tx": "VnicTx",
    "UplinkRcvKernel": "UplinkRcv",
    "UplinkSndKernel": "UplinkSnd",
}
TCP_FILTERS = ("srcport", "dstport", "tcpport", "srctcpport", "dsttcpport")
UDP_FILTERS = ("udpport", "srcudpport", "dstudpport")
LATER_PORT_FILTERS = ("srctcpport", "dsttcpport", "udpport", "srcudpport", "dstudpport")


@dataclass(frozen=True)
class Selector:
    """What to capture on: a switch port id, vmkN, vmnicN, a VDR lif, a DVFilter, or nothing (Drop)."""

    kind: SelectorKind
    value: str | int | None = None


@dataclass(frozen=True)
class FlowFilter:
    """pktcap-uw's flow filters (all ANDed); None = not set. Field names are the option names."""

    srcmac: str | None = None
    dstmac: str | None = None
    mac: str | None = None
    ethtype: str | None = None
    vlan: int | str | None = None
    srcip: str | None = None
    dstip: str | None = None
    ip: str | None = None
    proto: str | None = None
    srcport: int | str | None = None
    dstport: int | str | None = None
    tcpport: int | str | None = None
    vxlan: int | str | None = None
    srctcpport: int | str | None = None
    dsttcpport: int | str | None = None
    udpport: int | str | None = None
    srcudpport: int | str | None = None
    dstudpport: int | str | None = None
    rcf: str | None = None
    """A pcap filter expression for `--rcf` (7.0+), passed as one argv element."""


# Filter field -> validator, in the order the options go into the argv.
_FILTERS = (
    ("srcmac", validate.mac),
    ("dstmac", validate.mac),
    ("mac", validate.mac),
    ("ethtype", validate.ethtype),
    ("vlan", validate.vlan),
    ("srcip", validate.ipv4_prefix),
    ("dstip", validate.ipv4_prefix),
    ("ip", validate.ipv4),
    ("proto", validate.proto),
    ("srcport", validate.port),
    ("dstport", validate.port),
    ("tcpport", validate.port),
    ("vxlan", validate.vxlan),
    ("srctcpport", validate.port),
    ("dsttcpport", validate.port),
    ("udpport", validate.port),
    ("srcudpport", validate.port),
    ("dstudpport", validate.port),
)


@dataclass(frozen=True)
class CaptureSpec:
    """One pktcap-uw run. `points` empty = pktcap-uw picks the point from `dir`/`stage` itself.

    Values may be the user's text (`dir="inputAndOutput"`, `count="100"`): `build_argv` validates them all.
    """

    selector: Selector
    points: tuple[str, ...] = ()
    dir: int | str | None = None
    stage: int | str | None = None
    kernelside: bool = False
    function: str | None = None
    count: int | str | None = None
    snaplen: int | str = 0
    filters: FlowFilter = FlowFilter()
    ng: bool = False


@dataclass(frozen=True)
class StreamPlan:
    """One stream of a capture: the points and `--dir` to put in a CaptureSpec, and labels for people."""

    points: tuple[str, ...]
    dir: int | None
    label: str
    direction: Direction


class _Refusal:
    """Builds the refusals of one host: message names host, version and the problem; hint the alternative."""

    def __init__(self, host: str, caps: Capabilities) -> None:
        self.where = f"{host} ({caps.label})"

    def __call__(self, problem: str, alternative: str) -> UsageError:
        return UsageError(f"{self.where}: {problem}", alternative)


def build_argv(spec: CaptureSpec, caps: Capabilities, host: str) -> list[str]:
    """The pktcap-uw argv for `spec` on a host with `caps`, or a UsageError if the host cannot do it."""
    refuse = _Refusal(host, caps)
    if not caps.has_pktcap:
        raise refuse("pktcap-uw exists from ESXi 5.5 on", "capture with tcpdump-uw on a vmknic instead")
    argv = ["pktcap-uw", *_selector_args(spec.selector)]
    points = _points(spec, caps, refuse)
    if points:
        argv += ["--capture", ",".join(points)]
    if spec.dir is not None:
        code = validate.direction_code(spec.dir, "--dir")
        if code == 2 and not caps.dir_both:
            raise refuse(
                "pktcap-uw has no --dir 2 (both directions) before ESXi 6.7",
                "capture each direction in its own stream (--dir 0 and --dir 1) and merge them",
            )
        argv += ["--dir", str(code)]
    if spec.stage is not None:
        argv += ["--stage", str(validate.stage_code(spec.stage, "--stage"))]
    if spec.kernelside:
        argv.append("--kernelside")
    if spec.function is not None:
        argv += ["-f", _function(spec.function, caps, refuse)]
    if spec.count is not None:
        argv += ["-c", str(validate.count(spec.count, "-c"))]
    argv += ["-s", str(validate.snaplen(spec.snaplen, "-s"))]
    argv += _filter_args(spec.filters, caps, refuse)
    if spec.ng:
        if not caps.pcapng:
            raise refuse(
                "pktcap-uw cannot write pcapng (--ng) before ESXi 6.0",
                "capture plain pcap; esxcap writes pcapng locally anyway",
            )
        argv.append("--ng")
    return [*argv, "-o", "-"]


def _selector_args(selector: Selector) -> list[str]:
    value = selector.value
    if selector.kind == "none":
        if value is not None:
            raise UsageError(f"selector 'none' takes no value, got {value!r}", "leave the value empty")
        return []
    if value is None:
        raise UsageError(f"--{selector.kind} needs a value", "give the port id, NIC or filter name")
    match selector.kind:
        case "switchport":
            return ["--switchport", str(validate.switchport(value, "--switchport"))]
        case "vmk":
            return ["--vmk", validate.vmk(str(value), "--vmk")]
        case "uplink":
            return ["--uplink", validate.uplink(str(value), "--uplink")]
        case "lifID":
            return ["--lifID", validate.lif_id(str(value), "--lifID")]
        case "dvfilter":
            return ["--dvfilter", validate.dvfilter(str(value), "--dvfilter")]


def _points(spec: CaptureSpec, caps: Capabilities, refuse: _Refusal) -> tuple[str, ...]:
    known = (*caps.points, *KNOWN_POINTS)
    points = tuple(validate.capture_point(point, "--point", known) for point in spec.points)
    for point in points:
        if not caps.has_point(point):
            other = EQUIVALENT_POINTS.get(point)
            if other and caps.has_point(other):
                alternative = f"use {other}, the name of that point on this host"
            else:
                alternative = "points on this host: " + ", ".join(caps.points)
            raise refuse(f"no capture point {point}", alternative)
    if len(set(points)) != len(points):
        raise refuse(f"capture point listed twice in {','.join(points)}", "list each point once")
    if len(points) > 1 and not caps.multi_point:
        raise refuse(
            "pktcap-uw takes one capture point per run before ESXi 6.7",
            "capture each point in its own stream and merge them",
        )
    _check_combination(spec, points, caps, refuse)
    return points


def _check_combination(
    spec: CaptureSpec, points: tuple[str, ...], caps: Capabilities, refuse: _Refusal
) -> None:
    kind = spec.selector.kind
    given = set(points)
    if "Drop" in given and len(points) > 1:
        raise refuse("the Drop point takes no other point", "capture 'Drop' in its own stream")
    if "Drop" in given and kind != "none" and not (kind == "switchport" and caps.drop_with_port):
        if caps.drop_with_port:
            raise refuse("the Drop point takes --switchport or no selector", "select a switch port or none")
        raise refuse(
            "the Drop point stands alone before ESXi 8.0: no selector",
            "capture 'Drop' host-wide without a selector (--capture Drop --switchport N is from 8.0)",
        )
    if kind == "none" and not given <= {"Drop", "Dynamic", "PktFree"}:
        raise refuse(
            "capture points other than Drop, Dynamic and PktFree need a selector",
            "add --switchport, --vmk, --uplink, --dvfilter or --lif",
        )
    if kind == "dvfilter":
        if not given <= DVFILTER_POINTS:
            raise refuse(
                "--dvfilter works with PreDVFilter/PostDVFilter only", "capture PreDVFilter or PostDVFilter"
            )
        if not given and spec.stage is None:
            raise refuse("--dvfilter needs a point or a stage", "add --stage 0 (pre) or 1 (post)")
    elif given & DVFILTER_POINTS:
        raise refuse("PreDVFilter/PostDVFilter need --dvfilter", "name the filter with --dvfilter")
    if kind == "lifID" and not (given and given <= VDR_POINTS):
        raise refuse(
            "--lif needs a Vdr* point", "capture VdrRxLeaf, VdrTxLeaf, VdrRxTerminal or VdrTxTerminal"
        )
    if kind != "lifID" and given & VDR_POINTS:
        raise refuse("Vdr* points need --lif", "name the logical interface with --lif")
    if given & VNIC_POINTS and kind != "switchport":
        raise refuse(
            "vNIC points need the vNIC's --switchport", "select the VM's switch port with --switchport"
        )
    if given & UPLINK_POINTS and kind != "uplink":
        raise refuse("uplink points need --uplink", "select the physical NIC with --uplink vmnicN")
    if given & PORT_POINTS and kind not in ("switchport", "vmk", "uplink"):
        raise refuse("PortInput/PortOutput need a port", "add --switchport, --vmk or --uplink")
    if not points and kind not in ("switchport", "vmk", "uplink", "dvfilter"):
        raise refuse(f"no capture point given for selector {kind}", "name the point with --point")
    if spec.kernelside and kind not in ("uplink", "switchport"):
        raise refuse(
            "--kernelside applies to --uplink and --switchport only",
            "drop --kernelside or select an uplink or switch port",
        )
    if "Dynamic" in given and spec.function is None:
        raise refuse("the Dynamic point needs a function (-f)", "give -f [module.]function")
    if spec.function is not None and not given & FUNCTION_POINTS:
        raise refuse(
            "-f applies to the Dynamic, IOChain and TcpipDispatch points only",
            "capture one of those points or drop -f",
        )


def _function(value: str, caps: Capabilities, refuse: _Refusal) -> str:
    text = validate.function(value, "-f")
    if ":" in text and not caps.function_offset:
        raise refuse("-f takes no :offset before ESXi 8.0", "give the function without an offset")
    return text


def _filter_args(filters: FlowFilter, caps: Capabilities, refuse: _Refusal) -> list[str]:
    args: list[str] = []
    values: dict[str, str] = {}
    for name, check in _FILTERS:
        raw = getattr(filters, name)
        if raw is None:
            continue
        if name in LATER_PORT_FILTERS and not caps.later_port_filters:
            raise refuse(
                f"pktcap-uw has no --{name} before ESXi 6.7",
                "use --srcport/--dstport/--tcpport for TCP; for UDP filter --proto 0x11 here "
                "and select ports when reading the capture",
            )
        values[name] = str(check(raw, f"--{name}"))
        args += [f"--{name}", values[name]]
    tcp = [name for name in TCP_FILTERS if name in values]
    udp = [name for name in UDP_FILTERS if name in values]
    if tcp and udp:
        raise refuse(
            f"--{tcp[0]} (TCP) and --{udp[0]} (UDP) together never match", "keep one protocol's ports"
        )
    if filters.rcf is not None:
        if not caps.rcf:
            raise refuse(
                "pktcap-uw has no --rcf (pcap filter expressions) before ESXi 7.0",
                "use the flow-filter options instead (--ip/--srcip/--dstip, --mac, --proto, --tcpport, "
                "--srcport/--dstport, --vlan, --ethtype) and narrow further when reading the capture",
            )
        args += ["--rcf", validate.filter_expression(filters.rcf, "--filter")]
    wanted = "0x06" if tcp else "0x11" if udp else None
    if wanted and values.get("proto", wanted) != wanted:
        ports = (tcp or udp)[0]
        raise refuse(
            f"--{ports} is a {'TCP' if tcp else 'UDP'} port but --proto is {values['proto']}",
            f"use --proto {wanted} or drop the port filter",
        )
    return args


def points_for(
    kind: TargetKind, direction: Direction, caps: Capabilities, *, separate: bool = False
) -> tuple[StreamPlan, ...]:
    """The streams that capture `direction` (seen from the VM / vmknic / wire) on a target of `kind`.

    in/out: one stream at one point. both: one stream where the host can (vNIC and uplink: both points in
    one `--capture`; vmk and switch port: `--dir 2`), else - or with `separate` - one stream per direction.
    """
    inward, outward = _direction_points(kind, caps)
    one_in = StreamPlan((inward,), None, inward, "in")
    one_out = StreamPlan((outward,), None, outward, "out")
    if direction == "in":
        return (one_in,)
    if direction == "out":
        return (one_out,)
    label = f"{inward},{outward}"
    if not separate and kind in ("vmk", "switchport") and caps.dir_both:
        return (StreamPlan((), 2, label, "both"),)
    if not separate and kind in ("vnic", "uplink") and caps.multi_point:
        return (StreamPlan((inward, outward), None, label, "both"),)
    return (one_in, one_out)


def _direction_points(kind: TargetKind, caps: Capabilities) -> tuple[str, str]:
    """(in, out) points: vNIC VnicRx/VnicTx (VnicTx = the VM sends); a port's PortOutput is what the
    vmknic or VM receives; an uplink's Rcv is what comes from the wire."""
    if kind == "vnic":
        return _present(caps, "VnicRx", "Vmxnet3Rx"), _present(caps, "VnicTx", "Vmxnet3Tx")
    if kind == "uplink":
        return _present(caps, "UplinkRcvKernel", "UplinkRcv"), _present(caps, "UplinkSndKernel", "UplinkSnd")
    return "PortOutput", "PortInput"


def _present(caps: Capabilities, preferred: str, fallback: str) -> str:
    return preferred if caps.has_point(preferred) or not caps.has_point(fallback) else fallback
