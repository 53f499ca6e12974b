"""The capture commands: `capture` (with --dry-run), `points`, `cleanup` and `merge`; running a planned
capture is cli_capture_run's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from esxcap.capture.destinations import choose_output
from esxcap.capture.job import MultiOptions, capture_streams, prepare_host
from esxcap.cli import output
from esxcap.cli.common import (
    AcceptNewOpt,
    GroupOpt,
    JsonOpt,
    ParallelOpt,
    TransportOpt,
    app,
    run_job,
    select_hosts,
    session_options,
)
from esxcap.cli.main import EXIT_ALL_FAILED, EXIT_OK, EXIT_PARTIAL
from esxcap.errors import UsageError
from esxcap.esxi.pktcap import FlowFilter
from esxcap.inventory import HostConfig
from esxcap.plan.planner import CaptureOptions, TargetRequest, resolve, streams
from esxcap.ssh.session import close_hosts, open_hosts, run_on_hosts
from esxcap.ssh.transport import Connection

VmOpt = Annotated[list[str] | None, typer.Option("--vm", help="VM display name (repeatable).")]
CaptureHostOpt = Annotated[
    list[str] | None,
    typer.Option("--host", "-H", help="Host to work on (repeatable); default: the inventory."),
]
AllHostsOpt = Annotated[
    bool, typer.Option("--all-hosts", help="Put --vmk/--uplink/... targets on every host.")
]
SplitOpt = Annotated[
    bool, typer.Option("--split", help="Also keep one file per stream beside the merged file.")
]
AlignOpt = Annotated[
    bool,
    typer.Option("--align-clocks", help="Shift each host's timestamps by its measured clock offset."),
]
PathOpt = Annotated[
    bool, typer.Option("--path", help="After the capture, show each packet's path through the points.")
]


def _requests(
    vm: list[str],
    nic: str | None,
    mac: str | None,
    vmk: list[str],
    uplink: list[str],
    switchport: list[str],
    lif: list[str],
    dvfilter: list[str],
    drop: bool,
) -> list[TargetRequest]:
    if (nic or mac) and len(vm) != 1:
        raise UsageError(
            "--nic/--mac pick a vNIC of one --vm", "give exactly one --vm with --nic N or --mac MAC"
        )
    requests = [TargetRequest("vm", name, nic, mac) for name in vm]
    requests += [TargetRequest("vmk", v) for v in vmk]
    requests += [TargetRequest("uplink", v) for v in uplink]
    requests += [TargetRequest("switchport", v) for v in switchport]
    requests += [TargetRequest("lif", v) for v in lif]
    requests += [TargetRequest("dvfilter", v) for v in dvfilter]
    if drop:
        requests.append(TargetRequest("drop"))
    return requests


@app.command()
def capture(
    vm: VmOpt = None,
    nic: Annotated[str | None, typer.Option(help="With --vm: vNIC number (1 = first) or ethN.")] = None,
    mac: Annotated[str | None, typer.Option(help="With --vm: the vNIC with this MAC.")] = None,
    vmk: Annotated[list[str] | None, typer.Option(help="VMkernel NIC, e.g. vmk0 (repeatable).")] = None,
    uplink: Annotated[list[str] | None, typer.Option(help="Physical NIC, e.g. vmnic2 (repeatable).")] = None,
    switchport: Annotated[list[str] | None, typer.Option(help="Switch port ID from net-stats -l.")] = None,
    lif: Annotated[list[str] | None, typer.Option(help="NSX VDR logical interface id.")] = None,
    dvfilter: Annotated[list[str] | None, typer.Option(help="DVFilter name (summarize-dvfilter).")] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Dropped packets (the Drop point).")] = False,
    host: CaptureHostOpt = None,
    group: GroupOpt = None,
    all_hosts: AllHostsOpt = False,
    direction: Annotated[
        str, typer.Option("--dir", help="in, out or both, seen from the VM/vmknic/wire.")
    ] = "both",
    point: Annotated[
        list[str] | None, typer.Option(help="pktcap-uw capture point (repeatable); overrides --dir.")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="pre or post (DVFilter, port points).")] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-c", help="Stop each stream after N packets.")
    ] = None,
    duration: Annotated[float | None, typer.Option("--duration", "-d", help="Stop after N seconds.")] = None,
    max_bytes: Annotated[
        int | None, typer.Option(help="Stop once this many packet bytes were written.")
    ] = None,
    snaplen: Annotated[int, typer.Option("--snaplen", "-s", help="Bytes kept per packet (0 = all).")] = 0,
    out: Annotated[
        str | None, typer.Option("--output", "-o", help="File, directory, or - for stdout.")
    ] = None,
    srcmac: Annotated[str | None, typer.Option(help="Filter: source MAC.")] = None,
    dstmac: Annotated[str | None, typer.Option(help="Filter: destination MAC.")] = None,
    any_mac: Annotated[
        str | None, typer.Option("--any-mac", help="Filter: source or destination MAC.")
    ] = None,
    ethtype: Annotated[str | None, typer.Option(help="Filter: EtherType (0x0806 or arp, ipv4...).")] = None,
    vlan: Annotated[str | None, typer.Option(help="Filter: VLAN ID.")] = None,
    srcip: Annotated[str | None, typer.Option(help="Filter: source IPv4[/prefix].")] = None,
    dstip: Annotated[str | None, typer.Option(help="Filter: destination IPv4[/prefix].")] = None,
    ip: Annotated[str | None, typer.Option(help="Filter: source or destination IPv4.")] = None,
    proto: Annotated[str | None, typer.Option(help="Filter: IP protocol (0x06 or tcp, udp, icmp).")] = None,
    srcport: Annotated[str | None, typer.Option(help="Filter: TCP source port.")] = None,
    dstport: Annotated[str | None, typer.Option(help="Filter: TCP destination port.")] = None,
    tcpport: Annotated[str | None, typer.Option(help="Filter: TCP port (either side).")] = None,
    udpport: Annotated[str | None, typer.Option(help="Filter: UDP port (either side; ESXi 6.7+).")] = None,
    vxlan: Annotated[str | None, typer.Option(help="Filter: VXLAN id.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the remote commands; run nothing.")
    ] = False,
    console: Annotated[
        bool, typer.Option("--console", help="Print one line per packet as it arrives.")
    ] = False,
    hexdump: Annotated[bool, typer.Option("--hex", help="With --console: hex dump of each packet.")] = False,
    open_after: Annotated[
        bool, typer.Option("--open", help="Open the finished file in Wireshark/tshark.")
    ] = False,
    live: Annotated[bool, typer.Option("--live", help="Show packets live in Wireshark (or tshark).")] = False,
    split: SplitOpt = False,
    align_clocks: AlignOpt = False,
    show_path: PathOpt = False,
    bundle_ticket: Annotated[
        str | None, typer.Option("--bundle", help="Then bundle the files for this ticket (see `bundle`).")
    ] = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """Capture packets on ESXi hosts: pktcap-uw streamed back over SSH into pcapng files, stopped safely."""
    requests = _requests(
        vm or [], nic, mac, vmk or [], uplink or [], switchport or [], lif or [], dvfilter or [], drop
    )
    if direction not in ("in", "out", "both"):
        raise UsageError(f"--dir {direction}: not a direction", "use --dir in, out or both")
    if stage is not None and stage not in ("pre", "post"):
        raise UsageError(f"--stage {stage}: not a stage", "use --stage pre or post")
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be more than 0 seconds", "e.g. --duration 30")
    if max_bytes is not None and max_bytes <= 0:
        raise UsageError("--max-bytes must be more than 0", "e.g. --max-bytes 100000000")
    options = CaptureOptions(
        direction=direction,  # type: ignore[arg-type]
        points=tuple(point or ()),
        stage=stage,
        count=count,
        snaplen=snaplen,
        filters=FlowFilter(
            srcmac=srcmac,
            dstmac=dstmac,
            mac=any_mac,
            ethtype=ethtype,
            vlan=vlan,
            srcip=srcip,
            dstip=dstip,
            ip=ip,
            proto=proto,
            srcport=srcport,
            dstport=dstport,
            tcpport=tcpport,
            udpport=udpport,
            vxlan=vxlan,
        ),
    )
    if bundle_ticket is not None and (live or out == "-"):
        raise UsageError("--bundle packs the written files; a stream leaves none", "write files with -o")
    multi = MultiOptions(split, align_clocks, show_path, bundle=bundle_ticket)
    choice = None if dry_run else choose_output(out, live, sys.stdout.isatty(), split, show_path)

    async def job() -> int:
        hosts = select_hosts(host, group)
        explicit = bool(host or group or all_hosts)
        opened, failed = await open_hosts(
            hosts, session_options(accept_new, transport), prepare_host, parallel
        )
        try:
            if not opened:
                for f in failed:
                    output.error(
                        f.error.message if f.error else f.host.name, f.error.hint if f.error else None
                    )
                return EXIT_ALL_FAILED
            planned = streams(
                resolve(requests, [o.value for o in opened], explicit),
                options,
                {o.value.name: o.value.caps for o in opened},
            )
            if dry_run:
                output.dry_run(planned, [(o.value.name, o.value.facts) for o in opened], json_out)
                output.host_errors([(f.host.name, f.error.message, f.error.hint) for f in failed if f.error])
                return EXIT_OK if not failed else EXIT_PARTIAL
            assert choice is not None
            return await capture_streams(
                opened,
                failed,
                planned,
                choice,
                duration,
                max_bytes,
                console,
                hexdump,
                open_after,
                json_out,
                options,
                multi,
            )
        finally:
            await close_hosts(opened)

    run_job(job)


@app.command()
def points(
    host: Annotated[str, typer.Argument(help="Inventory host name or [user@]address[:port].")],
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """List a host's pktcap-uw capture points (`pktcap-uw -A`, else the table for its ESXi version)."""
    from esxcap.esxi import parsers
    from esxcap.esxi.capabilities import Capabilities, parse_available_points
    from esxcap.ssh.discovery import AVAILABLE_POINTS_ARGV, run_batch

    async def job() -> int:
        [target] = select_hosts([host], None)

        async def ask(cfg: HostConfig, conn: Connection) -> tuple[str, tuple[str, ...]]:
            version_text, listed = await run_batch(
                conn, cfg, [parsers.VMWARE_VL_ARGV, AVAILABLE_POINTS_ARGV], 1
            )
            version = parsers.parse_vmware_vl(version_text or "")
            if listed:
                return "from pktcap-uw -A", parse_available_points(listed)
            return f"pktcap-uw -A gave nothing; ESXi {version.version} table", Capabilities.for_version(
                version.version_tuple
            ).points

        opened, failed = await open_hosts([target], session_options(accept_new, transport), ask, 1)
        await close_hosts(opened)
        if failed and failed[0].error:
            raise failed[0].error
        source, names = opened[0].value
        output.points(target.name, names, source, json_out)
        return EXIT_OK

    run_job(job)


@app.command()
def cleanup(
    host: Annotated[list[str] | None, typer.Argument(help="Hosts to clean; default: the inventory.")] = None,
    group: GroupOpt = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Also stop pktcap-uw processes esxcap did not start (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --all: do not ask.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list; stop nothing.")] = False,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
    accept_new: AcceptNewOpt = False,
    transport: TransportOpt = None,
) -> None:
    """Find leftover captures: stop the ones esxcap started; list others (stopped only with --all)."""
    from esxcap.ssh.cleanup import clean_host

    if everything and not yes and not dry_run:
        if not sys.stdin.isatty():
            raise UsageError("--all stops captures other people started", "confirm with --yes")
        if not typer.confirm("Stop every pktcap-uw on these hosts, including ones esxcap did not start?"):
            raise UsageError("nothing stopped", "run without --all to stop only esxcap's own captures")

    async def job() -> int:
        hosts = select_hosts(host, group)
        results = await run_on_hosts(
            hosts,
            session_options(accept_new, transport),
            lambda h, c: clean_host(h, c, everything, dry_run),
            parallel,
        )
        rows = [row for r in results if r.value for row in r.value]
        output.cleanup_report(rows, json_out)
        output.host_errors([(r.host.name, r.error.message, r.error.hint) for r in results if r.error])
        failed = sum(1 for r in results if r.error) + sum(
            1 for row in rows if row["action"] == "failed to stop"
        )
        if not failed:
            return EXIT_OK
        return EXIT_ALL_FAILED if all(r.error for r in results) else EXIT_PARTIAL

    run_job(job)


@app.command()
def merge(
    files: Annotated[list[Path], typer.Argument(help="pcap or pcapng files.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="The merged pcapng file.")],
) -> None:
    """Merge captures into one time-ordered pcapng, one interface per input interface."""
    from esxcap.capture.sinks import create_private
    from esxcap.pcap import CaptureFile, PcapngWriter
    from esxcap.pcap import merge as merge_files

    async def job() -> int:
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UsageError(f"no such file: {', '.join(missing)}", "check the paths")
        part = out.with_name(out.name + ".part")
        handles = [f.open("rb") for f in files]
        try:
            with create_private(part) as sink:
                result = merge_files(
                    [CaptureFile(h, f.name) for h, f in zip(handles, files, strict=True)],
                    PcapngWriter(sink, comments=(f"merged by esxcap from {len(files)} files",)),
                )
        finally:
            for h in handles:
                h.close()
        part.replace(out)
        output.info(f"{out}: {result.packets} packets from {len(files)} files")
        return EXIT_OK

    run_job(job)
