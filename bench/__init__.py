"""esxcap's benchmarks (`make bench` = `python -m bench`): each benchmark measures its cases and a
baseline in the same run and returns rows of one shared table; targets are checked against ratios.

A benchmark is a function `(Options) -> list[Row]` listed in `bench.__main__.BENCHMARKS`. A case that
could not be measured is still a row, saying why (`Row.skipped`), never a silent gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from esxcap.cli.main import quiet_library_warnings

quiet_library_warnings()  # the benchmarks load asyncssh in this process: as quiet as esxcap itself

GIB = 1 << 30
MIB = 1 << 20
QUICK_BYTES = 64 * MIB


@dataclass(frozen=True)
class Options:
    """What every benchmark is asked to do: stream `nbytes` per case, best of `repeat` runs."""

    nbytes: int = GIB
    repeat: int = 3
    quick: bool = False
    workdir: Path | None = None
    """Where sshd's files and the streamed captures go (None: the system's temp dir)."""
    only: tuple[str, ...] = ()
    """Benchmarks to run, by module name (empty: all)."""


@dataclass(frozen=True)
class Row:
    """One line of the table: a measured case, or a ratio checked against its target."""

    bench: str
    case: str
    result: str
    target: str = ""
    verdict: str = ""

    @classmethod
    def skipped(cls, bench: str, case: str, reason: str) -> Row:
        return cls(bench, case, f"not measured: {reason}", "", "")

    @classmethod
    def ratio(cls, bench: str, case: str, value: float | None, minimum: float, why_none: str = "") -> Row:
        """A ratio row: PASS when value >= minimum; `why_none` when it could not be computed."""
        if value is None:
            return cls(bench, case, f"not measured: {why_none}", f">= {minimum:g}", "MISS")
        return cls(bench, case, f"{value:.2f}", f">= {minimum:g}", "PASS" if value >= minimum else "MISS")

    @classmethod
    def at_most(cls, bench: str, case: str, value: float | None, maximum: float, why_none: str = "") -> Row:
        """A cost ratio row: PASS when value <= maximum; `why_none` when it could not be computed."""
        if value is None:
            return cls(bench, case, f"not measured: {why_none}", f"<= {maximum:g}", "MISS")
        return cls(bench, case, f"{value:.2f}", f"<= {maximum:g}", "PASS" if value <= maximum else "MISS")


HEADERS = ("benchmark", "case", "result", "target", "verdict")


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table, columns padded to their widest cell."""
    cells = [HEADERS, *((r.bench, r.case, r.result, r.target, r.verdict) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
