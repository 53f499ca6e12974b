"""The small protocol every SSH transport implements: connect to a host, run an argv, close.

Only argv lists cross this boundary; transports turn them into a command line with
`esxcap.esxi.remote.command_line` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig
    from esxcap.ssh.transport.passwords import Passwords

PasswordSource = Callable[[str], str | None]
"""Given a prompt naming the host, return the password or None (never logged, never in argv)."""


@dataclass(frozen=True)
class CommandResult:
    """What one remote command returned: exit status (None if the host did not say) and raw output."""

    exit_status: int | None
    stdout: bytes
    stderr: bytes


STREAM_CHUNK = 256 * 1024
"""Largest stdout chunk a RemoteProcess hands over at once."""


class RemoteProcess(Protocol):
    """A command still running on a host: stdout read in chunks as it arrives, stderr gathered aside."""

    async def read(self) -> bytes:
        """The next stdout bytes (at most STREAM_CHUNK); b"" once stdout has ended."""
        ...

    def stderr(self) -> bytes:
        """All stderr received so far."""
        ...

    async def stderr_changed(self) -> None:
        """Return once more stderr has arrived (or stderr has ended)."""
        ...

    def close_stdin(self) -> None:
        """Send EOF on the command's stdin (the capture wrapper's stop signal)."""
        ...

    async def wait(self, timeout: float) -> int | None:
        """The exit status once the command ended; None if the host did not say within `timeout`."""
        ...

    def abort(self) -> None:
        """Close the channel now, without waiting for the command."""
        ...


class Connection(Protocol):
    """An open SSH connection to one host."""

    receive_path: str
    """The library that reads the host's output and how, e.g. `asyncssh 2.24.1: fast receive path active`."""

    @property
    def algorithms(self) -> dict[str, str]:
        """What was negotiated: cipher, MAC, server host key type and the server's version string."""
        ...

    async def start(self, argv: Sequence[str]) -> RemoteProcess:
        """Start argv on the host and return at once; its output is read through the RemoteProcess."""
        ...

    async def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        """Run argv on the host and return its complete output; CommandTimeout after `timeout` seconds."""
        ...

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        ...


class Transport(Protocol):
    """Opens connections; raises ConnectError, AuthError or HostKeyError with a hint."""

    async def connect(
        self, host: HostConfig, *, password: PasswordSource | Passwords, accept_new: bool
    ) -> Connection: ...
