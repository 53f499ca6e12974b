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
from esxcap.cli.common import JsonOpt, app
from esxcap.cli.exitcodes import ExitCode, outcome_code
from esxcap.errors import UsageError
from esxcap.ticket.bundle import FORMATS, BundleOptions, BundleResult, build_bundle, default_name, parse_size

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
    """Bundle (`out`: archive file or directory, default beside the first capture), show the result,
    upload when asked; returns the exit code."""
    if out is None or out.endswith(("/", "\\")) or Path(out).expanduser().is_dir():
        directory = Path(out).expanduser() if out else (captures[0].parent if captures else Path.cwd())
        archive = directory / default_name(options.ticket, options.fmt)
    else:
        archive = Path(out).expanduser()
    result = build_bundle(captures, archive, options, _analysis)
    output.bundle_report(_bundle_doc(result))
    if attach is None:
        return ExitCode.OK
    from esxcap.ticket.upload import upload_files

    files = list(result.parts) or [result.archive]
    if result.parts:
        files.append(result.archive.with_name(result.archive.name + ".parts.sha256"))
    reports = upload_files(attach, files, output.upload_progress)
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
    captures: Annotated[list[Path], typer.Argument(help="Capture files (pcapng/pcap).")],
    ticket: Annotated[str, typer.Option("--ticket", "-t", help="Support ticket ID, e.g. SR-12345.")],
    out: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Archive file or directory (default: beside the captures)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="zip or tar.gz.")] = "zip",
    snaplen: Annotated[
        int | None, typer.Option("--snaplen", help="Cut packets in the bundle to N bytes.")
    ] = None,
    anonymize: Annotated[
        bool,
        typer.Option("--anonymize", help="Pseudonymise IP and MAC addresses (mapping kept beside)."),
    ] = False,
    full_host: Annotated[
        bool, typer.Option("--full-host", help="Include all host facts, not only the captured targets.")
    ] = False,
    split_size: Annotated[
        str | None, typer.Option("--split-size", help="Split the archive into parts, e.g. 10M.")
    ] = None,
    attach: Annotated[
        str | None,
        typer.Option(
            "--attach", help="Upload to jira+https://HOST/KEY, servicenow+https://HOST/TABLE/ID, https://"
        ),
    ] = None,
) -> None:
    """Pack captures for a support ticket: archive, manifest.json, SHA256SUMS and README.txt."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: not an archive format", "use --format zip or tar.gz")
    if snaplen is not None and snaplen < 14:
        raise UsageError("--snaplen must keep at least the 14-byte Ethernet header", "e.g. --snaplen 128")
    options = BundleOptions(
        ticket=ticket,
        fmt=fmt,
        snaplen=snaplen,
        anonymize=anonymize,
        full_host=full_host,
        split_size=parse_size(split_size) if split_size else None,
    )
    raise typer.Exit(bundle_captures(captures, options, out, attach))


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
    json_out: JsonOpt = False,
) -> None:
    """Summarise a capture with tshark's dissectors: interfaces, protocols, conversations, problems."""
    from esxcap.ticket.analyze import analyze_files, require_tshark

    if not file.is_file():
        raise UsageError(f"no such file: {file}", "check the path")
    require_tshark()
    output.analysis(analyze_files([file], top=top), json_out)
    raise typer.Exit(ExitCode.OK)
