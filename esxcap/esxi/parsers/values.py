"""Shared reading helpers for the parsers: where a value came from, strict value conversions, and the
checked access to esxcli tables and record blocks that every parser goes through.

Every failure is a ParseError naming the command, the 1-based line number and the line itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from esxcap.errors import ParseError
from esxcap.esxi.textfmt import Column, Record, parse_records, parse_table, split_lines

U32_MAX = 0xFFFFFFFF
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Where:
    """The command and line a value was read from, for error messages."""

    command: str
    line_no: int
    line: str

    def error(self, reason: str) -> ParseError:
        return ParseError(self.command, self.line_no, self.line, reason)


def integer(value: str, what: str, where: Where) -> int:
    """A non-negative decimal integer; anything else (signs, spaces, non-ASCII digits) is an error."""
    if not _DIGITS.fullmatch(value):
        raise where.error(f"{what} is not a non-negative integer: {value!r}")
    return int(value)


def u32(value: str, what: str, where: Where) -> int:
    """A switch-port id: an unsigned 32-bit integer."""
    number = integer(value, what, where)
    if number > U32_MAX:
        raise where.error(f"{what} is larger than 32 bits: {value!r}")
    return number


def boolean(value: str, what: str, where: Where) -> bool:
    """esxcli's `true` / `false`."""
    if value not in ("true", "false"):
        raise where.error(f"{what} is not true or false: {value!r}")
    return value == "true"


def required_text(value: str, what: str, where: Where) -> str:
    if not value:
        raise where.error(f"{what} is empty")
    return value


def absent_if(value: str, *absent: str) -> str | None:
    """None when the value is empty or one of the host's spellings of 'nothing' (e.g. `N/A`)."""
    return None if value == "" or value in absent else value


def split_list(value: str) -> tuple[str, ...]:
    """esxcli's `a, b, c` lists (duplicates kept); an empty value is an empty list."""
    return tuple(value.split(", ")) if value else ()


def lines_of(text: str) -> list[str]:
    """The lines exactly as textfmt numbers them."""
    return split_lines(text)


# --- tables ---


def table_rows(
    text: str, command: str, layouts: Sequence[Sequence[Column]]
) -> Iterator[tuple[Where, dict[str, str]]]:
    """The rows of an esxcli table as header -> cell, after checking the header is one of `layouts`.

    Empty output is a table without rows.
    """
    if not text.strip():
        return
    table = parse_table(text, command)
    lines = lines_of(text)
    known = [tuple(c.header for c in layout) for layout in layouts]
    if table.headers not in known:
        expected = " | ".join("  ".join(h) for h in known)
        raise ParseError(command, 1, lines[0], f"unknown columns (expected {expected})")
    for line_no, cells in table.rows:
        yield Where(command, line_no, lines[line_no - 1]), dict(zip(table.headers, cells, strict=True))


# --- record blocks ---


@dataclass(frozen=True)
class Fields:
    """One record block's fields, each with the line it came from.

    Fields a parser does not ask for are ignored: newer builds add fields (REFERENCE §3.4) and
    discovery must keep working on them. Fields asked for with `require` must be there.
    """

    record: Record
    where: Where
    at: dict[str, Where]
    text_lines: tuple[str, ...]

    def require(self, key: str) -> tuple[str, Where]:
        value = self.record.get(key)
        if value is None:
            raise self.where.error(f"missing field {key!r}")
        return value, self.at[key]

    def optional(self, key: str) -> tuple[str | None, Where]:
        return self.record.get(key), self.at.get(key, self.where)

    def nested(self, key: str) -> tuple[Fields, ...]:
        children = self.record.nested.get(key, ())
        return tuple(_fields(child, self.where.command, self.text_lines) for child in children)


def record_blocks(text: str, command: str, titled: bool) -> tuple[Fields, ...]:
    """The record blocks of `text`, each with per-field line numbers."""
    lines = tuple(lines_of(text))
    return tuple(_fields(r, command, lines) for r in parse_records(text, command, titled))


def _fields(record: Record, command: str, lines: tuple[str, ...]) -> Fields:
    def at(line_no: int) -> Where:
        return Where(command, line_no, lines[line_no - 1])

    by_key: dict[str, Where] = {}
    line_no = record.line_no + (1 if record.title is not None else 0)
    for key, _value in record.fields:
        if key in by_key:
            raise at(line_no).error(f"field {key!r} appears twice in one block")
        by_key[key] = at(line_no)
        line_no += 1
        children = record.nested.get(key, ())
        if children:
            line_no = children[-1].line_no + len(children[-1].fields)
    return Fields(record, at(record.line_no), by_key, lines)
