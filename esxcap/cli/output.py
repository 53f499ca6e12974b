"""Everything esxcap shows a person: tables and JSON on stdout, errors, warnings and progress on stderr.

The only module that uses rich. stdout carries data only (tables or one JSON document); diagnostics
go to stderr so `esxcap ... --json | jq` always sees clean JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from esxcap.plan.sizes import human_size
from esxcap.printable import printable

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator
    from pathlib import Path

    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.live import Live

    from esxcap.capture.run import StreamRun
    from esxcap.esxi.models import HostFacts
    from esxcap.plan.planner import Stream
    from esxcap.plan.targets import Match
    from esxcap.ssh.session import HostResult

_PIPE_WIDTH = 200
"""Tables written to a pipe or file are not folded to 80 columns (COLUMNS still wins)."""


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head`, a closed pager): what it wanted it has; `cli.main` ends
    the command quietly with exit 0."""


def _console(stderr: bool) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """Instead of rich's exit 1: stop writing; a closed stdout ends the command (StdoutClosed)."""
            self.quiet = True
            if not self.stderr:
                raise StdoutClosed

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
    return _Console(stderr=stderr, highlight=False, emoji=False, width=width)


@functools.cache
def _stdout() -> Console:
    """stdout's console, made on first use: rich is imported only when something is shown through it
    (`esxcap --help` and JSON output never import it)."""
    return _console(stderr=False)


@functools.cache
def _stderr() -> Console:
    return _console(stderr=True)


def escape(text: str) -> str:
    """`text` made printable (esxcap.printable) and escaped for rich's markup, so that no host- or
    file-supplied string reaches the terminal as an escape sequence, markup or an emoji code."""
    from rich.markup import escape as rich_escape

    return rich_escape(printable(text, keep_newlines=True))


def print_json(document: Any) -> None:
    """One JSON document on stdout (non-ASCII kept readable)."""
    text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def text(content: str) -> None:
    """Plain text on stdout, as it is (help, version, JSON)."""
    try:
        sys.stdout.write(content)
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


class _Mode:
    errors_only = False


def errors_only() -> None:
    """For a reader that shows every stderr line as an error (Wireshark with an extcap): from now on each
    error is one plain line, and warnings and notices are not shown."""
    _Mode.errors_only = True


def error(message: str, hint: str | None = None) -> None:
    if _Mode.errors_only:
        line = f"{message} (next: {hint})" if hint else message
        sys.stderr.write(" ".join(line.split()) + "\n")
        sys.stderr.flush()
        return
    _stderr().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        _stderr().print(f"  [dim]next:[/] {escape(hint)}")


def warning(message: str) -> None:
    if not _Mode.errors_only:
        _stderr().print(f"[yellow]warning:[/] {escape(message)}")


def info(message: str) -> None:
    if not _Mode.errors_only:
        _stderr().print(escape(message))


class _Listing:
    """A table that never cuts a value in the middle: a column is never narrower than its longest word
    (port IDs, MACs, IPs and paths have no spaces, so they stay whole; names wrap at their spaces), and
    when the columns cannot all fit the terminal, each row is shown as a record (`Header: value` lines)."""

    def __init__(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        self.title = printable(title)
        self.headers = tuple(headers)
        self.rows = [tuple("" if v is None else printable(str(v)) for v in row) for row in rows]

    def _min_widths(self) -> list[int]:
        from rich.cells import cell_len

        widths = []
        for index, header in enumerate(self.headers):
            cells = [header, *(row[index] for row in self.rows if index < len(row))]
            widths.append(max((cell_len(word) for cell in cells for word in cell.split()), default=0))
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        widths = self._min_widths()
        if sum(widths) + 3 * len(widths) + 1 <= options.max_width:
            table = Table(title=Text(self.title), title_justify="left", title_style="bold")
            for header, width in zip(self.headers, widths, strict=True):
                table.add_column(Text(header), overflow="fold", min_width=width)
            for row in self.rows:
                table.add_row(*(Text(cell) for cell in row))
            yield table
            return
        yield Text(self.title, style="bold")
        label = max((len(h) for h in self.headers), default=0)
        for row in self.rows:
            for header, cell in zip(self.headers, row, strict=False):
                if cell:
                    yield Text(f"  {header + ':':<{label + 1}} {cell}", overflow="fold")
            yield Text("")


def _table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> _Listing:
    return _Listing(title, headers, rows)


def host_facts(name: str, address: str, facts: HostFacts) -> None:
    """The human view of one host's discovery: VMs, vmknics, uplinks, switches."""
    from esxcap.esxi.facts import dvportgroup_names, uplinks, vmknics
    from esxcap.plan.targets import vnic_label

    for message in facts.warnings:
        warning(message)
    v = facts.version
    update = f" Update {v.update}" if v.update not in (None, "0") else ""
    _stdout().print(
        f"[bold]{escape(name)}[/] ({escape(address)}) — "
        f"ESXi {escape(v.version)}{escape(update)} build {escape(v.build)}"
    )
    uplink_of = {p.port_num: p.client_name for p in facts.netstats}
    dv_names = dvportgroup_names(facts)

    def portgroup(name: str) -> str:
        return f"{dv_names[name]} ({name})" if name in dv_names else name

    vm_rows: list[Sequence[object]] = []
    for vm in facts.vms:
        for i, port in enumerate(vm.ports):
            vm_rows.append(
                (
                    vm.entry.name if i == 0 else "",
                    vnic_label(facts, vm, i),
                    port.port_id,
                    port.mac,
                    port.ip,
                    portgroup(port.portgroup),
                    port.vswitch + (f" (DVPort {port.dvport_id})" if port.dvport_id else ""),
                    port.team_uplink or uplink_of.get(port.uplink_port_id or -1),
                )
            )
        if not vm.ports:
            vm_rows.append((vm.entry.name, "", None, None, None, None, None, None))
    _stdout().print(
        _table("VMs", ("VM", "NIC", "Port ID", "MAC", "IP", "Portgroup", "Switch", "Uplink"), vm_rows)
    )
    _stdout().print(
        _table(
            "VMkernel NICs",
            ("Name", "Port ID", "IPv4", "Netmask", "Portgroup", "Switch", "MTU", "MAC"),
            (
                (k.name, k.port_id, k.ipv4, k.netmask, k.portgroup, k.switch, k.mtu, k.mac)
                for k in vmknics(facts)
            ),
        )
    )
    _stdout().print(
        _table(
            "Uplinks",
            ("Name", "Port ID", "Driver", "Link", "Speed", "Duplex", "MAC", "MTU", "Description"),
            (
                (
                    u.nic.name,
                    u.port_id,
                    u.nic.driver,
                    u.nic.link_status,
                    u.nic.speed_mbps,
                    u.nic.duplex,
                    u.nic.mac,
                    u.nic.mtu,
                    u.nic.description,
                )
                for u in uplinks(facts)
            ),
        )
    )
    switch_rows: list[Sequence[object]] = []
    for s in facts.standard_switches:
        groups = [pg for pg in facts.portgroups if pg.vswitch == s.name]
        switch_rows.append((s.name, "standard", ", ".join(s.uplinks), "", "", s.mtu))
        switch_rows += [("", "", "", pg.name, pg.vlan_id, "") for pg in groups]
    for d in facts.distributed_switches:
        used = sorted({p.dvportgroup_id for p in d.dvports})
        switch_rows.append((d.name, "distributed", ", ".join(d.uplinks), "", "", d.mtu))
        switch_rows += [("", "", "", portgroup(group), "", "") for group in used]
    _stdout().print(
        _table(
            "Switches and portgroups", ("Switch", "Type", "Uplinks", "Portgroup", "VLAN", "MTU"), switch_rows
        )
    )
    _stdout().print()


def host_errors(errors: Sequence[tuple[str, str, str | None]]) -> None:
    """Per-host failures after the hosts that worked: host, error, next step."""
    for host, message, hint in errors:
        error(f"{host}: {message}" if not message.startswith(host) else message, hint)


def matches(items: Sequence[Match]) -> None:
    _stdout().print(
        _table(
            "Matches",
            ("Host", "Kind", "Name", "NIC", "Port ID", "MAC", "IP", "Portgroup", "Matched by"),
            (
                (m.host, m.kind, m.name, m.nic, m.port_id, m.mac, m.ip, m.portgroup, m.matched_by)
                for m in items
            ),
        )
    )


def hosts(rows: Sequence[dict[str, Any]]) -> None:
    headers = ("Host", "Address", "Port", "User", "Groups", "Identity file", "Password from", "Known hosts")
    _stdout().print(
        _table(
            "Inventory",
            headers,
            (
                (
                    r["name"],
                    r["hostname"],
                    r["port"],
                    r["username"],
                    ", ".join(r["groups"]),
                    r["identity_file"],
                    f"${r['password_env']}" if r["password_env"] else None,
                    r["known_hosts"],
                )
                for r in rows
            ),
        )
    )


def doctor_report(report: dict[str, Any], remembered: str | None) -> None:
    """One host's self-check as a table to paste into a bug report; where its results are kept."""
    esxi = report["esxi"]
    built = f"ESXi {esxi['version']} build {esxi['build']}" if esxi else "ESXi version unknown"
    table = _table(
        f"{report['host']} ({built}), checked in {report['seconds']} s",
        ("Check", "Result", "Finding"),
        ((f["check"], f["status"].upper(), f["summary"]) for f in report["findings"]),
    )
    _stdout().print(table)
    if remembered:
        info(f"remembered for build {esxi['build']} in {remembered}")


def packet(line: str, to_stderr: bool = False) -> None:
    """One console line per captured packet (stderr when stdout carries the capture itself)."""
    stream = sys.stderr if to_stderr else sys.stdout
    stream.write(printable(line, keep_newlines=True) + "\n")  # a hex dump spans lines
    stream.flush()


def dry_run(planned: Sequence[Stream], hosts: Sequence[tuple[str, HostFacts]], json_out: bool) -> None:
    """The exact pktcap-uw command lines per host; nothing ran."""
    from esxcap.esxi.lifecycle import WRAPPER_NAME
    from esxcap.esxi.remote import command_line

    if json_out:
        print_json(
            {
                "streams": [
                    {
                        "host": s.target.host,
                        "target": s.target.label,
                        "point": s.point_label,
                        "direction": s.direction,
                        "interface": s.interface_name,
                        "remote_command": command_line(s.argv),
                    }
                    for s in planned
                ]
            }
        )
        return
    versions = {name: f"ESXi {f.version.version} build {f.version.build}" for name, f in hosts}
    for name, _facts in hosts:
        mine = [s for s in planned if s.target.host == name]
        if not mine:
            continue
        _stdout().print(f"[bold]{escape(name)}[/] ({escape(versions[name])})")
        for s in mine:
            _stdout().print(f"  {escape(command_line(s.argv))}", soft_wrap=True)
    _stderr().print(
        f"[dim]nothing ran; each command runs under esxcap's stop-safe wrapper "
        f"(sh -c ... {WRAPPER_NAME} ...)[/]"
    )


class CaptureProgress:
    """Live per-stream progress on stderr while capturing (only when stderr is a terminal)."""

    def __init__(self, runs: Sequence[StreamRun]) -> None:
        self._runs = runs
        self._live: Live | None = None
        self._task: asyncio.Task[None] | None = None

    def _table(self) -> _Listing:
        now = time.time()
        rows = []
        for run in self._runs:
            elapsed = (run.ended_at or now) - run.started_at if run.started_at else 0.0
            rate = run.packets / elapsed if elapsed > 0 else 0.0
            state = "error" if run.error else "done" if run.ended_at else "running" if run.pid else "starting"
            rows.append(
                (
                    run.stream.interface_name,
                    state,
                    run.packets,
                    human_size(run.bytes),
                    f"{rate:.0f}/s",
                    f"{elapsed:.1f} s",
                    run.dropped,
                )
            )
        return _table(
            "Capturing (Ctrl-C stops)",
            ("Stream", "State", "Packets", "Bytes", "Rate", "Elapsed", "Dropped"),
            rows,
        )

    async def __aenter__(self) -> CaptureProgress:
        import asyncio

        if sys.stderr.isatty() and _stderr().is_terminal:  # rich is not imported before the first packet
            from rich.live import Live

            self._live = Live(self._table(), console=_stderr(), transient=True, auto_refresh=False)
            self._live.start()
            self._task = asyncio.create_task(self._refresh())
        return self

    async def _refresh(self) -> None:
        import asyncio

        while self._live is not None:
            self._live.update(self._table(), refresh=True)
            await asyncio.sleep(0.5)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._live is not None:
            self._live.stop()
            self._live = None


class CaptureReporter:
    """A running capture's voice on the terminal: notices and warnings on stderr, one line per packet
    (on stderr when stdout carries the capture itself), live progress."""

    def __init__(self, packets_to_stderr: bool) -> None:
        self._packets_to_stderr = packets_to_stderr
        self._lines_unread = False

    def info(self, message: str) -> None:
        info(message)

    def warning(self, message: str) -> None:
        warning(message)

    def packet(self, line: str) -> None:
        """One packet line; once their reader went away (`--console | head`), ReaderClosed: the capture
        stops as for a closed output (its files are completed) and later lines are dropped."""
        if self._lines_unread:
            return
        try:
            packet(line, self._packets_to_stderr)
        except BrokenPipeError:
            from esxcap.capture.sinks import ReaderClosed

            self._lines_unread = True
            raise ReaderClosed("the reader of the packet lines went away", None) from None

    def progress(self, runs: Sequence[StreamRun]) -> CaptureProgress:
        return CaptureProgress(runs)


def capture_summary(
    runs: Sequence[StreamRun],
    files: dict[int, Path | None],
    failed: Sequence[HostResult[Any]],
    json_out: bool,
    to_stderr: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """The final per-stream table (or JSON): packets, bytes, drops, file and error of every stream, a
    row per host that could not be reached, then `extra` (clock readings, the path view)."""

    def file_of(run: StreamRun) -> str | None:
        path = files.get(id(run.sink))
        return str(path) if path else ("-" if to_stderr else None)

    errors = [(f.host.name, f.error.message, f.error.hint) for f in failed if f.error]
    if json_out and not to_stderr:
        print_json(
            {
                "streams": [
                    {
                        "host": r.stream.target.host,
                        "target": r.stream.target.label,
                        "point": r.stream.point_label,
                        "direction": r.stream.direction,
                        "interface": r.stream.interface_name,
                        "remote_command": r.remote_command,
                        "packets": r.packets,
                        "bytes": r.bytes,
                        "dropped": r.dropped,
                        "file": file_of(r),
                        "stop_reason": r.stop_reason,
                        "error": r.error.message if r.error else None,
                        "hint": r.error.hint if r.error else None,
                    }
                    for r in runs
                ],
                "errors": [{"host": h, "error": m, "hint": hint} for h, m, hint in errors],
                **(extra or {}),
            }
        )
        return
    console = _stderr() if to_stderr else _stdout()
    rows: list[Sequence[object]] = [
        (
            r.stream.target.host,
            r.stream.target.label,
            r.stream.point_label,
            r.stream.direction,
            r.packets,
            human_size(r.bytes),
            r.dropped,
            file_of(r),
        )
        for r in runs
    ]
    rows += [(h, "-", "-", "-", "-", "-", "-", f"failed: {m}") for h, m, _hint in errors]
    console.print(
        _table(
            "Capture summary", ("Host", "Target", "Point", "Dir", "Packets", "Bytes", "Dropped", "File"), rows
        )
    )
    if extra and extra.get("clocks"):
        clock_table(extra["clocks"], console)
    if extra and extra.get("path"):
        path_view(extra["path"], console)
    for message, hint in dict.fromkeys((r.error.message, r.error.hint) for r in runs if r.error):
        error(message, hint)  # streams sharing one file share its write error: said once
    host_errors(errors)


def points(host: str, names: Sequence[str], source: str, json_out: bool) -> None:
    if json_out:
        print_json({"host": host, "source": source, "points": list(names)})
        return
    _stdout().print(_table(f"{host}: capture points ({source})", ("#", "Point"), enumerate(names, start=1)))


def cleanup_report(rows: Sequence[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        print_json({"captures": list(rows)})
        return
    if not rows:
        info("no pktcap-uw process running on these hosts")
        return
    _stdout().print(
        _table(
            "pktcap-uw processes",
            ("Host", "PID", "Started by", "Action", "Command"),
            (
                (r["host"], r["pid"], "esxcap" if r["ours"] else "someone else", r["action"], r["command"])
                for r in rows
            ),
        )
    )


def bundle_report(doc: dict[str, Any]) -> None:
    """What `esxcap bundle` wrote: the archive (or its parts), its SHA-256, the files inside."""
    _stdout().print(
        _table(
            f"Bundle for {doc['ticket']}",
            ("File", "Packets", "Bytes", "SHA-256"),
            ((f["path"], f["packets"], f["size"], f["sha256"]) for f in doc["files"]),
        )
    )
    where = doc["archive"] or ", ".join(doc["parts"])
    _stdout().print(escape(f"archive: {where} ({human_size(doc['size'])}, sha256 {doc['sha256']})"))
    if doc["mapping"]:
        _stdout().print(escape(f"address mapping (keep it, do not send it): {doc['mapping']}"))


def verify_report(doc: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(doc)
        return
    if doc["ok"]:
        _stdout().print(escape(f"{doc['archive']}: OK, {len(doc['checked'])} files match their checksums"))
        return
    _stdout().print(escape(f"{doc['archive']}: FAILED"))
    for problem in doc["problems"]:
        _stdout().print(escape(f"  {problem}"))


def upload_progress(name: str, sent: int, total: int) -> None:
    info(f"{name}: {sent * 100 // max(total, 1)}% of {human_size(total)} sent")


def upload_report(reports: Sequence[Any]) -> None:
    for r in reports:
        tries = f" after {r.attempts} attempts" if r.attempts > 1 else ""
        if r.ok:
            _stdout().print(escape(f"uploaded {r.file} to {r.target}{tries}: {r.message}"))
        else:
            error(f"upload of {r.file} to {r.target} failed{tries}: {r.message}", r.hint)


def analysis(doc: dict[str, Any], json_out: bool) -> None:
    """`esxcap analyze`: tables of interfaces, protocols, conversations and problems."""
    if json_out:
        print_json(doc)
        return
    _stdout().print(
        _table(
            "Interfaces",
            ("File", "Interface", "Packets", "Bytes"),
            ((i["file"], i["name"], i["packets"], human_size(i["bytes"])) for i in doc["interfaces"]),
        )
    )
    if len(doc["capture_points"]) > 1:
        _stdout().print(_table("Capture points", ("Point", "Packets"), doc["capture_points"].items()))
    _stdout().print(
        _table(
            "Protocol hierarchy",
            ("Protocol", "Packets", "Bytes"),
            (
                ("  " * p["path"].count(":") + p["path"].rsplit(":", 1)[-1], p["packets"], p["bytes"])
                for p in doc["protocols"]
            ),
        )
    )
    _stdout().print(
        _table(
            "Top conversations",
            ("Proto", "A", "B", "Packets", "Bytes"),
            ((c["proto"], c["a"], c["b"], c["packets"], c["bytes"]) for c in doc["conversations"]),
        )
    )
    problems = [(f"TCP {k.replace('_', ' ')}", v) for k, v in doc["tcp"].items()]
    problems += [(f"DNS error: {k}", v) for k, v in doc["dns_errors"].items()]
    problems += [(f"ICMP unreachable: {k}", v) for k, v in doc["icmp_unreachable"].items()]
    _stdout().print(_table("Problems", ("What", "Count"), problems))
    if doc["tcp_copies_not_counted"]:
        _stdout().print(
            escape(
                f"TCP problems count each packet once: {doc['tcp_copies_not_counted']} copies of packets "
                "already seen at another capture point were left out of them"
            )
        )


def clock_table(clocks: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """Each host's clock offset at start and end, with its error bound (from esxcap.capture.clock)."""

    def cell(reading: dict[str, Any] | None) -> str:
        if reading is None:
            return "-"
        return f"{reading['offset_ms']:+.3f} ms ±{reading['bound_ms']:.3f}"

    def drift(check: dict[str, Any]) -> str:
        """The change with its bound, and whether it means anything: within the bound it is noise."""
        if check["drift_ms"] is None:
            return "-"
        verdict = "beyond the bounds" if check["drift_significant"] else "within the bounds"
        return f"{check['drift_ms']:+.3f} ms ±{check['drift_bound_ms']:.3f} ({verdict})"

    (console or _stdout()).print(
        _table(
            "Host clocks (host - this machine)",
            ("Host", "At start", "At end", "Drift", "Method", "Error"),
            (
                (
                    c["host"],
                    cell(c["start"]),
                    cell(c["end"]),
                    drift(c),
                    (c["start"] or c["end"] or {}).get("method", "-"),
                    c["error"],
                )
                for c in clocks
            ),
        )
    )


def _us(ns: float) -> str:
    return f"{ns / 1000:.0f} us" if abs(ns) < 10_000_000 else f"{ns / 1e6:.1f} ms"


def path_view(report: dict[str, Any], console: Console | None = None) -> None:
    """The packet-path view (esxcap.pcap.path.as_dict): per flow direction, its points in order with the
    latency of each hop, then the packets that never reached a later point."""
    out = console or _stdout()
    flows = report.get("flows", [])
    if not flows:
        out.print("no IP/ARP packets to follow")
        return
    for flow in flows:
        out.print(
            f"[bold]{escape(flow['flow'])}[/]  {escape(flow['direction'])}  ({flow['packets']} packets)",
            soft_wrap=True,
        )
        if flow["points"]:
            out.print(f"  1. {escape(flow['points'][0])}", soft_wrap=True)
        for n, hop in enumerate(flow["hops"], start=2):
            latency = _us(hop["median_us"] * 1000)
            spread = f"{_us(hop['min_us'] * 1000)}..{_us(hop['max_us'] * 1000)}"
            out.print(
                f"  {n}. {escape(hop['to'])}   +{latency} (min..max {spread}, {hop['packets']} pkts)",
                soft_wrap=True,
            )
        for loss in flow["lost"]:
            out.print(f"  [yellow]! {escape(loss['text'])}[/]", soft_wrap=True)
