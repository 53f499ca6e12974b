"""esxcli's default text layouts, both ways: tables (old and new style) and `Key: Value` record blocks.

The parsers read these layouts and the simulator writes them, so the two can never drift apart.
Rules (REFERENCE.md §3.0): columns are separated by two spaces and sized by the dash row; numeric
columns are right-aligned. The dash run of the last left-aligned column is as long as its widest value
in the old style (<= 7.0.1) and as long as its header in the new style (>= 7.0.2); its values are never
padded (the verbatim 6.7 samples carry no trailing spaces).
Record blocks have an optional title at column 0 and `   Key: Value` lines; nested lists of records
(dvs list) are indented nine spaces and separated by a line of six spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from esxcap.errors import ParseError

TableStyle = Literal["old", "new"]
COLUMN_GAP = "  "
RECORD_INDENT = "   "
NESTED_INDENT = "         "
NESTED_SEPARATOR = "      "


@dataclass(frozen=True)
class Column:
    """One table column: its header and whether it is right-aligned, header included (numbers, booleans)."""

    header: str
    right: bool = False


@dataclass(frozen=True)
class Table:
    """A parsed table: the headers and, per row, its 1-based line number and cells (stripped)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Record:
    """One record block: optional title line, its fields in order, and nested record lists by key."""

    title: str | None
    fields: tuple[tuple[str, str], ...]
    line_no: int = 0
    nested: dict[str, tuple[Record, ...]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """The value of `key`, or None when the block has no such field."""
        for name, value in self.fields:
            if name == key:
                return value
        return None


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], style: TableStyle) -> str:
    """Render rows the way esxcli prints them; every line ends with a newline."""
    widths = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    last = len(columns) - 1
    unpadded_last = not columns[last].right
    if unpadded_last and style == "new":
        widths[last] = len(columns[last].header)

    def cell(i: int, text: str) -> str:
        if i == last and unpadded_last:
            return text
        if columns[i].right:
            return text.rjust(widths[i])
        return text.ljust(widths[i])

    lines = [
        COLUMN_GAP.join(cell(i, c.header) for i, c in enumerate(columns)),
        COLUMN_GAP.join("-" * w for w in widths),
    ]
    lines += [COLUMN_GAP.join(cell(i, v) for i, v in enumerate(row)) for row in rows]
    return "".join(line + "\n" for line in lines)


def split_lines(text: str) -> list[str]:
    """Lines split on newlines only (a CRLF's CR dropped): names may hold U+2028, U+0085 or form feeds."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def _dash_runs(line: str) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    start = None
    for pos, char in enumerate(line + " "):
        if char == "-" and start is None:
            start = pos
        elif char != "-" and start is not None:
            runs.append((start, pos))
            start = None
    return runs


def parse_table(text: str, command: str) -> Table:
    """Split an esxcli table into cells using the dash row; raise ParseError on any misfit line."""
    lines = split_lines(text)
    if len(lines) < 2:
        raise ParseError(command, len(lines), lines[0] if lines else "", "expected a header and a dash row")
    header_line, dash_line = lines[0], lines[1]
    if dash_line.strip(" -") or "-" not in dash_line:
        raise ParseError(command, 2, dash_line, "expected the dash row under the header")
    runs = _dash_runs(dash_line)
    for i, (start, _end) in enumerate(runs):
        if i and dash_line[start - len(COLUMN_GAP) : start] != COLUMN_GAP:
            raise ParseError(command, 2, dash_line, "columns are not two spaces apart")
    headers = tuple(_cells(header_line, runs, 1, command))
    if any(not h for h in headers) or header_line[: runs[0][0]].strip():
        raise ParseError(command, 1, header_line, "header does not line up with the dash row")
    rows = tuple(
        (no, tuple(_cells(line, runs, no, command)))
        for no, line in enumerate(lines[2:], start=3)
        if line.strip() or len(runs) > 1
    )
    return Table(headers, rows)


def _cells(line: str, runs: list[tuple[int, int]], line_no: int, command: str) -> list[str]:
    if line[: runs[0][0]].strip():
        raise ParseError(command, line_no, line, "text before the first column")
    cells = []
    for i, (start, end) in enumerate(runs):
        if i == len(runs) - 1:
            cells.append(line[start:].strip())
        elif line[end : end + len(COLUMN_GAP)].strip():
            raise ParseError(command, line_no, line, f"column {i + 1} is wider than its dash run")
        else:
            cells.append(line[start:end].strip())
    return cells


def render_records(records: Sequence[Record], empty_trailing_space: bool = True) -> str:
    """Render record blocks; an empty value prints as `Key: ` (or `Key:` on hosts that drop the space)."""
    blocks = []
    for record in records:
        lines = [record.title] if record.title is not None else []
        for key, value in record.fields:
            lines.append(_field_line(RECORD_INDENT, key, value, empty_trailing_space))
            for n, child in enumerate(record.nested.get(key, ())):
                if n:
                    lines.append(NESTED_SEPARATOR)
                lines += [_field_line(NESTED_INDENT, k, v, empty_trailing_space) for k, v in child.fields]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _field_line(indent: str, key: str, value: str, empty_trailing_space: bool) -> str:
    if value:
        return f"{indent}{key}: {value}"
    return f"{indent}{key}:" + (" " if empty_trailing_space else "")


def parse_records(text: str, command: str, titled: bool) -> tuple[Record, ...]:
    """Parse record blocks. `titled`: each block starts with a title line at column 0."""
    records: list[Record] = []
    title: str | None = None
    fields: list[tuple[str, str]] = []
    nested: dict[str, list[Record]] = {}
    start = 0
    nested_key: str | None = None
    child: list[tuple[str, str]] = []
    child_line = 0

    def close_child() -> None:
        nonlocal child
        if nested_key is not None and child:
            nested[nested_key].append(Record(None, tuple(child), child_line))
        child = []

    def close_block() -> None:
        nonlocal title, fields, nested, nested_key
        close_child()
        if title is not None or fields:
            frozen = {k: tuple(v) for k, v in nested.items() if v}
            records.append(Record(title, tuple(fields), start, frozen))
        title, fields, nested, nested_key = None, [], {}, None

    for no, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            if line.startswith(NESTED_SEPARATOR) and nested_key is not None:
                close_child()
            else:
                close_block()
            continue
        if line.startswith(NESTED_INDENT) and not line.startswith(NESTED_INDENT + " "):
            if nested_key is None:
                raise ParseError(command, no, line, "nested field outside a nested list")
            if not child:
                child_line = no
            child.append(_split_field(line[len(NESTED_INDENT) :], no, line, command))
            continue
        if line.startswith(RECORD_INDENT) and not line.startswith(RECORD_INDENT + " "):
            close_child()
            key, value = _split_field(line[len(RECORD_INDENT) :], no, line, command)
            if not fields and title is None:
                if titled:
                    raise ParseError(command, no, line, "field before the block's title line")
                start = no
            fields.append((key, value))
            nested_key = None
            if not value:
                nested_key = key
                nested[key] = []
            continue
        if titled and not line.startswith(" ") and title is None and not fields:
            title, start = line, no
            continue
        raise ParseError(command, no, line, "expected '   Key: Value'")
    close_block()
    return tuple(records)


def _split_field(body: str, no: int, line: str, command: str) -> tuple[str, str]:
    key, sep, value = body.partition(":")
    if not sep or not key.strip() or key != key.strip():
        raise ParseError(command, no, line, "expected 'Key: Value'")
    if value and not value.startswith(" "):
        raise ParseError(command, no, line, "expected a space after 'Key:'")
    return key, value[1:].rstrip() if value.strip() else ""
