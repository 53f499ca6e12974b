"""Reading a discovery section that surprised the strict parser, without guessing and without failing
the host: what was left out is said in warnings.

Two things are skipped, each with a warning naming the command, the line number and the line:

* diagnostic lines (`Warning: ...`, `Error: ...`, `-sh: ...`) before or after a command's output - a
  stray message on stderr, folded in by the batch's `2>&1`;
* a row the parser refuses (a table or net-stats row that does not re-render, a broken record line),
  when it is past the section's heading lines, up to `MAX_SKIPPED` per section.

Whatever stays unreadable raises the parser's ParseError: the caller leaves the section empty (with a
warning) or, where the host cannot be used without it, fails the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from esxcap.errors import ParseError

T = TypeVar("T")
MAX_SKIPPED = 5
_DIAGNOSTIC = re.compile(r"(?i:warning|error|note|notice|info)\b\s*[:!]|-sh: ")


def read_leniently(text: str, parser: Callable[[str], T], *, heading_lines: int = 0) -> tuple[T, list[str]]:
    """`parser(text)` after skipping stray diagnostics and refused rows; (value, warnings).

    `heading_lines`: how many leading lines are the section's own heading (a table's header and dash
    row, net-stats' header) and are never skipped as a refused row.
    """
    numbered = list(enumerate(text.split("\n"), start=1))
    warnings: list[str] = []

    def skip(index: int, why: str) -> None:
        line_no, line = numbered.pop(index)
        warnings.append(f"skipped line {line_no} ({why}): {line.strip()[:120]!r}")

    while numbered and (not numbered[0][1].strip() or _DIAGNOSTIC.match(numbered[0][1])):
        if numbered[0][1].strip():
            skip(0, "a message, not output")
        else:
            numbered.pop(0)
    end = len(numbered) - 1
    while end >= 0 and (not numbered[end][1].strip() or _DIAGNOSTIC.match(numbered[end][1])):
        if numbered[end][1].strip():
            skip(end, "a message, not output")
        end -= 1
    refused = 0
    while True:
        try:
            return parser("\n".join(line for _, line in numbered)), warnings
        except ParseError as exc:
            index = exc.line_no - 1
            if refused >= MAX_SKIPPED or not heading_lines <= index < len(numbered):
                raise
            refused += 1
            skip(index, exc.reason)
