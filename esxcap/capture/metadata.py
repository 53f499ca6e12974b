"""What a capture records about itself, at capture time, so nothing has to be re-discovered later.

One JSON document per capture file, written beside it as `FILE.pcapng.json` (mode 0600): tool version,
operator, UTC start and stop, every host's ESXi version/build and discovered facts, targets resolved to
VM/NIC/port ID/portgroup/vSwitch, the exact remote commands, filters, per-stream packet/byte/drop counts
and errors. The document builders are pure; `write_sidecar`/`read_sidecar` do the file I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esxcap import __version__
from esxcap.capture.files import create_part, place
from esxcap.capture.ring import SEGMENT_NAME, Ring
from esxcap.capture.sinks import OutputError
from esxcap.errors import UsageError
from esxcap.esxi.models import HostFacts
from esxcap.esxi.pktcap import FlowFilter
from esxcap.plan.planner import CaptureOptions, Target
from esxcap.plan.targets import vnic_label

if TYPE_CHECKING:
    from esxcap.capture.run import StreamRun
    from esxcap.inventory import HostConfig

SCHEMA = "esxcap-capture/1"
SIDECAR_SUFFIX = ".json"


def operator() -> str:
    """The local user running esxcap (who took the capture)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def utc(ts: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC time with milliseconds."""
    if ts is None:
        return None
    seconds, millis = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def filters_dict(filters: FlowFilter) -> dict[str, str]:
    """The flow filters that were set, as given."""
    return {
        f.name: str(getattr(filters, f.name))
        for f in dataclasses.fields(filters)
        if getattr(filters, f.name) is not None
    }


def target_dict(target: Target, facts: HostFacts | None) -> dict[str, Any]:
    """A target with what it resolved to on its host: VM, vNIC, MAC, port ID, portgroup, vSwitch..."""
    doc: dict[str, Any] = {
        "host": target.host,
        "kind": target.kind,
        "label": target.label,
        "description": target.description,
        "selector": {"kind": target.selector.kind, "value": target.selector.value},
    }
    if facts is None:
        return doc
    value = target.selector.value
    if target.kind == "vm":
        for vm in facts.vms:
            for index, port in enumerate(vm.ports):
                if port.port_id == value:
                    doc.update(
                        vm=vm.entry.name,
                        nic=vnic_label(facts, vm, index),
                        mac=port.mac,
                        ip=port.ip,
                        port_id=port.port_id,
                        portgroup=port.portgroup,
                        vswitch=port.vswitch,
                        dvport_id=port.dvport_id,
                        team_uplink=port.team_uplink,
                    )
    elif target.kind == "vmk":
        iface = next((i for i in facts.ip_interfaces if i.name == value), None)
        if iface is not None:
            doc.update(
                vmk=iface.name,
                mac=iface.mac,
                port_id=iface.port_id,
                portgroup=iface.portgroup,
                vswitch=iface.vds_name or iface.portset,
            )
    elif target.kind == "uplink":
        nic = next((n for n in facts.nics if n.name == value), None)
        if nic is not None:
            doc.update(uplink=nic.name, mac=nic.mac, driver=nic.driver, link=nic.link_status)
    elif target.kind == "switchport":
        row = next((p for p in facts.netstats if p.port_num == value), None)
        if row is not None:
            doc.update(port_id=row.port_num, client=row.client_name, vswitch=row.switch_name, mac=row.mac)
    return doc


def _start_offset(clock: Mapping[str, Any] | None) -> float | None:
    start = clock.get("start") if clock else None
    return start.get("offset_ms") if isinstance(start, Mapping) else None


def capture_document(
    *,
    started: float,
    stopped: float,
    hosts: Mapping[str, dict[str, Any]],
    targets: Sequence[dict[str, Any]],
    streams: Sequence[dict[str, Any]],
    options: Mapping[str, Any],
    filters: FlowFilter,
    errors: Sequence[dict[str, Any]],
    file: str | None,
    clocks: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole sidecar document of one capture file.

    `hosts` maps a host name to its discover-JSON entry (`facts.host_dict`); `clocks` a host name to its
    clock check (`clock.ClockCheck.as_dict`), whose start offset becomes `clock_offset_ms` (None when not
    measured). `streams` are the capture summary's stream entries of this file.
    """
    clocks = clocks or {}
    return {
        "schema": SCHEMA,
        "tool": {"name": "esxcap", "version": __version__},
        "operator": operator(),
        "file": file,
        "started_utc": utc(started),
        "stopped_utc": utc(stopped),
        "duration_s": round(stopped - started, 3),
        "hosts": {
            name: {
                "esxi": doc.get("esxi"),
                "clock_offset_ms": _start_offset(clocks.get(name)),
                "clock": clocks.get(name),
                "facts": doc,
            }
            for name, doc in hosts.items()
        },
        "targets": list(targets),
        "remote_commands": [s["remote_command"] for s in streams],
        "filters": filters_dict(filters),
        "options": dict(options),
        "streams": list(streams),
        "packets": sum(s.get("packets") or 0 for s in streams),
        "bytes": sum(s.get("bytes") or 0 for s in streams),
        "errors": list(errors),
    }


def sidecar_path(capture: Path) -> Path:
    return capture.with_name(capture.name + SIDECAR_SUFFIX)


def write_sidecar(capture: Path, document: Mapping[str, Any]) -> Path:
    """Write the document beside the capture file (a private `.part` written whole, then given the
    sidecar's name, replacing an older sidecar)."""
    path = sidecar_path(capture)
    part: Path | None = None
    try:
        part, handle = create_part(path)
        with handle:
            handle.write((json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        place(part, path, force=True)
    except OSError as exc:
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink()
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}",
            f"free some space; {capture.name} itself is kept, only its metadata is missing",
        ) from exc
    return path


def add_to_sidecars(captures: Sequence[Path], key: str, value: Any, warn: Callable[[str], None]) -> None:
    """Record what happened after the capture (e.g. vCenter changes undone) in each file's sidecar."""
    for capture in captures:
        try:
            document = read_sidecar(capture)
            if document is not None:
                write_sidecar(capture, {**document, key: value})
        except (UsageError, OutputError) as exc:
            warn(f"{exc.message}; {exc.hint}")


def read_sidecar(capture: Path) -> dict[str, Any] | None:
    """The capture's sidecar document (a ring segment's: its ring's), or None when it has none."""
    path = sidecar_path(capture)
    segment = SEGMENT_NAME.match(capture.name)
    if segment is not None and not path.is_file():
        path = sidecar_path(capture.with_name(segment.group("base")))
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable capture metadata file ({exc})", "remove or fix it") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise UsageError(f"{path}: not an esxcap capture metadata file", "remove or fix it")
    return document


def ring_dict(ring: Ring) -> dict[str, Any]:
    """A ring's entry: its spec, the segments kept (oldest first; those rotated out are only counted)."""
    return {
        "base": ring.base.name,
        "spec": dataclasses.asdict(ring.spec),
        "rotated_out": ring.rotated_out,
        "segments": [
            {
                "file": s.path.name,
                "packets": s.packets,
                "bytes": s.size,
                "first_packet_utc": utc(s.first_ns / 1e9) if s.first_ns is not None else None,
                "last_packet_utc": utc(s.last_ns / 1e9) if s.last_ns is not None else None,
            }
            for s in ring.segments
        ],
    }


def stream_dict(run: StreamRun, file: str | None) -> dict[str, Any]:
    """One stream's entry: where, what, the exact remote command, counts and error."""
    return {
        "host": run.stream.target.host,
        "target": run.stream.target.label,
        "point": run.stream.point_label,
        "direction": run.stream.direction,
        "packet_direction": run.stream.packet_direction,
        "interface": run.stream.interface_name,
        "remote_command": run.remote_command,
        "packets": run.packets,
        "bytes": run.bytes,
        "dropped": run.dropped,
        "started_utc": utc(run.started_at),
        "stopped_utc": utc(run.ended_at),
        "file": file,
        "error": run.error.message if run.error else None,
    }


def write_capture_sidecars(
    runs: Sequence[StreamRun],
    files: Mapping[int, Path | None],
    hosts: Mapping[str, tuple[HostConfig, HostFacts]],
    host_errors: Sequence[dict[str, Any]],
    started: float,
    stopped: float,
    options: CaptureOptions,
    limits: Mapping[str, Any],
    warn: Callable[[str], None],
    clocks: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write the sidecar of every capture file of one capture command (a sidecar that cannot be written
    is a warning: the capture itself is complete); returns the capture files."""
    from esxcap.esxi.facts import host_dict

    by_file: dict[Path, list[StreamRun]] = {}
    for run in runs:
        path = files.get(id(run.sink))
        if path is not None:
            by_file.setdefault(path, []).append(run)
    for path, file_runs in by_file.items():
        names = list(dict.fromkeys(r.stream.target.host for r in file_runs))
        targets = list(dict.fromkeys(r.stream.target for r in file_runs))
        document = capture_document(
            started=started,
            stopped=stopped,
            hosts={n: host_dict(*hosts[n]) for n in names if n in hosts},
            targets=[target_dict(t, hosts[t.host][1] if t.host in hosts else None) for t in targets],
            streams=[stream_dict(r, str(path)) for r in file_runs],
            options={
                "direction": options.direction,
                "points": list(options.points),
                "stage": options.stage,
                "count": options.count,
                "snaplen": options.snaplen,
                **limits,
            },
            filters=options.filters,
            errors=[
                *host_errors,
                *(
                    {"host": r.stream.target.host, "error": r.error.message, "hint": r.error.hint}
                    for r in file_runs
                    if r.error
                ),
            ],
            file=path.name,
            clocks={n: c for n, c in (clocks or {}).items() if n in names},
        )
        ring = file_runs[0].sink.ring
        if ring is not None:
            document["ring"] = ring_dict(ring)
        try:
            write_sidecar(path, document)
        except OutputError as exc:
            warn(f"{exc.message}; {exc.hint}")
    return list(by_file)
