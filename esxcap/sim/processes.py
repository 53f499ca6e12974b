"""A simulated host's process table, its small file store, and the programs that look at them:
`ps`, `kill`, `pgrep`, `pkill`, `lsof`, `rm`, `cat`, `touch`, `mkdir` and `ls` (REFERENCE §4.4-4.6, §1.8).

Processes are cartels with 7-digit ids that only increase; a pktcap-uw cartel has four worlds (its own
id, then three more) that all carry the world name `pktcap-uw`, so `ps -c` shows four rows per capture
and column 2 is the cartel id `kill` takes. The `ps -c` header
`WID      CID      World Name            Command`
and the column widths (9, 9, 22) are INFERRED from the `ps -c -J` sample; so is the `lsof`
layout.
Signals go to the process's handler: pktcap-uw ignores HUP, ends gracefully on INT, and dies on
anything else; `kill` answers like BusyBox ash (`sh: can't kill pid N: No such process`, exit 1).
`files` is the host's RAM disk as far as the simulator needs one (`-o FILE`, esxcap's pidfiles).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from esxcap.sim.shell import Output, Programs

SIGNALS = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
}
PKTCAP = "pktcap-uw"
PKTCAP_WORLDS = 4
FIRST_CID = 2293700
ENDED_KEPT = 64
PS_HEADER = f"{'WID':<9}{'CID':<9}{'World Name':<22}Command"
_SYSTEM = (
    (1, 1, "init", "/bin/init"),
    (2098531, 2098531, "hostd", "hostd /etc/vmware/hostd/config.xml"),
    (2099140, 2099140, "sshd", "/usr/lib/vmware/openssh/bin/sshd -R"),
    (2099688, 2099688, "vpxa", "/usr/lib/vmware/vpxa/bin/vpxa -o /etc/vmware/vpxa/vpxa.cfg"),
)


@dataclass(eq=False)
class SimProcess:
    """One running cartel; `handle(signal)` is its reaction to a signal (signal 0 never reaches it)."""

    cid: int
    argv: tuple[str, ...]
    name: str
    worlds: tuple[int, ...]
    handle: Callable[[int], None]
    state: str = "running"
    signals: list[int] = field(default_factory=list)
    packets: int = 0

    @property
    def command(self) -> str:
        """The command line as ps prints it (newlines of a script shown as spaces)."""
        return " ".join(self.argv).replace("\n", " ")


class ProcessTable:
    """The cartels of one host, its file store and its host-wide pktcap-uw counters."""

    def __init__(self, first_cid: int = FIRST_CID) -> None:
        self._next = first_cid
        self._procs: dict[int, SimProcess] = {}
        self.ended: deque[SimProcess] = deque(maxlen=ENDED_KEPT)
        """The latest cartels that exited (with the signals they got), newest last."""
        self.files: dict[str, bytearray] = {}
        self.folders: set[str] = set()
        self.sessions = 36
        self.vsock_ports = 1026

    def spawn(
        self,
        argv: Sequence[str],
        name: str,
        handle: Callable[[int], None],
        worlds: int = 1,
        cid: int | None = None,
    ) -> SimProcess:
        """A new cartel: the next id, or `cid` when the caller has one (a real process's PID)."""
        if cid is None:
            cid = self._next
            self._next += worlds + 3
        proc = SimProcess(cid, tuple(argv), name, tuple(cid + i for i in range(worlds)), handle)
        self._procs[cid] = proc
        return proc

    def exited(self, proc: SimProcess) -> None:
        proc.state = "exited"
        if self._procs.pop(proc.cid, None) is not None:
            self.ended.append(proc)

    def get(self, cid: int) -> SimProcess | None:
        return self._procs.get(cid)

    def running(self) -> list[SimProcess]:
        return list(self._procs.values())

    def pktcaps(self) -> list[SimProcess]:
        """The pktcap-uw processes still in the table (what `esxcap cleanup` is about)."""
        return [p for p in self._procs.values() if p.name == PKTCAP]

    def signal(self, cid: int, sig: int) -> bool:
        """Deliver `sig` (0: only check); False when there is no such process."""
        proc = self._procs.get(cid)
        if proc is None:
            return False
        if sig:
            proc.signals.append(sig)
            proc.handle(sig)
        return True

    def next_session(self) -> int:
        self.sessions += 1
        return self.sessions

    def next_vsock_port(self) -> int:
        self.vsock_ports += 1
        return self.vsock_ports

    def ps(self, command: bool, extra: Sequence[tuple[str, str]] = ()) -> str:
        """`ps` (`-c`: with the Command column); `extra` are transient (world name, command) rows."""
        rows = [(w, c, n, cmd) for w, c, n, cmd in _SYSTEM]
        for proc in self._procs.values():
            rows += [(wid, proc.cid, proc.name, proc.command) for wid in proc.worlds]
        for name, cmd in extra:
            rows.append((self._next, self._next, name, cmd.replace("\n", " ")))
            self._next += 1
        header = PS_HEADER if command else PS_HEADER.removesuffix("Command").rstrip()
        lines = [header]
        for wid, cid, name, cmd in rows:
            line = f"{wid:<9}{cid:<9}{name:<22}{cmd}" if command else f"{wid:<9}{cid:<9}{name}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def lsof(self) -> str:
        """`lsof`: one row per open file; column 1 is the cartel id (INFERRED widths)."""
        lines = [f"{'Cartel':<10}{'World name':<22}{'Type':<10}{'fd':<8}Description"]
        for proc in self._procs.values():
            for fd, what in ((0, "/dev/null"), (1, "pipe"), (2, "pipe"), (3, "socket")):
                lines.append(
                    f"{proc.cid:<10}{proc.name:<22}{'FILE' if fd < 3 else 'SOCKET':<10}{fd:<8}{what}"
                )
        return "\n".join(lines) + "\n"

    def programs(self) -> Programs:
        """ps, kill, pgrep, pkill and lsof for this host's shell."""

        def run(argv: Sequence[str]) -> Output | None:
            name, args = argv[0], list(argv[1:])
            if name == "ps":
                with_command = any("c" in a for a in args if a.startswith("-"))
                return Output.text(self.ps(with_command, [("sh", "sh"), ("ps", " ".join(argv))]))
            if name == "kill":
                return self._kill(args)
            if name in ("pgrep", "pkill"):
                return self._pgrep(name, args)
            if name == "lsof":
                return Output.text(self.lsof())
            if name in ("rm", "cat"):
                return self._files(name, args)
            if name in ("touch", "mkdir", "ls"):
                return self._folders(name, args)
            return None

        return run

    def _kill(self, args: list[str]) -> Output:
        sig = SIGNALS["TERM"]
        if args and args[0] == "-s" and len(args) > 1:
            args = [f"-{args[1]}", *args[2:]]
        if args and args[0].startswith("-") and args[0] != "--":
            spec = args.pop(0)[1:]
            parsed = parse_signal(spec)
            if parsed is None:
                return Output.text(stderr=f"sh: kill: bad signal name '{spec}'\n", status=1)  # INFERRED
            sig = parsed
        if args and args[0] == "--":
            args.pop(0)
        if not args:
            return Output.text(
                stderr="kill: usage: kill [-s sigspec | -signum | -sigspec] pid ...\n", status=1
            )
        errors, status = [], 0
        for pid in args:
            if not pid.isdigit():
                errors.append(f"sh: kill: illegal number {pid}\n")  # INFERRED
                status = 1
            elif not self.signal(int(pid), sig):
                errors.append(f"sh: can't kill pid {pid}: No such process\n")
                status = 1
        return Output.text(stderr="".join(errors), status=status)

    def _files(self, name: str, args: list[str]) -> Output:
        """`rm [-f] PATH...` and `cat PATH...` on the file store (BusyBox messages)."""
        force = name == "rm" and bool(args) and args[0] == "-f"
        paths = args[1:] if force else args
        out, errors = [], []
        for path in paths:
            if path not in self.files:
                if not force:
                    verb = "remove" if name == "rm" else "open"
                    errors.append(f"{name}: can't {verb} '{path}': No such file or directory\n")
            elif name == "rm":
                del self.files[path]
            else:
                out.append(bytes(self.files[path]))
        return (
            Output(((1, b"".join(out)),) if out else (), 0)
            if not errors
            else Output.text(stderr="".join(errors), status=1)
        )

    def _folders(self, name: str, args: list[str]) -> Output:
        """`touch PATH...`, `mkdir [-p] DIR...` and `ls DIR` (names, one a line) on the file store."""
        paths = [a for a in args if not a.startswith("-")]
        if name == "touch":
            for path in paths:
                self.files.setdefault(path, bytearray())
            return Output()
        if name == "mkdir":
            self.folders.update(paths)
            return Output()
        [folder] = paths or ["."]
        prefix = folder.rstrip("/") + "/"
        inside = sorted(p.removeprefix(prefix) for p in self.files if p.startswith(prefix))
        if not inside and folder not in self.folders:
            return Output.text(stderr=f"ls: {folder}: No such file or directory\n", status=1)
        return Output.text("".join(f"{n}\n" for n in inside))

    def _pgrep(self, name: str, args: list[str]) -> Output:
        sig = SIGNALS["TERM"]
        if name == "pkill" and args and args[0].startswith("-"):
            parsed = parse_signal(args.pop(0)[1:])
            if parsed is None:
                return Output.text(stderr=f"{name}: bad signal\n", status=2)
            sig = parsed
        if len(args) != 1:
            return Output.text(stderr=f"Usage: {name} PATTERN\n", status=2)
        try:
            pattern = re.compile(args[0])
        except re.error:
            return Output.text(stderr=f"{name}: bad pattern\n", status=2)
        found = [p for p in self.running() if pattern.search(p.name)]
        if name == "pkill":
            for proc in found:
                self.signal(proc.cid, sig)
            return Output(status=0 if found else 1)
        return Output.text("".join(f"{p.cid}\n" for p in found), status=0 if found else 1)


def parse_signal(text: str) -> int | None:
    """`INT`, `SIGINT`, `int` or `2` -> 2; None if unknown."""
    if text.isdigit():
        return int(text) if int(text) < 65 else None
    return SIGNALS.get(text.upper().removeprefix("SIG"))
