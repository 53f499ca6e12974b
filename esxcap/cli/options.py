"""The capture options, declared once and shared by `capture` and every recipe.

Each option group is a frozen dataclass whose fields carry their typer option and whose `__post_init__`
validates them; a command takes a group as one parameter annotated with the group's class, and
`esxcap.cli.common.grouped` expands it into typer options and hands the command one validated object.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated

import typer

from esxcap.capture.destinations import OutputChoice, choose_output
from esxcap.capture.ring import parse_ring
from esxcap.cli.common import ForceOpt, GroupOpt, JsonOpt, OptionGroup, ParallelOpt
from esxcap.errors import UsageError
from esxcap.esxi.pktcap import FlowFilter
from esxcap.pcap.triggers import TriggerPlan, parse_trigger
from esxcap.plan.planner import CaptureOptions, TargetRequest
from esxcap.plan.sizes import SIZE_FORMS, human_size, size_in_bytes

MAX_COUNT = 2**31 - 1
"""The largest packet count pktcap-uw's `-c` takes (a C int)."""
MAX_DURATION = 366 * 24 * 3600.0
"""The longest `-d` (a year; the wrapper's deadline is integer seconds in BusyBox's shell arithmetic)."""
MAX_BYTES = 2**62
"""The largest --max-bytes (well inside a 64-bit counter)."""
"""--before-bytes by default: the before-window's memory (all streams together); beyond it, a spill file."""
MAX_WINDOW_S = 3600.0


@dataclass(frozen=True)
class HostChoice(OptionGroup):
    """Which inventory hosts a capture searches or puts its targets on."""

    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", "-H", help="Host to work on (repeatable); default: the inventory.", metavar="HOST"
        ),
    ] = None
    group: GroupOpt = None
    parallel: ParallelOpt = 10
    enable_ssh: Annotated[
        bool,
        typer.Option(
            "--enable-ssh",
            help="With a vcenter in the inventory: SSH on the VMs' hosts for the capture only.",
        ),
    ] = False

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise UsageError(f"--parallel must be at least 1, got {self.parallel}", "use --parallel 10")


@dataclass(frozen=True)
class StopWhen(OptionGroup):
    """When each capture stops (besides Ctrl-C), and how much of each packet it keeps."""

    count: Annotated[
        int | None, typer.Option("--count", "-c", help="Stop each stream after N packets.", metavar="N")
    ] = None
    duration: Annotated[
        float | None, typer.Option("--duration", "-d", help="Stop after N seconds.", metavar="SECONDS")
    ] = None
    max_bytes_text: Annotated[
        str | None,
        typer.Option(
            "--max-bytes", help="Stop once this many packet bytes were written (e.g. 10M).", metavar="SIZE"
        ),
    ] = None
    snaplen: Annotated[
        int, typer.Option("--snaplen", "-s", help="Bytes kept per packet (0 = all).", metavar="BYTES")
    ] = 0
    trigger: Annotated[
        str | None,
        typer.Option(
            help="Keep only the moments around this condition, on every host: tcp-rst, "
            "tcp-syn-noreply[:S], icmp-unreach, drop, gap:S, bytes:HEX@OFFSET, count:N:COND, df:FILTER.",
            metavar="EXPR",
        ),
    ] = None
    before: Annotated[
        float, typer.Option(help="With --trigger: seconds kept before it.", metavar="SECONDS")
    ] = 10.0
    after: Annotated[
        float, typer.Option(help="With --trigger: seconds kept after it.", metavar="SECONDS")
    ] = 5.0
    before_bytes_text: Annotated[
        str,
        typer.Option(
            "--before-bytes",
            help="With --trigger: memory for the before-window, then a file (e.g. 64M).",
            metavar="SIZE",
        ),
    ] = "64MiB"
    trigger_count: Annotated[
        int | None,
        typer.Option(help="With --trigger: keep N events (one file each), then stop.", metavar="N"),
    ] = None

    def __post_init__(self) -> None:
        self._check_limits()
        if self.trigger is None:
            if self.trigger_count is not None:
                raise UsageError("--trigger-count counts trigger events", "add --trigger EXPR")
            return
        for name, value in (("--before", self.before), ("--after", self.after)):
            if not (math.isfinite(value) and 0 <= value <= MAX_WINDOW_S):
                raise UsageError(f"{name} {value}: 0 to {MAX_WINDOW_S:.0f} seconds", f"e.g. {name} 10")
        if self.trigger_count is not None and not 1 <= self.trigger_count <= 10000:
            raise UsageError(
                f"--trigger-count {self.trigger_count}: 1 to 10000 events", "e.g. --trigger-count 3"
            )
        plan = self.trigger_plan()
        if plan is not None and plan.condition.kind == "df":
            from esxcap.capture.dfwatch import check_display_filter
            from esxcap.capture.viewers import find_tshark

            tshark = find_tshark()
            if tshark is None:
                raise UsageError(
                    f"--trigger {self.trigger}: a display filter needs tshark, which is not installed",
                    "install tshark (Wireshark), or use a native condition such as tcp-rst",
                )
            check_display_filter(tshark, plan.condition.display_filter)

    def trigger_plan(self) -> TriggerPlan | None:
        """What --trigger asked for (None without it)."""
        if self.trigger is None:
            return None
        return TriggerPlan(
            parse_trigger(self.trigger), self.before, self.after, self.before_bytes, self.trigger_count or 1
        )

    def _check_limits(self) -> None:
        if self.count is not None and not 1 <= self.count <= MAX_COUNT:
            raise UsageError(f"--count {self.count}: a packet count of 1 to {MAX_COUNT}", "e.g. --count 100")
        if self.duration is not None and not (
            math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION
        ):
            raise UsageError(
                f"--duration {self.duration}: more than 0 and at most {MAX_DURATION:.0f} seconds",
                "e.g. --duration 30",
            )
        if self.max_bytes_text is not None:
            checked_size("--max-bytes", self.max_bytes_text, 1, "100M")
        checked_size("--before-bytes", self.before_bytes_text, 1 << 20, "64M")

    @property
    def before_bytes(self) -> int:
        """--before-bytes in bytes (checked when the options were read)."""
        return checked_size("--before-bytes", self.before_bytes_text, 1 << 20, "64M")

    @property
    def max_bytes(self) -> int | None:
        """--max-bytes in bytes (checked when the options were read)."""
        if self.max_bytes_text is None:
            return None
        return checked_size("--max-bytes", self.max_bytes_text, 1, "100M")


def checked_size(option: str, text: str, least: int, example: str) -> int:
    """The size `option` was given as `text`, in bytes; a usage error when it is no size or out of range."""
    size = size_in_bytes(text)
    if size is None:
        raise UsageError(f"{option} {text}: not a size", f"give {SIZE_FORMS}")
    if not least <= size <= MAX_BYTES:
        raise UsageError(
            f"{option} {text}: at least {human_size(least)} and at most {human_size(MAX_BYTES)}",
            f"e.g. {option} {example}",
        )
    return size


@dataclass(frozen=True)
class Delivery(OptionGroup):
    """Where packets go and what happens with them during and after the capture."""

    out: Annotated[
        str | None, typer.Option("--output", "-o", help="File, directory, or - for stdout.", metavar="PATH")
    ] = None
    force: ForceOpt = False
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the remote commands; run nothing.")] = False
    console: Annotated[bool, typer.Option("--console", help="Print one line per packet as it arrives.")] = (
        False
    )
    hexdump: Annotated[bool, typer.Option("--hex", help="With --console: hex dump of each packet.")] = False
    open_after: Annotated[
        bool, typer.Option("--open", help="Open the finished file in Wireshark/tshark.")
    ] = False
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Show packets live in Wireshark (or tshark); with -o or --ring also keep the files.",
        ),
    ] = False
    split: Annotated[
        bool, typer.Option("--split", help="Also keep one file per stream beside the merged file.")
    ] = False
    align_clocks: Annotated[
        bool,
        typer.Option("--align-clocks", help="Shift each host's timestamps by its measured clock offset."),
    ] = False
    show_path: Annotated[
        bool, typer.Option("--path", help="After the capture, show each packet's path through the points.")
    ] = False
    bundle: Annotated[
        str | None,
        typer.Option(
            "--bundle", help="Then bundle the files for this ticket (see `bundle`).", metavar="TICKET"
        ),
    ] = None
    json_out: JsonOpt = False
    ring: Annotated[
        str | None,
        typer.Option(
            "--ring",
            help="Keep a rolling set of segment files: files:K,filesize:SIZE and/or duration:S or "
            "interval:S (wall-clock aligned).",
            metavar="SPEC",
        ),
    ] = None

    def __post_init__(self) -> None:
        streams_only = self.live and self.out is None and self.ring is None
        if self.bundle is not None and (streams_only or self.out == "-"):
            raise UsageError("--bundle packs the written files; a stream leaves none", "write files with -o")
        if self.ring is not None:
            parse_ring(self.ring)
            for wanted, option in ((self.show_path, "--path"), (self.open_after, "--open")):
                if wanted:
                    raise UsageError(
                        f"{option} reads one finished file; a ring is many", f"drop {option} or --ring"
                    )

    def choice(self, stdout_is_tty: bool) -> OutputChoice | None:
        """Where packets go (None for --dry-run, which writes nothing)."""
        if self.dry_run:
            return None
        ring = parse_ring(self.ring) if self.ring is not None else None
        return choose_output(self.out, self.live, stdout_is_tty, self.split, self.show_path, self.force, ring)


@dataclass(frozen=True)
class Filters(OptionGroup):
    """pktcap-uw's flow filters, and a pcap filter expression for its `--rcf` (7.0+)."""

    srcmac: Annotated[str | None, typer.Option(help="Filter: source MAC.", metavar="MAC")] = None
    dstmac: Annotated[str | None, typer.Option(help="Filter: destination MAC.", metavar="MAC")] = None
    any_mac: Annotated[
        str | None, typer.Option("--any-mac", help="Filter: source or destination MAC.", metavar="MAC")
    ] = None
    ethtype: Annotated[
        str | None, typer.Option(help="Filter: EtherType (0x0806 or arp, ipv4...).", metavar="TYPE")
    ] = None
    vlan: Annotated[str | None, typer.Option(help="Filter: VLAN ID.", metavar="VLAN")] = None
    srcip: Annotated[str | None, typer.Option(help="Filter: source IPv4[/prefix].", metavar="IP[/LEN]")] = (
        None
    )
    dstip: Annotated[
        str | None, typer.Option(help="Filter: destination IPv4[/prefix].", metavar="IP[/LEN]")
    ] = None
    ip: Annotated[str | None, typer.Option(help="Filter: source or destination IPv4.", metavar="IP")] = None
    proto: Annotated[
        str | None, typer.Option(help="Filter: IP protocol (0x06 or tcp, udp, icmp).", metavar="PROTO")
    ] = None
    srcport: Annotated[str | None, typer.Option(help="Filter: TCP source port.", metavar="PORT")] = None
    dstport: Annotated[str | None, typer.Option(help="Filter: TCP destination port.", metavar="PORT")] = None
    tcpport: Annotated[str | None, typer.Option(help="Filter: TCP port (either side).", metavar="PORT")] = (
        None
    )
    udpport: Annotated[
        str | None, typer.Option(help="Filter: UDP port (either side; ESXi 6.7+).", metavar="PORT")
    ] = None
    vxlan: Annotated[str | None, typer.Option(help="Filter: VXLAN id.", metavar="VNI")] = None
    expression: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Filter: a pcap filter expression, e.g. 'host 10.0.0.5 and tcp port 443' "
            "(pktcap-uw --rcf, ESXi 7.0+).",
            metavar="EXPR",
        ),
    ] = None

    def flow_filter(self) -> FlowFilter:
        values = dataclasses.asdict(self)
        values["mac"] = values.pop("any_mac")
        values["rcf"] = values.pop("expression")
        return FlowFilter(**values)


@dataclass(frozen=True)
class Points(OptionGroup):
    """Which capture points and direction each target is captured at."""

    direction: Annotated[
        str,
        typer.Option("--dir", help="in, out or both, seen from the VM/vmknic/wire.", metavar="in|out|both"),
    ] = "both"
    point: Annotated[
        list[str] | None,
        typer.Option(help="pktcap-uw capture point (repeatable); overrides --dir.", metavar="POINT"),
    ] = None
    stage: Annotated[
        str | None, typer.Option(help="pre or post (DVFilter, port points).", metavar="pre|post")
    ] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", self.direction.lower())
        if self.stage is not None:
            object.__setattr__(self, "stage", self.stage.lower())
        if self.direction not in ("in", "out", "both"):
            raise UsageError(f"--dir {self.direction}: not a direction", "use --dir in, out or both")
        if self.stage is not None and self.stage not in ("pre", "post"):
            raise UsageError(f"--stage {self.stage}: not a stage", "use --stage pre or post")


@dataclass(frozen=True)
class Targets(OptionGroup):
    """What `capture` captures."""

    vm: Annotated[
        list[str] | None, typer.Option("--vm", help="VM display name (repeatable).", metavar="VM")
    ] = None
    nic: Annotated[
        list[str] | None,
        typer.Option(help="With --vm: vNIC number (1 = first) or ethN (repeatable).", metavar="N"),
    ] = None
    mac: Annotated[
        list[str] | None, typer.Option(help="With --vm: the vNIC with this MAC (repeatable).", metavar="MAC")
    ] = None
    vmk: Annotated[
        list[str] | None, typer.Option(help="VMkernel NIC, e.g. vmk0 (repeatable).", metavar="VMK")
    ] = None
    uplink: Annotated[
        list[str] | None, typer.Option(help="Physical NIC, e.g. vmnic2 (repeatable).", metavar="VMNIC")
    ] = None
    switchport: Annotated[
        list[str] | None, typer.Option(help="Switch port ID from net-stats -l.", metavar="PORT_ID")
    ] = None
    lif: Annotated[list[str] | None, typer.Option(help="NSX VDR logical interface id.", metavar="LIF")] = None
    dvfilter: Annotated[
        list[str] | None, typer.Option(help="DVFilter name (summarize-dvfilter).", metavar="NAME")
    ] = None
    portgroup: Annotated[
        list[str] | None,
        typer.Option(help="Every VM port in this portgroup (name, or VLAN ID), on every host.", metavar="PG"),
    ] = None
    drop: Annotated[bool, typer.Option("--drop", help="Dropped packets (the Drop point).")] = False
    all_hosts: Annotated[
        bool, typer.Option("--all-hosts", help="Put --vmk/--uplink/... targets on every host.")
    ] = False

    many: Annotated[
        bool, typer.Option("--many", help="A --vm glob may match several VMs: capture every one.")
    ] = False
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --many/--portgroup: do not ask before capturing.")
    ] = False

    def __post_init__(self) -> None:
        if (self.nic or self.mac) and len(self.vm or ()) != 1:
            raise UsageError(
                "--nic/--mac pick a vNIC of one --vm", "give exactly one --vm with --nic N or --mac MAC"
            )

    def requests(self) -> list[TargetRequest]:
        vnics: list[tuple[str | None, str | None]] = [(n, None) for n in self.nic or ()]
        vnics += [(None, m) for m in self.mac or ()]
        requests = [
            TargetRequest("vm", name, n, m, many=self.many)
            for name in self.vm or ()
            for n, m in vnics or [(None, None)]
        ]
        requests += [TargetRequest("portgroup", v) for v in self.portgroup or ()]
        requests += [TargetRequest("vmk", v) for v in self.vmk or ()]
        requests += [TargetRequest("uplink", v) for v in self.uplink or ()]
        requests += [TargetRequest("switchport", v) for v in self.switchport or ()]
        requests += [TargetRequest("lif", v) for v in self.lif or ()]
        requests += [TargetRequest("dvfilter", v) for v in self.dvfilter or ()]
        if self.drop:
            requests.append(TargetRequest("drop"))
        return requests

    @property
    def host_bound(self) -> bool:
        """Whether any target is put on hosts (not searched for, as VMs and portgroups are)."""
        return any(r.kind not in ("vm", "portgroup") for r in self.requests())

    @property
    def wide(self) -> bool:
        """Whether the selection can grow with the estate (--many, --portgroup, --nic all): asked before
        capturing."""
        return self.many or bool(self.portgroup) or "all" in (self.nic or ())


def capture_options(
    stop: StopWhen, points: Points | None = None, filters: Filters | None = None
) -> CaptureOptions:
    """What pktcap-uw is asked for, from the option groups."""
    return CaptureOptions(
        direction=(points.direction if points else "both"),  # type: ignore[arg-type]
        points=tuple(points.point or ()) if points else (),
        stage=points.stage if points else None,
        count=stop.count,
        snaplen=stop.snaplen,
        filters=filters.flow_filter() if filters else FlowFilter(),
    )
