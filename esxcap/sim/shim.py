"""Command shims: one simulated host's programs as real processes, for sessions of a real sshd.

`python -m esxcap.sim.shim PROGRAM ARGS...` runs PROGRAM for the host named by $ESXCAP_SIM_HOST in the
topology file $ESXCAP_SIM_TOPOLOGY, with the simulator's own logic:
- esxcli, vmware, net-stats, uname, hostname, date: `esxcap.sim.programs`, written to fd 1/2 in order;
- ps: the processes of this host of this tier (whose environment carries $ESXCAP_SIM_TIER and this
  host's name) in ESXi's `ps` layout (`ProcessTable.ps`), cartel id = real PID, for BusyBox's `kill`;
- pktcap-uw: answers (`-A`, `-h`, refusals) from `esxcap.sim.pktcap`; a capture runs `PktcapRun` on the
  traffic model in this process and writes to fd 1/2 as the real tool does: SIGHUP ignored, SIGINT
  ends it with its trailer, TERM/KILL kill it at once, and a vanished reader is noticed only when a
  write fails (SIGPIPE) - so a capture whose filter matches nothing outlives its SSH channel. Whether
  it takes SIGINT when it started with SIGINT ignored (as BusyBox sh starts `cmd &` jobs) is the
  host's `faults.pktcap_sigint`: `handle` sets its handler anyway, `inherit` keeps the SIG_IGN.

Starting Python with the simulator takes a third of a second and discovery runs a dozen programs, so
a `ProgramServer` on a Unix socket ($ESXCAP_SIM_SOCKET) can answer every program that ends at once:
the launchers (`write_launchers`) are small isolated Python clients that send argv and environment and
write back what the server's `run_program` produced; a pktcap-uw capture (and every program when no
server is set) replaces its client with this module (exec: same PID, as the wrapper's `$!` expects).
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from esxcap.sim.pktcap import Session
    from esxcap.sim.shell import Output
    from esxcap.sim.topology import Topology

MODULE = "esxcap.sim.shim"
HOST_ENV = "ESXCAP_SIM_HOST"
TOPOLOGY_ENV = "ESXCAP_SIM_TOPOLOGY"
TIER_ENV = "ESXCAP_SIM_TIER"
SOCKET_ENV = "ESXCAP_SIM_SOCKET"
PROGRAMS = ("esxcli", "vmware", "net-stats", "uname", "hostname", "date", "ps", "pktcap-uw")
USAGE_STATUS = 2
ERROR_STATUS = 1

_CLIENT = """#!{python} -IS
import json, os, socket, sys
program, args = os.path.basename(sys.argv[0]), sys.argv[1:]
def run_here():
    os.environ["PYTHONPATH"] = {root!r}
    os.execv({python!r}, [{python!r}, "-m", {module!r}, program, *args])
if not os.environ.get("{socket}"):
    run_here()
env = {{k: os.environ.get(k, "") for k in ({host!r}, {topology!r}, {tier!r})}}
sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["{socket}"])
sock.sendall(json.dumps({{"program": program, "args": args, "env": env}}).encode() + b"\\n")
reply = sock.makefile("rb")
for line in reply:
    kind, value = line.split()
    if kind == b"exit":
        sys.exit(int(value))
    if kind == b"exec":
        run_here()
    view = memoryview(reply.read(int(value)))
    while view:
        view = view[os.write(int(kind), view):]
sys.exit(1)
"""


@dataclass(frozen=True)
class TierProcess:
    """A real process of the tier: PID, the host it runs for, and its argv as the host would show it."""

    pid: int
    host: str
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else "?"


def _shown_argv(cmdline: list[str]) -> tuple[str, ...]:
    """A shim as `PROGRAM ARGS`, a BusyBox applet as `APPLET ARGS`, anything else as it is."""
    if MODULE in cmdline:
        return tuple(cmdline[cmdline.index(MODULE) + 1 :])
    if len(cmdline) > 2 and cmdline[1] == "-IS":
        return (cmdline[2].rsplit("/", 1)[-1], *cmdline[3:])
    if cmdline and cmdline[0].rsplit("/", 1)[-1] == "busybox":
        return tuple(cmdline[1:])
    return tuple(cmdline)


def tier_processes(tier: str, proc: Path = Path("/proc")) -> Iterator[TierProcess]:
    """Every live process whose environment names `tier` (zombies and vanished ones are skipped)."""
    wanted = f"{TIER_ENV}={tier}".encode()
    host_prefix = f"{HOST_ENV}=".encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if wanted not in environ or not cmdline:
            continue
        host = next((v[len(host_prefix) :] for v in environ if v.startswith(host_prefix)), b"")
        argv = [a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0")]
        yield TierProcess(int(entry.name), host.decode(errors="replace"), _shown_argv(argv))


def write_launchers(directory: Path, python: str) -> None:
    """One executable per program in `directory`: a client of $ESXCAP_SIM_SOCKET that runs this module
    with `python` when it must."""
    root = str(Path(__file__).resolve().parents[2])
    directory.mkdir(parents=True, exist_ok=True)
    client = _CLIENT.format(
        python=python, socket=SOCKET_ENV, root=root, module=MODULE, host=HOST_ENV, topology=TOPOLOGY_ENV,
        tier=TIER_ENV,
    )  # fmt: skip
    for program in PROGRAMS:
        path = directory / program
        path.write_text(client, encoding="utf-8")
        path.chmod(0o755)


@cache
def _topology(path: str) -> Topology:
    from esxcap.sim.loader import load_topology_file

    return load_topology_file(Path(path))


def _ps(host_name: str, tier: str, args: list[str]) -> str:
    from esxcap.sim.processes import PKTCAP, PKTCAP_WORLDS, ProcessTable

    table = ProcessTable()
    for p in sorted(tier_processes(tier), key=lambda p: p.pid):
        if p.host == host_name:
            worlds = PKTCAP_WORLDS if p.name == PKTCAP else 1
            table.spawn(p.argv, p.name, lambda sig: None, worlds, cid=p.pid)
    return table.ps(any("c" in a for a in args if a.startswith("-")))


def run_program(program: str, args: list[str], env: dict[str, str]) -> Output | None:
    """What a program prints for the host and tier that `env` names; None for a pktcap-uw capture,
    which must run as its own process."""
    from esxcap.sim import pktcap
    from esxcap.sim.programs import PROGRAMS as TEXT
    from esxcap.sim.shell import Output

    host_name = env.get(HOST_ENV, "")
    if program == "ps":
        return Output.text(_ps(host_name, env.get(TIER_ENV, ""), args))
    host = _topology(env.get(TOPOLOGY_ENV, "")).host(host_name)
    if program == "pktcap-uw":
        answer = pktcap.parse(host, [program, *args])
        if isinstance(answer, pktcap.Session):
            return None
        return Output.text(answer.stdout, answer.stderr, answer.status)
    return TEXT[program](host, args)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        from esxcap.sim.shell import Output

        request = json.loads(self.rfile.readline())
        try:
            output = run_program(request["program"], list(request["args"]), dict(request["env"]))
        except Exception as exc:  # a simulator bug shows as the program's error, not a hang
            output = Output.text(stderr=f"{request['program']}: shim failed: {exc!r}\n", status=ERROR_STATUS)
        if output is None:
            self.wfile.write(b"exec 0\n")
            return
        for fd, data in output.chunks:
            self.wfile.write(b"%d %d\n" % (fd, len(data)) + data)
        self.wfile.write(b"exit %d\n" % output.status)


class ProgramServer:
    """Answers the text programs' launchers on a Unix socket, from a daemon thread, until `stop()`."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._server = socketserver.ThreadingUnixStreamServer(str(socket_path), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="esxcap-shims", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.socket_path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FdWriter:
    """pktcap-uw's stdout (1) and stderr (2): real descriptors, each write complete before it returns."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self._writable(fd)

    async def _writable(self, fd: int) -> None:
        ready: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            self.loop.remove_writer(fd)


async def _capture(
    topology: Topology, host_name: str, session: Session, early: list[int], takes_sigint: bool
) -> int:
    import asyncio

    from esxcap.sim.pktcap_run import PktcapRun
    from esxcap.sim.processes import ProcessTable
    from esxcap.sim.traffic import TrafficModel

    loop = asyncio.get_running_loop()
    table = ProcessTable(first_cid=os.getpid())
    run = PktcapRun(topology.host(host_name), TrafficModel(topology), table, session, FdWriter(loop))
    cid = run.start().cid
    if takes_sigint:
        loop.add_signal_handler(signal.SIGINT, table.signal, cid, signal.SIGINT)
    for sig in early:
        table.signal(cid, sig)
    return await run.status


def _capture_main(argv: list[str], early: list[int], inherited_ignore: bool) -> int:
    import asyncio

    from esxcap.sim import pktcap

    topology = _topology(os.environ.get(TOPOLOGY_ENV, ""))
    host_name = os.environ.get(HOST_ENV, "")
    host = topology.host(host_name)
    session = pktcap.parse(host, argv)
    if not isinstance(session, pktcap.Session):
        raise TypeError(f"not a capture: {argv}")
    takes_sigint = not inherited_ignore or host.faults.pktcap_sigint == "handle"
    return asyncio.run(_capture(topology, host_name, session, early, takes_sigint))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PROGRAMS:
        _write_all(2, f"usage: python -m {MODULE} {{{'|'.join(PROGRAMS)}}} ARGS...\n".encode())
        return USAGE_STATUS
    early: list[int] = []
    inherited_ignore = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if argv[0] == "pktcap-uw":  # signals as the real tool from the first moment; an early SIGINT is kept
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        if not inherited_ignore:
            signal.signal(signal.SIGINT, lambda sig, frame: early.append(sig))
    output = run_program(argv[0], argv[1:], dict(os.environ))
    if output is None:
        return _capture_main(argv, early, inherited_ignore)
    for fd, data in output.chunks:
        _write_all(fd, data)
    return output.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
