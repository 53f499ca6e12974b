"""A small BusyBox-ash-compatible command interpreter: just what esxcap sends to a host, nothing more.

Supported: words with single/double quotes and backslashes, `$?`, comments, lists with `;`, newline,
`&&`, `||`, redirections `2>&1`, `>&2`, `>/dev/null`, `2>/dev/null`, and the builtins `echo`, `true`,
`false`, `:`, `exit` and `sh -c SCRIPT`. Everything else (pipes, `$(...)`, backticks, variables,
globs, background jobs, assignments, compound commands) is refused as a syntax error (exit 2) before
anything runs, so text inside arguments is only ever data. Programs are supplied by the caller (pure).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SYNTAX_STATUS = 2
NOT_FOUND_STATUS = 127
_DELIMITERS = " \t\n;&|()<>"
_RESERVED = {"if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
             "in", "{", "}", "!", "[[", "]]", "function", "select"}  # fmt: skip
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Output:
    """What a command wrote, in order: (1 = stdout | 2 = stderr, bytes) chunks, and its exit status."""

    chunks: tuple[tuple[int, bytes], ...] = ()
    status: int = 0

    @classmethod
    def text(cls, stdout: str = "", stderr: str = "", status: int = 0) -> Output:
        chunks = [(fd, data.encode()) for fd, data in ((1, stdout), (2, stderr)) if data]
        return cls(tuple(chunks), status)

    def stream(self, fd: int) -> bytes:
        return b"".join(data for n, data in self.chunks if n == fd)


Programs = Callable[[Sequence[str]], Output | None]
"""Runs argv as a program; None when no such program exists (`not found`)."""


class ShellSyntaxError(Exception):
    """The script uses something this shell does not parse; nothing of it was run."""


class _Status:
    """`$?` inside a word."""


STATUS = _Status()
WordPart = str | _Status


@dataclass(frozen=True)
class Word:
    parts: tuple[WordPart, ...]
    raw: str

    def expand(self, status: int) -> str:
        return "".join(str(status) if isinstance(p, _Status) else p for p in self.parts)


@dataclass(frozen=True)
class Redirect:
    """`fd` goes to `target`: another fd (1, 2) or None for /dev/null."""

    fd: int
    target: int | None


@dataclass(frozen=True)
class Command:
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...]


@dataclass(frozen=True)
class AndOr:
    first: Command
    rest: tuple[tuple[str, Command], ...]


Token = Word | Redirect | str  # str: an operator ";", "\n", "&&", "||"


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while self.pos < len(self.text):
            c = self.peek()
            if c in " \t":
                self.pos += 1
            elif c == "\\" and self.peek(1) == "\n":
                self.pos += 2
            elif c == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.pos += 1
            elif c == "\n":
                out.append("\n")
                self.pos += 1
            elif c in ";&|":
                pair = c + self.peek(1)
                if pair in ("&&", "||"):
                    out.append(pair)
                    self.pos += 2
                elif pair == ";;":
                    raise ShellSyntaxError('unexpected ";;"')
                elif c == ";":
                    out.append(";")
                    self.pos += 1
                else:
                    raise ShellSyntaxError(f'unsupported "{c}"')
            elif c in "()<":
                raise ShellSyntaxError(f'unsupported "{c}"')
            elif c == ">" or (c.isdigit() and self.peek(1) in "<>" and self.peek(1)):
                out.append(self.redirect())
            else:
                out.append(self.word())
        return out

    def redirect(self) -> Redirect:
        fd = 1
        if self.peek().isdigit():
            fd = int(self.peek())
            self.pos += 1
        if self.peek() != ">" or self.peek(1) in (">", "|") or fd not in (1, 2):
            raise ShellSyntaxError(f'unsupported redirection "{self.text[self.pos - 1 : self.pos + 2]}"')
        self.pos += 1
        if self.peek() == "&":
            target = self.peek(1)
            if target not in ("1", "2") or (self.peek(2) and self.peek(2) not in _DELIMITERS):
                raise ShellSyntaxError(f'unsupported redirection ">&{target}"')
            self.pos += 2
            return Redirect(fd, int(target))
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1
        if self.peek() in _DELIMITERS:
            raise ShellSyntaxError("missing redirection target")
        word = self.word()
        if word.expand(0) != "/dev/null" or any(isinstance(p, _Status) for p in word.parts):
            raise ShellSyntaxError(f'unsupported redirection target "{word.raw}"')
        return Redirect(fd, None)

    def word(self) -> Word:
        start = self.pos
        parts: list[WordPart] = []
        while self.pos < len(self.text) and self.peek() not in _DELIMITERS:
            c = self.peek()
            if c == "'":
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated quoted string")
                parts.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                parts += self.double_quoted()
            elif c == "\\":
                nxt = self.peek(1)
                parts.append("" if nxt == "\n" else nxt or "\\")
                self.pos += 2
            elif c == "$":
                parts.append(self.dollar())
            elif c == "`" or c in "*?[" or (c == "~" and self.pos == start):
                raise ShellSyntaxError(f'unsupported "{c}"')
            else:
                parts.append(c)
                self.pos += 1
        return Word(tuple(parts), self.text[start : self.pos])

    def dollar(self) -> WordPart:
        nxt = self.peek(1)
        if nxt == "?":
            self.pos += 2
            return STATUS
        if nxt == "" or (nxt in _DELIMITERS and nxt != "(") or nxt == '"':
            self.pos += 1
            return "$"
        raise ShellSyntaxError(f'unsupported "${nxt}"')

    def double_quoted(self) -> list[WordPart]:
        parts: list[WordPart] = []
        while True:
            c = self.peek()
            if c == "":
                raise ShellSyntaxError("unterminated quoted string")
            if c == '"':
                self.pos += 1
                return parts
            if c == "\\" and self.peek(1) in ("$", "`", '"', "\\", "\n") and self.peek(1):
                parts.append("" if self.peek(1) == "\n" else self.peek(1))
                self.pos += 2
            elif c == "$":
                parts.append(self.dollar())
            elif c == "`":
                raise ShellSyntaxError('unsupported "`"')
            else:
                parts.append(c)
                self.pos += 1


def parse(text: str) -> tuple[AndOr, ...]:
    """Parse a whole script; ShellSyntaxError for anything unsupported or malformed."""
    tokens = _Lexer(text).tokens()
    pos = 0
    lists: list[AndOr] = []

    def command() -> Command:
        nonlocal pos
        words: list[Word] = []
        redirects: list[Redirect] = []
        while pos < len(tokens) and not isinstance(tokens[pos], str):
            token = tokens[pos]
            if isinstance(token, Word):
                if not words and (token.raw in _RESERVED or _ASSIGNMENT.match(token.raw)):
                    raise ShellSyntaxError(f'unsupported "{token.raw}"')
                words.append(token)
            elif isinstance(token, Redirect):
                redirects.append(token)
            pos += 1
        if not words:
            found = tokens[pos] if pos < len(tokens) else None
            raise ShellSyntaxError(f"unexpected {_show(found)}")
        return Command(tuple(words), tuple(redirects))

    while pos < len(tokens):
        if tokens[pos] == "\n":
            pos += 1
            continue
        first = command()
        rest: list[tuple[str, Command]] = []
        while pos < len(tokens) and tokens[pos] in ("&&", "||"):
            op = tokens[pos]
            assert isinstance(op, str)
            pos += 1
            while pos < len(tokens) and tokens[pos] == "\n":
                pos += 1
            rest.append((op, command()))
        lists.append(AndOr(first, tuple(rest)))
        if pos < len(tokens):
            if tokens[pos] not in (";", "\n"):
                raise ShellSyntaxError(f"unexpected {_show(tokens[pos])}")
            pos += 1
    return tuple(lists)


def _show(found: Token | None) -> str:
    if found is None:
        return "end of file"
    if isinstance(found, str):
        return '"\\n"' if found == "\n" else f'"{found}"'
    return "word"


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Shell:
    """Runs scripts; `name` prefixes its own error messages (`sh: x: not found`)."""

    def __init__(self, programs: Programs, name: str = "sh") -> None:
        self.programs = programs
        self.name = name

    def run(self, script: str) -> Output:
        try:
            lists = parse(script)
        except ShellSyntaxError as exc:
            return Output.text(stderr=f"{self.name}: syntax error: {exc}\n", status=SYNTAX_STATUS)
        chunks: list[tuple[int, bytes]] = []
        status = 0
        try:
            for and_or in lists:
                status = self._command(and_or.first, status, chunks)
                for op, cmd in and_or.rest:
                    if (status == 0) == (op == "&&"):
                        status = self._command(cmd, status, chunks)
        except _Exit as done:
            status = done.status
        return Output(tuple(chunks), status)

    def _command(self, cmd: Command, last: int, chunks: list[tuple[int, bytes]]) -> int:
        argv = [w.expand(last) for w in cmd.words]
        fds: dict[int, int | None] = {1: 1, 2: 2}
        for r in cmd.redirects:
            fds[r.fd] = None if r.target is None else fds[r.target]
        out = self._builtin(argv, last)
        if out is None:
            out = self.programs(argv)
        if out is None:
            out = Output.text(stderr=f"{self.name}: {argv[0]}: not found\n", status=NOT_FOUND_STATUS)
        for fd, data in out.chunks:
            target = fds.get(fd, fd)
            if target is not None:
                chunks.append((target, data))
        return out.status

    def _builtin(self, argv: list[str], last: int) -> Output | None:
        name, args = argv[0], argv[1:]
        if name in ("true", ":"):
            return Output()
        if name == "false":
            return Output(status=1)
        if name == "echo":
            if args and args[0] in ("-e", "-E"):
                return Output.text(stderr=f"{self.name}: echo: {args[0]} is not supported\n", status=2)
            newline = not (args and args[0] == "-n")
            body = " ".join(args if newline else args[1:])
            return Output(((1, (body + ("\n" if newline else "")).encode()),) if body or newline else ())
        if name == "exit":
            if not args:
                raise _Exit(last)
            if not args[0].isdigit() or len(args) > 1:
                return Output.text(stderr=f"{self.name}: exit: Illegal number: {args[0]}\n", status=2)
            raise _Exit(int(args[0]) & 0xFF)
        if name == "sh":
            return self._sh(args)
        return None

    def _sh(self, args: list[str]) -> Output:
        if not args:
            return Output.text(stderr=f"{self.name}: interactive sh is not supported\n", status=2)
        if args[0] != "-c":
            return Output.text(stderr=f"sh: can't open '{args[0]}': No such file or directory\n", status=2)
        if len(args) < 2:
            return Output.text(stderr="sh: -c requires an argument\n", status=2)
        return Shell(self.programs, "sh").run(args[1])
