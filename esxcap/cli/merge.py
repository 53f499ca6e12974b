"""`esxcap merge`: finished captures into one time-ordered pcapng. Its own module, so the command loads
what merging needs and not the capture machinery (it starts in about half the time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esxcap.cli import output
from esxcap.cli.common import ForceOpt, app, run_job
from esxcap.cli.exitcodes import ExitCode


@app.command()
def merge(
    files: Annotated[list[Path], typer.Argument(help="pcap or pcapng files.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="The merged pcapng file.")],
    force: ForceOpt = False,
) -> None:
    """Merge captures into one time-ordered pcapng, one interface per input interface."""
    from esxcap.capture.merging import merge_files

    async def job() -> int:
        written, result, merged = merge_files(files, out, force, output.warning)
        output.info(f"{written}: {result.packets} packets from {merged} files")
        return ExitCode.OK

    run_job(job)
