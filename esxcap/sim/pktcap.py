"""The simulated pktcap-uw's command line: argv -> a capture `Session` or an immediate answer (pure).

Options are parsed like getopt_long_only (REFERENCE §1.4: `-dir 0` works; `--opt=value` too), for the
host's version persona (`esxcap.esxi.capabilities`): several points per `--capture`, `--dir 2` and word forms
from 6.7, `--stage pre|post` from 8.0, the later port filters from 6.7, `--ng` from 6.0, `-f` offsets
from 8.0, `--rcf` expressions (esxcap.sim.rcf) from 7.0. Without `--capture` the point follows the
selector: vmk/switchport PortInput (`--dir 0`), PortOutput (1), both (2); uplink EtherswitchDispath (0)
or EtherswitchOutput (1), Uplink*Kernel with `-K`; dvfilter PreDVFilter (stage 0) or PostDVFilter (1).
Error texts other than the unknown capture point are INFERRED (never seen verbatim); they all start with
`error: ` and exit 1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from esxcap.esxi.capabilities import Capabilities, render_available_points
from esxcap.sim import pktcap_text
from esxcap.sim.frames import PROTO_TCP, PROTO_UDP, Fields
from esxcap.sim.rcf import Predicate, RcfError, compile_filter
from esxcap.sim.topology import Host
from esxcap.sim.traffic import DROP, Place, dvfilter_name

ERROR_STATUS = 1
_VALUED = {
    "switchport", "vmk", "uplink", "dvfilter", "lifID", "fcport", "overlay", "capture", "dir", "stage",
    "f", "port", "count", "snaplen", "outfile", "G", "C", "W", "rcf",
}  # fmt: skip
_FLAGS = {"availpoints", "F", "h", "ng", "console", "kernelside", "trace", "e"}
_SHORT = {
    "p": "port",
    "c": "count",
    "s": "snaplen",
    "o": "outfile",
    "A": "availpoints",
    "P": "ng",
    "K": "kernelside",
}
_ALIASES = {"snapLen": "snaplen"}
FILTERS = ("srcmac", "dstmac", "mac", "ethtype", "vlan", "srcip", "dstip", "ip", "proto",
           "srcport", "dstport", "tcpport", "vxlan")  # fmt: skip
LATER_FILTERS = ("srctcpport", "dsttcpport", "udpport", "srcudpport", "dstudpport")
_DIR_WORDS = {"0": 0, "1": 1, "2": 2, "input": 0, "output": 1, "inputandoutput": 2}
_STAGE_WORDS = {"0": 0, "1": 1, "pre": 0, "post": 1}


class PktcapError(Exception):
    """pktcap-uw refuses the command line: `text` goes to stderr, then exit 1."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Filter:
    """The flow filters, parsed; all set ones must match (pktcap-uw ANDs them)."""

    values: tuple[tuple[str, str], ...] = ()
    expression: Predicate | None = field(default=None, compare=False)
    """The compiled `--rcf` expression (7.0+), ANDed with the flow filters."""

    def matches(self, f: Fields) -> bool:
        return all(_match(name, value, f) for name, value in self.values) and (
            self.expression is None or self.expression(f)
        )


def _match(name: str, value: str, f: Fields) -> bool:
    if name in ("srcmac", "dstmac", "mac"):
        mac = value.lower().replace("-", ":")
        return {"srcmac": f.src_mac == mac, "dstmac": f.dst_mac == mac}.get(
            name, mac in (f.src_mac, f.dst_mac)
        )
    if name == "ethtype":
        return f.ethtype == int(value, 16)
    if name == "vlan":
        return f.vlan == int(value)
    if name in ("srcip", "dstip", "ip"):
        net = ipaddress.IPv4Network(value, strict=False)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        got = {"srcip": (f.src_ip,), "dstip": (f.dst_ip,)}.get(name, (f.src_ip, f.dst_ip))
        return any(ip is not None and lo <= ip <= hi for ip in got)
    if name == "proto":
        return f.proto == int(value, 16)
    if name == "vxlan":
        return False
    proto = PROTO_UDP if "udp" in name else PROTO_TCP
    if f.proto != proto:
        return False
    port = int(value)
    if name.startswith("src"):
        return f.src_port == port
    if name.startswith("dst"):
        return f.dst_port == port
    return port in (f.src_port, f.dst_port)


@dataclass(frozen=True)
class Session:
    """A capture to run: where it listens, what it keeps, where output goes, what it says first."""

    argv: tuple[str, ...]
    places: tuple[tuple[Place, str], ...]
    filter: Filter
    count: int | None
    snaplen: int
    outfile: str | None
    pcapng: bool
    new_style: bool
    echoes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Answer:
    """A run that ends at once: `-A`, `-h`, or a refusal."""

    stdout: str = ""
    stderr: str = ""
    status: int = 0


def capabilities(host: Host) -> Capabilities:
    """The host's pktcap-uw: its version's table, with only one pair of vNIC point names where the
    host's `vnic_points` says so (6.7 had either, REFERENCE §9)."""
    caps = Capabilities.for_version(host.version_tuple)
    dropped = {"Vnic": ("Vmxnet3Rx", "Vmxnet3Tx"), "Vmxnet3": ("VnicRx", "VnicTx")}.get(
        host.faults.vnic_points
    )
    if not dropped:
        return caps
    return replace(caps, points=tuple(p for p in caps.points if p not in dropped))


def parse(host: Host, argv: list[str] | tuple[str, ...]) -> Session | Answer:
    """What `pktcap-uw ARGS` does on `host` (argv[0] is the program name)."""
    caps = capabilities(host)
    try:
        opts = _options(list(argv[1:]), caps)
        if "h" in opts:
            return Answer(stdout=pktcap_text.help_text(caps))
        if "availpoints" in opts:
            return Answer(stdout=_listing(host, caps))
        return _session(host, caps, tuple(argv), opts)
    except PktcapError as exc:
        return Answer(stderr=exc.text, status=ERROR_STATUS)


NOISY_LISTING_LINES = ("pktcap: Main thread: 330745392000.", "Warning: some points are marked obsoleted")
UNREADABLE_LISTING = "Capture point listing is not available in this mode.\n"  # INFERRED


def _listing(host: Host, caps: Capabilities) -> str:
    """`pktcap-uw -A` as the host's `points_listing` fault asks: the table layout, the same with noise
    (7.x `pktcap: ` prefixes, blank and unknown lines), or nothing esxcap can read."""
    mode = host.faults.points_listing
    if mode == "unreadable":
        return UNREADABLE_LISTING
    text = render_available_points(caps.points)
    if mode == "noisy":
        lines = text.splitlines()
        prefixed = ["pktcap: " + line for line in lines[1:3]]
        lines = [lines[0], NOISY_LISTING_LINES[0], "", *prefixed, *lines[3:]]
        text = "\n".join([*lines, NOISY_LISTING_LINES[1]]) + "\n"
    return text


def _options(args: list[str], caps: Capabilities) -> dict[str, str]:
    opts: dict[str, str] = {}
    filters = FILTERS + (LATER_FILTERS if caps.later_port_filters else ())
    valued = _VALUED | set(filters)
    flags = set(_FLAGS)
    if not caps.pcapng:
        flags.discard("ng")
    if caps.version < (8, 0):
        valued -= {"fcport", "overlay"}
    if not caps.rcf:
        valued.discard("rcf")
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-":
            raise PktcapError(pktcap_text.usage_error(f"unexpected argument '{arg}'"))
        name, eq, value = arg.lstrip("-").partition("=")
        name = _ALIASES.get(name, name)
        if len(name) == 1 and not arg.startswith("--"):
            name = _SHORT.get(name, name)
        if name in flags:
            opts[name] = ""
        elif name in valued:
            if not eq:
                if not args:
                    raise PktcapError(pktcap_text.usage_error(f"option '{arg}' requires an argument"))
                value = args.pop(0)
            opts[name] = value
            opts.setdefault("_order", "")
            opts["_order"] += name + " "
        else:
            raise PktcapError(pktcap_text.usage_error(f"unrecognized option '{arg}'"))
    return opts


def _number(opts: dict[str, str], name: str, low: int, high: int) -> int | None:
    if name not in opts:
        return None
    text = opts[name]
    if not text.isdigit() or not low <= int(text) <= high:
        raise PktcapError(f"error: Invalid {name} value: {text}\n")  # INFERRED
    return int(text)


def _session(host: Host, caps: Capabilities, argv: tuple[str, ...], opts: dict[str, str]) -> Session:
    say = pktcap_text.Says(caps.version >= (7, 0))
    place, kind = _selector(host, opts, say)
    direction = None
    if "dir" in opts:
        direction = _DIR_WORDS.get(opts["dir"].lower() if caps.dir_words else opts["dir"])
        if direction is None or (direction == 2 and not caps.dir_both):
            raise PktcapError(f"error: Invalid direction: {opts['dir']}\n")  # INFERRED
        say.line(pktcap_text.DIR_ECHO[direction])
    stage = None
    if "stage" in opts:
        words = _STAGE_WORDS if caps.stage_words else {"0": 0, "1": 1}
        stage = words.get(opts["stage"].lower())
        if stage is None:
            raise PktcapError(f"error: Invalid stage: {opts['stage']}\n")  # INFERRED
        say.line(f"The Stage is {'Post' if stage else 'Pre'}")
    count = _number(opts, "count", 1, 2**32 - 1)
    if count is not None:
        say.line(f"To capture {count} packets")
    snaplen = _number(opts, "snaplen", 0, 262144) or 0
    if 0 < snaplen < 24:
        raise PktcapError("error: The minimum snap length is 24 bytes.\n")  # INFERRED
    filt = _filters(opts, say)
    points = _points(caps, opts, kind, direction, stage, say)
    if "f" in opts and ":" in opts["f"] and not caps.function_offset:
        raise PktcapError(f"error: Invalid function name: {opts['f']}\n")  # INFERRED
    places = tuple((DROP if p == "Drop" else place, p) for p in points)
    outfile = opts.get("outfile")
    return Session(
        argv=argv,
        places=places,
        filter=filt,
        count=count,
        snaplen=snaplen,
        outfile=outfile,
        pcapng="ng" in opts and outfile is not None,
        new_style=caps.version >= (7, 0),
        echoes=tuple(say.lines),
    )


def _selector(host: Host, opts: dict[str, str], say: pktcap_text.Says) -> tuple[Place, str]:
    if "switchport" in opts:
        text = opts["switchport"]
        port_id = int(text, 16) if text.lower().startswith("0x") else int(text) if text.isdigit() else -1
        port = next((p for p in host.ports if p.port_id == port_id), None)
        if port is None:
            raise PktcapError(f"error: Invalid switch port: {text}\n")  # INFERRED
        say.line(f"The switch port id is 0x{port_id:08x}")
        return port.port_id, "switchport"
    if "vmk" in opts:
        port = host.port_of_client(opts["vmk"])
        if port is None or port.kind != "vmknic":
            raise PktcapError(f"error: Failed to find the vmk {opts['vmk']}\n")  # INFERRED
        say.line(f"The name of the vmk is {opts['vmk']}")
        return port.port_id, "vmk"
    if "uplink" in opts:
        name = opts["uplink"]
        if host.uplink(name) is None:
            raise PktcapError(f"error: Failed to find the uplink {name}\n")  # INFERRED
        say.line(f"The name of the uplink is {name}")
        port = host.port_of_client(name)
        return (port.port_id if port else -1), "uplink"
    if "dvfilter" in opts:
        return _dvfilter(host, opts["dvfilter"]), "dvfilter"
    if "lifID" in opts:
        raise PktcapError(f"error: The lif {opts['lifID']} is not supported on this host\n")  # INFERRED
    for name in ("fcport", "overlay"):
        if name in opts:
            raise PktcapError(f"error: --{name} {opts[name]} is not supported on this host\n")  # INFERRED
    return DROP, "none"


def _dvfilter(host: Host, name: str) -> str:
    full = [
        dvfilter_name(vm.world_id, nic.index, f)
        for vm in host.running_vms()
        for nic in vm.vnics
        for f in nic.filters
    ]
    bare = [f for f in full if f.split("-", 3)[-1] == name]
    if name in full:
        return name
    if len(bare) == 1:
        return bare[0]
    raise PktcapError(f"error: Failed to find the dvfilter {name}\n")  # INFERRED


def _filters(opts: dict[str, str], say: pktcap_text.Says) -> Filter:
    values = []
    for name in opts.get("_order", "").split():
        if name not in FILTERS and name not in LATER_FILTERS:
            continue
        value = opts[name]
        if not pktcap_text.filter_value_ok(name, value):
            raise PktcapError(f"error: Invalid {name} value: {value}\n")  # INFERRED
        say.line(pktcap_text.filter_echo(name, value))
        values.append((name, value))
    expression = None
    if "rcf" in opts:
        try:
            expression = compile_filter(opts["rcf"])
        except RcfError as exc:
            raise PktcapError(f"error: Failed to compile the rcf filter: {exc}\n") from None  # INFERRED
    return Filter(tuple(values), expression)


def _points(
    caps: Capabilities, opts: dict[str, str], kind: str, direction: int | None, stage: int | None,
    say: pktcap_text.Says,
) -> tuple[str, ...]:  # fmt: skip
    if "capture" in opts:
        text = opts["capture"]
        names = text.split(",") if caps.multi_point else [text]
        known = {p.lower(): p for p in caps.points}
        points = []
        for name in names:
            if name.lower() not in known:
                raise PktcapError(
                    f"error: No such capture point: {name}\n" + render_available_points(caps.points)
                )
            points.append(known[name.lower()])
        say.line(f"The session capture point is {','.join(points)}")
        return tuple(points)
    d = direction or 0
    if kind in ("vmk", "switchport"):
        return (("PortInput",), ("PortOutput",), ("PortInput", "PortOutput"))[d]
    if kind == "uplink":
        kernel = "kernelside" in opts and caps.has_point("UplinkRcvKernel")
        rx = "UplinkRcvKernel" if kernel else "EtherswitchDispath"
        tx = "UplinkSndKernel" if kernel else "EtherswitchOutput"
        return ((rx,), (tx,), (rx, tx))[d]
    if kind == "dvfilter":
        return ("PostDVFilter",) if stage == 1 else ("PreDVFilter",)
    raise PktcapError("error: Please specify a capture point or a port to capture on.\n")  # INFERRED
