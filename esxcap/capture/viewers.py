"""The packet viewers esxcap hands captures to: finding tshark and Wireshark, the commands that open a
finished file (`--open`) or watch a stream (`--live`), and a long-running tshark that writes the summary
line of each packet for `--console`.

Viewer processes start in their own session (process group), so the Ctrl-C that asks esxcap to finish a
capture gracefully reaches esxcap alone; esxcap then ends their input and they finish on their own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from esxcap.errors import UsageError
from esxcap.pcap import Interface, PcapngWriter, Record
from esxcap.pcap.decode import console_line, hexdump
from esxcap.printable import printable

_MAC_APP = "/Applications/Wireshark.app/Contents/MacOS"
_TSHARK_FIELDS = ("_ws.col.Source", "_ws.col.Destination", "_ws.col.Protocol", "_ws.col.Info")
_ROOT_NOTICE = "Running as user"
"""Start of the line tshark prints on stderr whenever it runs as root; not an error."""


def _find(name: str, platform: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates: list[Path] = []
    if platform == "darwin":
        candidates.append(Path(_MAC_APP) / ("Wireshark" if name == "wireshark" else name))
    elif platform == "win32":
        for root in (os.environ.get("PROGRAMFILES"), os.environ.get("PROGRAMFILES(X86)")):
            if root:
                candidates.append(Path(root) / "Wireshark" / f"{name.capitalize()}.exe")
    return next((str(path) for path in candidates if path.is_file()), None)


def find_tshark(platform: str = sys.platform) -> str | None:
    """tshark on PATH, else where the Wireshark installer puts it on macOS and Windows."""
    return _find("tshark", platform)


def find_wireshark(platform: str = sys.platform) -> str | None:
    """wireshark on PATH, else where the Wireshark installer puts it on macOS and Windows."""
    return _find("wireshark", platform)


def display_available(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> bool:
    """True when a graphical program can open a window: always on macOS and Windows; elsewhere only
    with an X11 or Wayland display (not, for example, in a plain SSH session)."""
    if platform in ("darwin", "win32"):
        return True
    env = os.environ if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def install_hint(platform: str = sys.platform) -> str:
    """How to get tshark/Wireshark on this platform."""
    if platform in ("darwin", "win32"):
        return "install Wireshark (it includes tshark) from https://www.wireshark.org/download.html"
    return (
        "install tshark: `apt-get install tshark` (Debian/Ubuntu) or `dnf install wireshark-cli` "
        "(Fedora/RHEL); Wireshark itself for a window"
    )


def _require_tshark(option: str) -> str:
    tshark = find_tshark()
    if tshark is None:
        raise UsageError(f"{option} needs tshark or Wireshark, and neither was found", install_hint())
    return tshark


def open_file_command(path: str | Path) -> list[str]:
    """The command that shows a finished capture file (`--open`): Wireshark when a display is available
    and Wireshark is installed, else `tshark -r FILE` printing a summary line per packet."""
    wireshark = find_wireshark() if display_available() else None
    if wireshark:
        return [wireshark, "-r", str(path)]
    return [_require_tshark("--open"), "-r", str(path)]


def live_viewer_command() -> list[str]:
    """The command that shows a capture as it streams in on its stdin (`--live`): `wireshark -k -i -`
    when a display is available and Wireshark is installed, else `tshark -l -i -`."""
    wireshark = find_wireshark() if display_available() else None
    if wireshark:
        return [wireshark, "-k", "-i", "-"]
    return [_require_tshark("--live"), "-l", "-i", "-"]


def _own_session() -> dict[str, Any]:
    """Popen arguments that keep a terminal's Ctrl-C from reaching the child."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def start_viewer(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start a viewer command (e.g. live_viewer_command()) that reads a capture stream from its stdin.

    Write pcap or pcapng bytes to `process.stdin` and close it at the end of the capture; a viewer that
    exits early turns further writes into BrokenPipeError."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, **_own_session())


class _Pending(NamedTuple):
    record: Record
    label: str
    number: int
    sent: bool
    """True when the record went to tshark and its summary line is awaited."""


_DONE = object()


class TsharkSummarizer:
    """Console lines (decode.console_line) for a stream of packets, summarised by one long-running tshark.

    `feed()` never blocks: records go to tshark through a writer thread as pcapng on its stdin, a reader
    thread pairs each summary line tshark prints with the oldest record awaiting one, and finished lines
    come out in feed order from `ready()` (non-blocking) or `lines()` (blocking, for a consumer thread).
    With `tshark=None`, or once tshark has died (reported once through `warn`), or for records beyond
    `max_in_flight` unanswered ones, lines use esxcap's built-in summary instead; the order stays the same.
    `close()` ends tshark's input, waits for its last lines, and stops it if it does not exit in time.
    """

    def __init__(
        self,
        tshark: str | None,
        *,
        hex_dump: bool = False,
        warn: Callable[[str], None] | None = None,
        max_in_flight: int = 10_000,
    ) -> None:
        self._hex = hex_dump
        self._warn = warn or _warn_stderr
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0
        self._out: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._stderr_tail: deque[str] = deque(maxlen=5)
        self._closing = False
        self._drained = False
        self.failure: str | None = None
        """Why tshark stopped summarising, once it has."""
        self.process: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        if tshark is None:
            return
        argv = [tshark, "-l", "-n", "-r", "-", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
        for field in _TSHARK_FIELDS:
            argv += ["-e", field]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **_own_session(),
        )
        for target in (self._stderr_loop, self._write_loop, self._read_loop):
            thread = threading.Thread(target=target, name=f"tshark-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def __enter__(self) -> TsharkSummarizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def feed(self, record: Record, label: str, index: int) -> None:
        """Queue one packet; `label` names its stream (e.g. `esx01 web01 VnicTx`), `index` its number.

        The record's data must not change afterwards (records from esxcap.pcap's readers view immutable
        chunks)."""
        with self._lock:
            if self._closing:
                raise ValueError("feed() after close()")
            to_tshark = self.failure is None and self.process is not None
            if to_tshark and self._in_flight < self._max_in_flight:
                self._pending.append(_Pending(record, label, index, True))
                self._in_flight += 1
                self._inbox.put(record)
            elif self._pending:
                self._pending.append(_Pending(record, label, index, False))
            else:
                self._out.put(self._line(record, label, index, None))

    def ready(self) -> list[str]:
        """The console lines finished so far, in feed order, without waiting."""
        lines: list[str] = []
        while not self._drained:
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, str):
                lines.append(item)
            else:
                self._drained = True
        return lines

    def lines(self) -> Iterator[str]:
        """Every console line in feed order as it is finished; ends once close() has returned and the
        last line has been taken."""
        while not self._drained:
            item = self._out.get()
            if isinstance(item, str):
                yield item
            else:
                self._drained = True

    def close(self, timeout: float = 10.0) -> None:
        """End tshark's input and wait (up to `timeout` seconds, then stop it) for its last lines, which
        ready() or lines() then return."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._inbox.put(None)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join()
        self._out.put(_DONE)

    def _line(self, record: Record, label: str, index: int, summary: str | None) -> str:
        line = console_line(record, label, index, summary)
        return f"{line}\n{hexdump(record.data)}" if self._hex else line

    def _write_loop(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        stdin = self.process.stdin
        try:
            writer = PcapngWriter(stdin)
            writer.add_interface(Interface("esxcap"))
            while (record := self._inbox.get()) is not None:
                writer.write_record(record, 0)
                if self._inbox.empty():
                    stdin.flush()
        except OSError:
            pass  # tshark is gone; the reader thread reports it and takes over its packets
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read_loop(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            summary = _tshark_summary(raw)
            with self._lock:
                if not self._pending:
                    continue
                entry = self._pending.popleft()
                self._in_flight -= 1
                self._out.put(self._line(entry.record, entry.label, entry.number, summary))
                while self._pending and not self._pending[0].sent:
                    self._emit_builtin(self._pending.popleft())
        status = self.process.wait()
        self._threads[0].join(timeout=2)  # the stderr reader, to quote tshark's last words
        with self._lock:
            if self._pending or not self._closing or status != 0:
                detail = "; ".join(self._stderr_tail) or "no message"
                self.failure = f"tshark stopped (exit status {status}: {detail})"
            while self._pending:
                self._emit_builtin(self._pending.popleft())
            self._in_flight = 0
        if self.failure:
            self._warn(f"{self.failure}; esxcap's own packet summaries follow")

    def _emit_builtin(self, entry: _Pending) -> None:
        self._out.put(self._line(entry.record, entry.label, entry.number, None))

    def _stderr_loop(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            text = printable(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if text.strip() and not text.startswith(_ROOT_NOTICE):
                self._stderr_tail.append(text)


def _tshark_summary(raw: bytes) -> str:
    """`SRC > DST PROTO INFO` from one line of tshark's tab-separated fields."""
    fields = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t", 3)
    fields += [""] * (4 - len(fields))
    source, destination, protocol, info = fields
    head = f"{source} > {destination} " if source or destination else ""
    return printable(f"{head}{protocol} {info}".strip())


def _warn_stderr(message: str) -> None:
    print(f"esxcap: {printable(message)}", file=sys.stderr, flush=True)
