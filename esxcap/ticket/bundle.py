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
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from esxcap import __version__
from esxcap.capture.metadata import operator, read_sidecar, utc
from esxcap.capture.sinks import create_private, publish, stream_file_kind
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, Interface, InterfaceStatistics, PcapngWriter, Record, Section, merge
from esxcap.pcap.anonymize import Anonymizer

BUNDLE_SCHEMA = "esxcap-bundle/1"
FORMATS = ("zip", "tar.gz")
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
README = "README.txt"
PARTS_SUFFIX = ".parts.sha256"
_CHUNK = 1 << 20
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`500k`, `10M`, `1.5GiB`, `2048` -> bytes (K = 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(
            f"--split-size {text}: not a size", "e.g. --split-size 10M (K, M, G: powers of 1024)"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * 1024 ** ("kmgt".index(unit) + 1)) if unit else int(number)
    if size < 1024:
        raise UsageError(f"--split-size {text}: parts must hold at least 1 KiB", "e.g. --split-size 10M")
    return size


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
    fmt: str = "zip"
    snaplen: int | None = None
    anonymize: bool = False
    full_host: bool = False
    split_size: int | None = None


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
            yield record._replace(data=data)


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
        lines.append("IP and MAC addresses are pseudonyms (the mapping stays with the sender).")
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


def _write_archive(out: Path, fmt: str, top: str, members: Sequence[tuple[str, Path | bytes]]) -> None:
    with create_private(out) as raw:
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
    """Cut a file into `NAME.001`, `NAME.002`... of at most `size` bytes (0600); `cat` joins them."""
    parts: list[Path] = []
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            part = path.with_name(f"{path.name}.{len(parts) + 1:03d}")
            with create_private(part) as out:
                out.write(chunk)
            parts.append(part)
    return parts


def join_parts(parts: Sequence[Path], out: IO[bytes]) -> None:
    for part in parts:
        with part.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                out.write(chunk)


def default_name(ticket: str, fmt: str) -> str:
    safe = re.sub(r"[^\w.-]+", "_", ticket).strip("_") or "bundle"
    return f"{safe}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{fmt}"


def build_bundle(
    captures: Sequence[Path],
    out: Path,
    options: BundleOptions,
    analyze: Callable[[Sequence[Path]], tuple[dict[str, Any] | None, list[str]]] | None = None,
) -> BundleResult:
    """Write the bundle archive `out` (and its parts and mapping); `analyze` gives the analysis
    document and README highlights for the bundled files (None: no analysis)."""
    if options.fmt not in FORMATS:
        raise UsageError(f"--format {options.fmt}: not an archive format", "use --format zip or tar.gz")
    missing = [str(c) for c in captures if not c.is_file()]
    if missing or not captures:
        raise UsageError(f"no such capture file: {', '.join(missing) or '(none given)'}", "check the paths")
    if stream_file_kind(out) is not None:
        raise UsageError(
            f"{out} is a {stream_file_kind(out)}; a bundle is written as a file", "give -o a file name"
        )
    anon = Anonymizer() if options.anonymize else None
    staging = out.with_name(out.name + ".files")
    staging.mkdir(parents=True, exist_ok=True)
    staging.chmod(0o700)
    try:
        files: list[dict[str, Any]] = []
        hosts: dict[str, Any] = {}
        members: list[tuple[str, Path | bytes]] = []
        names: set[str] = set()
        for src in captures:
            name = f"captures/{src.stem}.pcapng"
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
        part = out.with_name(out.name + ".part")
        _write_archive(part, options.fmt, out.name.removesuffix("." + options.fmt), members)
        publish(part, out)
    finally:
        for staged in staging.glob("*"):
            staged.unlink()
        staging.rmdir()
    digest, size = sha256_file(out), out.stat().st_size
    mapping = None
    if anon:
        mapping = out.with_name(out.name + ".mapping.json")
        with create_private(mapping) as handle:
            handle.write(json.dumps(anon.mapping(), indent=2).encode() + b"\n")
    parts: list[Path] = []
    if options.split_size and size > options.split_size:
        parts = split_file(out, options.split_size)
        listing = {p.name: sha256_file(p) for p in parts} | {out.name: digest}
        with create_private(out.with_name(out.name + PARTS_SUFFIX)) as handle:
            handle.write(sums_text(listing).encode())
        out.unlink()
    return BundleResult(out, digest, size, manifest, tuple(parts), mapping)
