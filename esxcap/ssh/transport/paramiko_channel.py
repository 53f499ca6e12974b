"""Running argv lists over an open paramiko connection: blocking paramiko calls on daemon threads, turned
into the transport protocol's coroutines (binary-safe `run`, streamed `start`).

Threads are daemons so that a call stuck in a dead connection never keeps the process alive; closing the
channel or the connection is what ends a blocked call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import paramiko

from esxcap.esxi.remote import command_line
from esxcap.ssh.transport import STREAM_CHUNK, CommandResult
from esxcap.ssh.transport.common import (
    ClosingConnection,
    CommandOutput,
    StderrKept,
    command_timeout_error,
    run_failed_error,
    start_failed_error,
    stream_lost_error,
)
from esxcap.ssh.transport.paramiko_keepalive import Keepalive
from esxcap.ssh.transport.paramiko_order import receive, receive_stderr, send_eof

T = TypeVar("T")

WINDOW_SIZE = 8 * 1024 * 1024
"""Channel receive window; paramiko's 2 MiB default left the host waiting for window adjusts."""
MAX_PACKET_SIZE = 256 * 1024
"""Largest packet the host may send us (paramiko's default: 32 KiB)."""

SSH_ERRORS = (paramiko.SSHException, OSError, EOFError)


class Threads:
    """Daemon worker threads for one connection; an idle one is reused, a new one started when all are
    busy (a blocked stdout read must never hold up a stderr read or a command)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                name = f"{self._name}-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        self._jobs.put((lambda: fn(*args), future))
        return future

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Idle threads end now, busy ones after their call."""
        with self._lock:
            count, self._started, self._idle = self._started, 0, 0
        for _ in range(count):
            self._jobs.put(None)


def reason(exc: BaseException | None) -> str:
    if exc is None:
        return "the connection was closed"
    if isinstance(exc, paramiko.ChannelException):
        return str(exc.text)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _drain(recv: Callable[[int], bytes], keep: Callable[[bytes], None]) -> None:
    while chunk := recv(STREAM_CHUNK):
        keep(chunk)


def _status(chan: paramiko.Channel) -> int | None:
    status: int = chan.exit_status
    return status if status >= 0 else None


class ParamikoConnection(ClosingConnection):
    """An open connection to one host; also an async context manager that closes on exit."""

    def __init__(
        self,
        transport: paramiko.Transport,
        threads: Threads,
        label: str,
        hops: Sequence[paramiko.Transport] = (),
        keepalive: Keepalive | None = None,
    ) -> None:
        self._transport = transport
        self._threads = threads
        self._hops = tuple(hops)
        """Connections to the jump hosts this one goes through, first hop first."""
        self.label = label
        self._keepalive = keepalive
        self.receive_path = f"paramiko {paramiko.__version__}"

    def __repr__(self) -> str:
        return f"<ParamikoConnection {self.label}>"

    @property
    def algorithms(self) -> dict[str, str]:
        """What was negotiated: cipher, MAC, server host key type and the server's version string."""
        t = self._transport
        aead = t.remote_cipher.endswith("-gcm@openssh.com")
        return {
            "cipher": str(t.remote_cipher),
            "mac": str(t.remote_cipher if aead else t.remote_mac),
            "host_key": str(t.get_remote_server_key().get_name()),
            "server_version": str(t.remote_version),
        }

    def _open(self, line: str) -> paramiko.Channel:
        chan = self._transport.open_session(window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE)
        chan.exec_command(line)
        return chan

    def lost(self) -> str | None:
        """Why the connection is gone, or None while it is up."""
        if self._transport.is_active():
            return None
        if self._keepalive is not None and self._keepalive.gave_up:
            return self._keepalive.gave_up
        return reason(self._transport.saved_exception)

    async def start(self, argv: Sequence[str]) -> ParamikoProcess:
        try:
            chan = await self._threads.call(self._open, command_line(argv))
        except SSH_ERRORS as exc:
            raise start_failed_error(self.label, argv[0], reason(exc)) from exc
        return ParamikoProcess(chan, self, self._threads)

    async def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        line = command_line(argv)
        opened: list[paramiko.Channel] = []
        try:
            async with asyncio.timeout(timeout):
                chan = await self._threads.call(self._open, line)
                opened.append(chan)
                await self._threads.call(send_eof, chan)
                stdout, stderr = CommandOutput(self.label, argv[0]), StderrKept()
                await asyncio.gather(
                    self._threads.call(_drain, functools.partial(receive, chan), stdout.add),
                    self._threads.call(_drain, functools.partial(receive_stderr, chan), stderr.add),
                )
                await self._threads.call(chan.status_event.wait)
        except TimeoutError:
            raise command_timeout_error(self.label, line, timeout) from None
        except SSH_ERRORS as exc:
            raise run_failed_error(self.label, argv[0], reason(exc)) from exc
        finally:
            for done in opened:
                self._threads.submit(done.close)
        status = _status(chan)
        gone = self.lost()
        if status is None and gone is not None:
            raise run_failed_error(self.label, argv[0], gone)
        return CommandResult(status, stdout.value(), stderr.value())

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
        for transport in (self._transport, *reversed(self._hops)):
            await self._threads.call(transport.close)
        self._threads.shutdown()


class ParamikoProcess:
    """A running remote command; stdout is read on demand with `paramiko_order.receive` in a worker thread
    (the window only opens as we read, so flow control reaches the host), stderr drains in the background."""

    def __init__(self, chan: paramiko.Channel, conn: ParamikoConnection, threads: Threads) -> None:
        self._chan = chan
        self._conn = conn
        self._threads = threads
        self._loop = asyncio.get_running_loop()
        self._pending: asyncio.Future[bytes] | None = None
        self._stderr = StderrKept()
        self._stderr_event = asyncio.Event()
        self._stderr_done = asyncio.Event()
        threads.submit(self._drain_stderr)

    def _drain_stderr(self) -> None:
        try:
            while chunk := receive_stderr(self._chan, STREAM_CHUNK):
                self._soon(self._stderr_arrived, chunk)
        except SSH_ERRORS:
            pass
        finally:
            self._soon(self._stderr_ended)

    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _stderr_arrived(self, chunk: bytes) -> None:
        self._stderr.add(chunk)
        self._stderr_event.set()

    def _stderr_ended(self) -> None:
        self._stderr_done.set()
        self._stderr_event.set()

    async def read(self) -> bytes:
        if self._pending is None:
            self._pending = asyncio.wrap_future(self._threads.submit(receive, self._chan, STREAM_CHUNK))
        # A cancelled read leaves its chunk (received or still to come) to the next read: the chunk is
        # taken only once this coroutine has it in hand.
        try:
            chunk = await asyncio.shield(self._pending)
        except SSH_ERRORS as exc:
            self._pending = None
            raise stream_lost_error(self._conn.label, reason(exc)) from exc
        self._pending = None
        if not chunk and _status(self._chan) is None and (gone := self._conn.lost()) is not None:
            raise stream_lost_error(self._conn.label, gone)
        return chunk

    def stderr(self) -> bytes:
        return self._stderr.value()

    async def stderr_changed(self) -> None:
        await self._stderr_event.wait()
        if not self._stderr_done.is_set():
            self._stderr_event.clear()

    def close_stdin(self) -> None:
        self._threads.submit(send_eof, self._chan)

    async def wait(self, timeout: float) -> int | None:
        try:
            async with asyncio.timeout(timeout):
                await self._threads.call(self._chan.status_event.wait)
                await self._stderr_done.wait()
        except TimeoutError:
            self.abort()
            return None
        return _status(self._chan)

    def abort(self) -> None:
        self._threads.submit(self._chan.close)
