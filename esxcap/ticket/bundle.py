"""Ticket bundles: one archive (zip or tar.gz) holding the capture files, `manifest.json` (the captures'
own metadata, host facts scoped to the captured targets, per-file SHA-256), `SHA256SUMS` and a short
`README.txt`; optionally packets cut to a snaplen, addresses pseudonymised (the mapping is written beside
the archive, never into it) and the archive split into parts for upload limits.

The document builders are pure; `build_bundle` writes files (0600, `.part` then renamed). Checking an
archive again is `esxcap.ticket.verify`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from esxcap import __version__
from esxcap.capture.files import check_destination, create_part, create_private, place
from esxcap.capture.metadata import operator, read_sidecar, utc
from esxcap.capture.sinks import stream_file_kind
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, Interface, InterfaceStatistics, PcapngWriter, Record, Section, merge
from esxcap.pcap.anonymize import Anonymizer
from esxcap.ticket.bundle_inputs import archive_format, archive_stem

BUNDLE_SCHEMA = "esxcap-bundle/1"
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
README = "README.txt"
PARTS_SUFFIX = ".parts.sha256"
_CHUNK = 1 << 20


ANONYMIZED_NOTE = (
    "IP and MAC addresses are pseudonyms (the mapping stays with the sender): in every packet header",
    "(Ethernet, VLAN, ARP, IPv4, IPv6), DHCP's address fields, NDP targets and VXLAN inner frames; known",
    "addresses wherever their bytes recur in a packet (ICMP-quoted headers, IP and DHCP options, LLDP);",
    "addresses written as text in payloads (HTTP Host:) masked with x; and every name, comment,",
    "description and file name. Kept: host, VM and DNS names, and an address that only ever appears",
    "inside a payload before any header carried it.",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sums_text(entries: Mapping[str, str]) -> str:
    """`sha256sum -c` format: `<hex>  <path>` per line."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries.items())


def parse_sums(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and re.fullmatch(r"[0-9a-f]{64}", digest):
            result[name.removeprefix("*")] = digest
    return result


def scope_facts(host_doc: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A host's discover-JSON entry cut down to what the captured targets touch: their VMs, vmknics,
    uplinks (and the uplinks their ports team over), switches and switch ports; no other VM is named."""
    vms = {t["vm"] for t in targets if t.get("vm")}
    vmks = {t["vmk"] for t in targets if t.get("vmk")}
    nics = {t["uplink"] for t in targets if t.get("uplink")} | {
        t["team_uplink"] for t in targets if t.get("team_uplink")
    }
    ports = {t["port_id"] for t in targets if t.get("port_id") is not None}
    switches = {t["vswitch"] for t in targets if t.get("vswitch")}
    kept_vms = [vm for vm in host_doc.get("vms", []) if vm["name"] in vms]
    kept_ports = [p for p in host_doc.get("ports", []) if p["port_id"] in ports or p["client"] in nics | vmks]
    switches |= {p["switch"] for p in kept_ports}
    clients = {f"{vm}." for vm in vms}

    def switch(doc: Mapping[str, Any]) -> dict[str, Any]:
        doc = dict(doc)
        if "dvports" in doc:
            doc["dvports"] = [
                p for p in doc["dvports"] if p.get("client") and p["client"].startswith(tuple(clients))
            ]
        return doc

    return {
        **{k: host_doc[k] for k in ("host", "esxi") if k in host_doc},
        "scoped": True,
        "vms": kept_vms,
        "vmknics": [v for v in host_doc.get("vmknics", []) if v["name"] in vmks],
        "uplinks": [u for u in host_doc.get("uplinks", []) if u["name"] in nics],
        "switches": [switch(s) for s in host_doc.get("switches", []) if s["name"] in switches],
        "ports": kept_ports,
    }


@dataclass(frozen=True)
class BundleOptions:
    ticket: str
    fmt: str | None = None
    """zip or tar.gz; None: from the archive's name (zip when it says nothing)."""
    snaplen: int | None = None
    anonymize: bool = False
    full_host: bool = False
    split_size: int | None = None
    force: bool = False


@dataclass(frozen=True)
class BundleResult:
    archive: Path
    sha256: str
    size: int
    manifest: dict[str, Any]
    parts: tuple[Path, ...] = ()
    mapping: Path | None = None


class _Rewritten:
    """A capture file's records with addresses pseudonymised and/or packets cut to a snaplen."""

    def __init__(self, source: CaptureFile, snaplen: int | None, anon: Anonymizer | None) -> None:
        self.source, self.snaplen, self.anon = source, snaplen, anon

    def _text(self, text: str | None) -> str | None:
        return self.anon.text(text) if self.anon and text is not None else text

    @property
    def interfaces(self) -> Sequence[Interface]:
        cut = self.snaplen
        return [
            replace(
                i,
                name=self._text(i.name) or "",
                description=self._text(i.description),
                comments=tuple(self._text(c) or "" for c in i.comments),
                snaplen=min(i.snaplen or cut, cut) if cut else i.snaplen,
            )
            for i in self.source.interfaces
        ]

    @property
    def statistics(self) -> Sequence[InterfaceStatistics]:
        return self.source.statistics

    def __iter__(self) -> Iterator[Record]:
        for record in self.source:
            data: bytes | memoryview = self.anon.frame(record.data) if self.anon else record.data
            if self.snaplen:
                data = data[: self.snaplen]
            comments = tuple(self._text(c) or "" for c in record.comments)
            yield record._replace(data=data, comments=comments)


def _sections(path: Path) -> Sequence[Section]:
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        next(iter(source), None)
        return source.sections


def rewrite_capture(src: Path, out: IO[bytes], snaplen: int | None, anon: Anonymizer | None) -> int:
    """Copy a capture as pcapng (interfaces, comments, statistics kept); returns the packet count."""
    comments = [c for s in _sections(src) for c in s.comments]
    if anon:
        comments = [anon.text(c) for c in comments]
    if snaplen:
        comments.append(f"packets cut to {snaplen} bytes for this bundle")
    with src.open("rb") as handle:
        source = CaptureFile(handle, src.name)
        return merge([_Rewritten(source, snaplen, anon)], PcapngWriter(out, comments=comments)).packets


def readme_text(manifest: Mapping[str, Any], highlights: Sequence[str]) -> str:
    """The short human summary: what, where, when, how many packets, analysis highlights."""
    summary = manifest["summary"]
    lines = [
        f"Packet captures for ticket {manifest['ticket']}",
        "",
        f"Made by {manifest['operator']} with esxcap {manifest['tool']['version']}"
        f" on {manifest['created_utc']}.",
        f"Captured from {summary['started_utc'] or '?'} to {summary['stopped_utc'] or '?'} (UTC).",
        f"{summary['packets']} packets in {len(manifest['files'])} file(s).",
        "",
        "What and where:",
    ]
    lines += [f"  - {d}" for d in summary["targets"]] or ["  (no capture metadata)"]
    lines += ["", "Files:"]
    lines += [f"  - {f['path']}: {f['packets']} packets, {f['size']} bytes" for f in manifest["files"]]
    options = manifest["options"]
    if options["snaplen"]:
        lines.append(f"Packets were cut to {options['snaplen']} bytes.")
    if options["anonymized"]:
        lines += ["", *ANONYMIZED_NOTE]
    if highlights:
        lines += ["", "Analysis highlights:", *(f"  - {h}" for h in highlights)]
    lines += [
        "",
        "Check: sha256sum -c SHA256SUMS (or: esxcap verify ARCHIVE). Full details: manifest.json.",
    ]
    return "\n".join(lines) + "\n"


def _capture_entry(
    path: Path, archived: Path, name: str, full_host: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the manifest's file entry, its hosts) for one capture."""
    meta = read_sidecar(path)
    with archived.open("rb") as handle:
        packets = sum(1 for _ in CaptureFile(handle, name))
    entry: dict[str, Any] = {
        "path": name,
        "source": path.name,
        "size": archived.stat().st_size,
        "sha256": sha256_file(archived),
        "packets": packets,
    }
    hosts: dict[str, Any] = {}
    if meta is None:
        entry["capture"] = {"section_comments": [c for s in _sections(path) for c in s.comments]}
        return entry, hosts
    targets = meta.get("targets", [])
    for host, doc in meta.get("hosts", {}).items():
        facts = doc.get("facts", {})
        scoped = facts if full_host else scope_facts(facts, [t for t in targets if t.get("host") == host])
        hosts[host] = {**doc, "facts": scoped}
    entry["capture"] = {k: v for k, v in meta.items() if k != "hosts"}
    return entry, hosts


def build_manifest(
    ticket: str,
    files: Sequence[Mapping[str, Any]],
    hosts: Mapping[str, Any],
    options: BundleOptions,
) -> dict[str, Any]:
    """The manifest without its analysis (added by the caller from the bundled files)."""
    captures = [f["capture"] for f in files if "started_utc" in f["capture"]]
    starts = sorted(c["started_utc"] for c in captures if c.get("started_utc"))
    stops = sorted(c["stopped_utc"] for c in captures if c.get("stopped_utc"))
    return {
        "schema": BUNDLE_SCHEMA,
        "ticket": ticket,
        "created_utc": utc(time.time()),
        "tool": {"name": "esxcap", "version": __version__},
        "operator": operator(),
        "options": {
            "snaplen": options.snaplen,
            "anonymized": options.anonymize,
            "full_host": options.full_host,
        },
        "summary": {
            "packets": sum(f["packets"] for f in files),
            "started_utc": starts[0] if starts else None,
            "stopped_utc": stops[-1] if stops else None,
            "hosts": sorted(hosts),
            "targets": list(dict.fromkeys(t["description"] for c in captures for t in c.get("targets", []))),
        },
        "files": list(files),
        "hosts": dict(hosts),
        "analysis": None,
    }


def _write_archive(raw: IO[bytes], fmt: str, top: str, members: Sequence[tuple[str, Path | bytes]]) -> None:
    with raw:
        if fmt == "zip":
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, content in members:
                    if isinstance(content, Path):
                        archive.write(content, f"{top}/{name}")
                    else:
                        archive.writestr(f"{top}/{name}", content)
            return
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name, content in members:
                if isinstance(content, Path):
                    tar.add(content, f"{top}/{name}", recursive=False)
                    continue
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(content), int(time.time()), 0o600
                tar.addfile(info, io.BytesIO(content))


def split_file(path: Path, size: int) -> list[Path]:
    """Cut a file into `NAME.001`, `NAME.002`... of at most `size` bytes (0600, each written as a
    private `.part` first, replacing an older part of that name); `cat` joins them."""
    parts: list[Path] = []
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            name = path.with_name(f"{path.name}.{len(parts) + 1:03d}")
            part, out = create_part(name)
            with out:
                out.write(chunk)
            parts.append(place(part, name, force=True))
    return parts


def _write_beside(path: Path, content: bytes) -> Path:
    """A small file named after the archive (its mapping, its parts' checksums), replacing an older one."""
    part, out = create_part(path)
    with out:
        out.write(content)
    return place(part, path, force=True)


def join_parts(parts: Sequence[Path], out: IO[bytes]) -> None:
    for part in parts:
        with part.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                out.write(chunk)


def build_bundle(
    captures: Sequence[Path],
    out: Path,
    options: BundleOptions,
    analyze: Callable[[Sequence[Path]], tuple[dict[str, Any] | None, list[str]]] | None = None,
) -> BundleResult:
    """Write the bundle archive `out` (and its parts and mapping); `analyze` gives the analysis
    document and README highlights for the bundled files (None: no analysis)."""
    fmt = archive_format(out, options.fmt)
    missing = [str(c) for c in captures if not c.is_file()]
    if missing or not captures:
        raise UsageError(f"no such capture file: {', '.join(missing) or '(none given)'}", "check the paths")
    if stream_file_kind(out) is not None:
        raise UsageError(
            f"{out} is a {stream_file_kind(out)}; a bundle is written as a file", "give -o a file name"
        )
    check_destination(out, options.force, "bundle archive")
    anon = Anonymizer() if options.anonymize else None
    # a private folder made here (mkdtemp: new, 0700), never a name someone could have placed
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".files", dir=out.parent) as folder:
        staging = Path(folder)
        files: list[dict[str, Any]] = []
        hosts: dict[str, Any] = {}
        members: list[tuple[str, Path | bytes]] = []
        names: set[str] = set()
        for src in captures:
            name = f"captures/{anon.text(src.stem) if anon else src.stem}.pcapng"
            while name in names:
                name = name.removesuffix(".pcapng") + "_.pcapng"
            names.add(name)
            staged = staging / f"{len(names)}.pcapng"
            with create_private(staged) as handle:
                rewrite_capture(src, handle, options.snaplen, anon)
            entry, file_hosts = _capture_entry(src, staged, name, options.full_host)
            files.append(entry)
            hosts.update(file_hosts)
            members.append((name, staged))
        analysis, highlights = (
            analyze([p for _, p in members if isinstance(p, Path)]) if analyze else (None, [])
        )
        manifest = build_manifest(options.ticket, files, hosts, options)
        if anon:
            manifest = anon.document(manifest)
        manifest["analysis"] = analysis  # read from the bundled files: already pseudonymised
        manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
        readme = readme_text(manifest, highlights).encode()
        sums = {f["path"]: f["sha256"] for f in manifest["files"]}
        sums[MANIFEST] = hashlib.sha256(manifest_bytes).hexdigest()
        sums[README] = hashlib.sha256(readme).hexdigest()
        members += [(MANIFEST, manifest_bytes), (README, readme), (SUMS, sums_text(sums).encode())]
        part, raw = create_part(out)
        try:
            _write_archive(raw, fmt, archive_stem(out.name), members)
        except BaseException:
            part.unlink()
            raise
        out = place(part, out, options.force)
    digest, size = sha256_file(out), out.stat().st_size
    mapping = None
    if anon:
        mapping_doc = json.dumps(anon.mapping(), indent=2).encode() + b"\n"
        mapping = _write_beside(out.with_name(out.name + ".mapping.json"), mapping_doc)
    parts: list[Path] = []
    if options.split_size and size > options.split_size:
        parts = split_file(out, options.split_size)
        # the parts only, so that `sha256sum -c` in their folder checks them (the joined archive is
        # not there); its own SHA-256 is in the report
        listing = {p.name: sha256_file(p) for p in parts}
        _write_beside(out.with_name(out.name + PARTS_SUFFIX), sums_text(listing).encode())
        out.unlink()
    return BundleResult(out, digest, size, manifest, tuple(parts), mapping)
