"""The ticket commands: `bundle` (archive + manifest + checksums, optionally attached to a ticket),
`verify` and `analyze`, plain synchronous code (`capture --bundle` calls `bundle_captures` from a worker
thread, off its event loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from esxcap.cli import output
from esxcap.cli.common import ForceOpt, JsonOpt, app
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.errors import UsageError
from esxcap.pcap import is_capture_start
from esxcap.plan.sizes import human_size
from esxcap.ticket.bundle import PARTS_SUFFIX, BundleOptions, BundleResult, build_bundle
from esxcap.ticket.bundle_inputs import (
    DEFAULT_CAPTURES,
    archive_format,
    collect_captures,
    default_name,
    parse_size,
)

ANALYZE_PACKETS = 1_000_000
"""`esxcap analyze` reads at most this many packets unless told otherwise (tshark needs about a minute)."""
HIGHLIGHT_PACKETS = 5000
"""The bundle README's analysis reads at most this many packets per file (large bundles stay quick)."""


def _analysis(paths: Sequence[Path]) -> tuple[dict[str, Any] | None, list[str]]:
    from esxcap.ticket.analyze import analyze_files, highlights, tshark_available

    if not tshark_available():
        return None, []
    result = analyze_files(paths, max_packets=HIGHLIGHT_PACKETS)
    return result, highlights(result)


def bundle_captures(
    captures: Sequence[Path], options: BundleOptions, out: str | None, attach: str | None
) -> int:
    """Bundle (`captures`: files or folders, default ./captures; `out`: archive file or directory,
    default beside the first capture), show the result, upload when asked; returns the exit code. The
    --attach URL and its credentials are checked before anything is built."""
    from esxcap.ticket.upload import upload_target

    upload = upload_target(attach) if attach is not None else None
    captures = collect_captures(captures, output.warning)
    if out is None or out.endswith(("/", "\\")) or Path(out).expanduser().is_dir():
        directory = Path(out).expanduser() if out else captures[0].parent
        archive = directory / default_name(options.ticket, options.fmt or "zip")
    else:
        archive = Path(out).expanduser()
        archive_format(archive, options.fmt)
    size = sum(c.stat().st_size for c in captures)
    output.info(f"bundle: packing {len(captures)} capture files ({human_size(size)}) into {archive}")
    result = build_bundle(captures, archive, options, _analysis)
    output.bundle_report(_bundle_doc(result))
    if upload is None:
        return ExitCode.OK
    files = list(result.parts) or [result.archive]
    if result.parts:
        files.append(result.archive.with_name(result.archive.name + PARTS_SUFFIX))
    return _upload(upload, files)


def _upload(upload: Any, files: Sequence[Path]) -> int:
    from esxcap.ticket.upload import upload_files

    reports = upload_files(upload, files, output.upload_progress)
    output.upload_report(reports)
    return outcome_code(sum(1 for r in reports if not r.ok), len(reports))


def _bundle_doc(result: BundleResult) -> dict[str, Any]:
    return {
        "archive": str(result.archive) if not result.parts else None,
        "sha256": result.sha256,
        "size": result.size,
        "parts": [str(p) for p in result.parts],
        "mapping": str(result.mapping) if result.mapping else None,
        "ticket": result.manifest["ticket"],
        "files": [{k: f[k] for k in ("path", "packets", "size", "sha256")} for f in result.manifest["files"]],
        "packets": result.manifest["summary"]["packets"],
    }


@app.command()
def bundle(
    ticket: Annotated[
        str, typer.Option("--ticket", "-t", help="Support ticket ID, e.g. SR-12345.", metavar="TICKET")
    ],
    captures: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Capture files (pcapng/pcap) or folders holding them; default ./captures.", metavar="CAPTURE"
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Archive file or directory (default: beside the captures).", metavar="PATH"
        ),
    ] = None,
    force: ForceOpt = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="zip or tar.gz (default: from the -o name, else zip).", metavar="zip|tar.gz"
        ),
    ] = None,
    snaplen: Annotated[
        int | None, typer.Option("--snaplen", help="Cut packets in the bundle to N bytes.", metavar="N")
    ] = None,
    anonymize: Annotated[
        bool,
        typer.Option("--anonymize", help="Pseudonymise IP and MAC addresses (mapping kept beside)."),
    ] = False,
    full_host: Annotated[
        bool, typer.Option("--full-host", help="Include all host facts, not only the captured targets.")
    ] = False,
    split_size: Annotated[
        str | None,
        typer.Option("--split-size", help="Split the archive into parts, e.g. 10M.", metavar="SIZE"),
    ] = None,
    attach: Annotated[
        str | None,
        typer.Option(
            "--attach",
            help="Then upload it to jira+https://HOST/ISSUE-KEY, servicenow+https://HOST/TABLE/SYS_ID or "
            "https://HOST/PATH (credentials from the environment or the keyring, see the README).",
            metavar="URL",
        ),
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", help="Of a --ring capture: its last N segments.", metavar="N")
    ] = None,
    around: Annotated[
        str | None,
        typer.Option(
            "--around",
            help="Of a --ring capture: the segment holding this UTC time and its neighbours.",
            metavar="TIME",
        ),
    ] = None,
) -> None:
    """Pack captures for a support ticket: archive, manifest.json, SHA256SUMS and README.txt."""
    if last is not None and last < 1:
        raise UsageError(f"--last {last}: a number of segments, at least 1", "e.g. --last 3")
    from esxcap.capture.ringpick import pick_segments

    if last is not None or around is not None:
        captures = pick_segments(captures or [DEFAULT_CAPTURES], last, around, output.warning)
    elif captures:
        captures = [
            s
            for c in captures
            for s in (pick_segments([c], None, None, output.warning) if _ring_base(c) else [c])
        ]
    if fmt is not None:
        archive_format(Path(), fmt)
    if snaplen is not None and snaplen < 14:
        raise UsageError("--snaplen must keep at least the 14-byte Ethernet header", "e.g. --snaplen 128")
    options = BundleOptions(
        ticket=ticket,
        fmt=fmt,
        snaplen=snaplen,
        anonymize=anonymize,
        full_host=full_host,
        split_size=parse_size(split_size) if split_size else None,
        force=force,
    )
    raise typer.Exit(bundle_captures(captures or [], options, out, attach))


def _ring_base(path: Path) -> bool:
    """Whether `path` names a ring by its base (no such file, but `<base>_00001_<UTC>.pcapng` beside)."""
    from esxcap.capture.ringpick import find_rings

    return not path.exists() and bool(find_rings(path))


@app.command()
def attach(
    archive: Annotated[Path, typer.Argument(help="A bundle archive, or the first part (.001) of one.")],
    url: Annotated[str, typer.Argument(help="Where to upload it, as for bundle --attach.")],
) -> None:
    """Upload an existing bundle (every part and its checksum list, when it was split) to a ticket."""
    from esxcap.ticket.upload import upload_target

    upload = upload_target(url, given_as="URL")
    name = archive.name.removesuffix(".001")
    parts = sorted(archive.parent.glob(f"{name}.[0-9][0-9][0-9]"))
    listing = archive.with_name(name + PARTS_SUFFIX)
    if archive.name.endswith(".001") or (parts and not archive.is_file()):
        if not listing.is_file():
            raise UsageError(f"{listing} is missing beside the parts", "upload the parts with their list")
        files = [*parts, listing]
    elif archive.is_file():
        files = [archive]
    else:
        raise UsageError(f"no such archive: {archive}", "give the .zip/.tar.gz, or the first part (.001)")
    raise typer.Exit(_upload(upload, files))


@app.command()
def verify(
    archive: Annotated[Path, typer.Argument(help="Bundle archive, or its first part (.001).")],
    json_out: JsonOpt = False,
) -> None:
    """Re-check a bundle's checksums and manifest; name what is missing or altered."""
    from esxcap.ticket.verify import verify_archive

    report = verify_archive(archive)
    output.verify_report(
        {
            "archive": str(report.archive),
            "ticket": report.ticket,
            "ok": report.ok,
            "checked": list(report.checked),
            "problems": list(report.problems),
        },
        json_out,
    )
    raise typer.Exit(ExitCode.OK if report.ok else ExitCode.ALL_FAILED)


@app.command()
def analyze(
    file: Annotated[Path, typer.Argument(help="A pcap or pcapng file.")],
    top: Annotated[int, typer.Option("--top", help="Conversations shown.")] = 10,
    max_packets: Annotated[
        int,
        typer.Option(
            "--max-packets", help="Read at most N packets (0 = all); a long file is sampled.", metavar="N"
        ),
    ] = ANALYZE_PACKETS,
    json_out: JsonOpt = False,
) -> None:
    """Summarise a capture with tshark's dissectors: interfaces, protocols, conversations, problems."""
    from esxcap.ticket.analyze import analyze_files

    if file.is_dir():
        raise UsageError(f"{file} is a folder, not a capture file", "give one pcap or pcapng file in it")
    if not file.is_file():
        raise UsageError(f"no such file: {file}", "check the path")
    with file.open("rb") as handle:
        if not is_capture_start(handle.read(4)):
            raise UsageError(
                f"{file} is not a pcap or pcapng file", "give a capture file (e.g. one esxcap capture wrote)"
            )
    if top < 0:
        raise UsageError("--top must be 0 (no conversations listed) or more", "e.g. --top 10")
    if max_packets < 0:
        raise UsageError("--max-packets must be 0 (all) or more", f"e.g. --max-packets {ANALYZE_PACKETS}")
    doc = analyze_files([file], top=top, max_packets=max_packets or None, progress=_progress)
    if doc["partial"]:
        output.warning(f"only the first {max_packets} packets were analysed; --max-packets 0 reads them all")
    for problem in doc["read_errors"]:
        output.warning(problem)
    output.analysis(doc, json_out)
    raise typer.Exit(ExitCode.OK)


def _progress(name: str, packets: int) -> None:
    output.info(f"analyze: {packets} packets of {name} read")
