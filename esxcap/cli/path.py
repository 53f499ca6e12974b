"""`path`: each flow's packets through the capture points of a capture file (also `capture --path`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esxcap.cli import output
from esxcap.cli.common import JsonOpt, app, run_job
from esxcap.cli.exitcodes import ExitCode
from esxcap.errors import UsageError


def path_report(path: Path) -> dict[str, object]:
    """The path view of a capture file, as its JSON document (read here, analysed by esxcap.pcap.path)."""
    from esxcap.pcap import CaptureFile
    from esxcap.pcap.path import analyze_source, as_dict

    if not path.is_file():
        raise UsageError(f"no such file: {path}", "check the path")
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        return {"file": str(path), **as_dict(analyze_source(source))}


@app.command()
def path(
    file: Annotated[Path, typer.Argument(help="A pcapng written by esxcap capture (or any pcap/pcapng).")],
    json_out: JsonOpt = False,
) -> None:
    """Each flow's packets through the capture points in order, per-hop latency, where they got lost."""

    async def job() -> int:
        report = path_report(file)
        if json_out:
            output.print_json(report)
        else:
            output.path_view(report)
        return ExitCode.OK

    run_job(job)
