"""SSH keepalives for a paramiko connection, as OpenSSH's ServerAliveInterval/ServerAliveCountMax do them.

paramiko's own keepalive asks for no reply, so it never notices a host that stopped answering. Here a
daemon thread sends `keepalive@openssh.com` requests that want one (any reply will do: OpenSSH and ESXi
refuse the request, which is an answer) `interval` seconds apart, and another gives the host up when
`count` intervals pass without an answer: it closes the transport, so every blocked read ends.
"""

from __future__ import annotations

import threading
import time

import paramiko

REQUEST = "keepalive@openssh.com"


class Keepalive:
    """Keeps asking one transport for a sign of life until `stop()` or the transport closes."""

    def __init__(self, transport: paramiko.Transport, interval: float, count: int) -> None:
        self._transport = transport
        self._interval = interval
        self._limit = interval * count
        self._answered = time.monotonic()
        self._stopped = threading.Event()
        self.gave_up: str | None = None
        """Why the host was given up, once it was."""
        for work in (self._ask, self._watch):
            threading.Thread(target=work, name="ssh-keepalive", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _ask(self) -> None:
        while not self._stopped.wait(self._interval) and self._transport.is_active():
            self._transport.global_request(REQUEST, wait=True)  # returns on any answer, or once closed
            self._answered = time.monotonic()

    def _watch(self) -> None:
        while not self._stopped.wait(min(self._interval, 1.0)) and self._transport.is_active():
            silent = time.monotonic() - self._answered
            if silent > self._limit + self._interval:
                self.gave_up = f"no answer to SSH keepalives for {silent:.0f} s"
                self._transport.close()
                return
