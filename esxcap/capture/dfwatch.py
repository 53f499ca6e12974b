"""`--trigger df:FILTER`: one tshark (`-l -n -r - -Y FILTER`) fed a triggered capture's packets in time
order, as pcapng on its stdin, by a writer thread; a reader thread collects the interface and timestamp
of each packet tshark prints, which `matches()` hands over without waiting. Started only when asked."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence

from esxcap.errors import UsageError
from esxcap.pcap import Interface, PcapngWriter
from esxcap.printable import printable

CLOSE_WAIT_S = 10.0
_ROOT_NOTICE = "Running as user"
Buffer = bytes | memoryview


def epoch_ns(text: str) -> int:
    """`1765065307.262123000` (tshark's frame.time_epoch) as integer nanoseconds."""
    seconds, _, fraction = text.strip().partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def check_display_filter(tshark: str, display_filter: str) -> None:
    """Refuse, before anything connects, a display filter tshark cannot compile (it would stop tshark
    at once and leave the capture waiting for a trigger that never fires)."""
    argv = [tshark, "-n", "-r", "-", "-Y", display_filter]
    try:
        done = subprocess.run(argv, input=b"", capture_output=True, timeout=CLOSE_WAIT_S * 3, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--trigger df:{display_filter}: tshark could not check it: {exc}", "") from exc
    if done.returncode != 0:
        lines = [printable(line).strip() for line in done.stderr.decode("utf-8", "replace").splitlines()]
        said = next((line for line in lines if line and not line.startswith(_ROOT_NOTICE)), "")
        raise UsageError(
            f"--trigger df:{display_filter}: tshark refuses this display filter: {said or 'no message'}",
            "correct it (Wireshark's filter bar shows what is wrong), or use a native condition (tcp-rst)",
        )


class DisplayFilterWatch:
    """The packets a display filter matches, as (interface id, timestamp ns) in tshark's order."""

    def __init__(self, tshark: str, display_filter: str, warn: Callable[[str], None]) -> None:
        self._warn = warn
        argv = [tshark, "-l", "-n", "-r", "-", "-Y", display_filter, "-T", "fields",
                "-e", "frame.interface_id", "-e", "frame.time_epoch"]  # fmt: skip
        pipe = subprocess.PIPE
        self.process = subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, start_new_session=True)
        self._inbox: queue.SimpleQueue[Interface | list[Buffer] | None] = queue.SimpleQueue()
        self._found: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._stderr: deque[str] = deque(maxlen=5)
        self._threads = [
            threading.Thread(target=loop, name=f"tshark-df-{loop.__name__}", daemon=True)
            for loop in (self._write_loop, self._read_loop, self._stderr_loop)
        ]
        for thread in self._threads:
            thread.start()

    def add_interface(self, interface: Interface) -> None:
        self._inbox.put(interface)

    def feed(self, blocks: Sequence[Buffer]) -> None:
        """Queue whole Enhanced Packet Blocks (of immutable buffers) for tshark."""
        if blocks:
            self._inbox.put(list(blocks))

    def matches(self) -> list[tuple[int, int]]:
        found = []
        with contextlib.suppress(queue.Empty):
            while True:
                found.append(self._found.get_nowait())
        return found

    def close(self) -> list[tuple[int, int]]:
        """End tshark's input, wait for its last lines (stopping it if it does not end in time); the
        matches not yet taken."""
        self._inbox.put(None)
        try:
            self.process.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for thread in self._threads:
            thread.join()
        if self.process.returncode not in (0, None):
            detail = "; ".join(self._stderr) or "no message"
            self._warn(f"tshark (--trigger df:) ended with status {self.process.returncode}: {detail}")
        return self.matches()

    def _write_loop(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            writer = PcapngWriter(stdin)
            while (item := self._inbox.get()) is not None:
                if isinstance(item, Interface):
                    writer.add_interface(item)
                else:
                    writer.write_blocks(item, len(item))
                if self._inbox.empty():
                    stdin.flush()
        except OSError:
            pass  # tshark is gone: close() reports how it ended
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read_loop(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            iface, _, stamp = raw.decode("ascii", "replace").strip().partition("\t")
            with contextlib.suppress(ValueError):
                self._found.put((int(iface), epoch_ns(stamp)))

    def _stderr_loop(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        for raw in stderr:
            text = printable(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if text.strip() and not text.startswith(_ROOT_NOTICE):
                self._stderr.append(text)
