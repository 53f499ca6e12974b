"""esxcap's own error types. Each carries a message naming the object and a hint naming the next step.

Only these are caught per host or mapped to exit codes (in cli.py); anything else is a bug and stays loud.
"""

from __future__ import annotations


class EsxcapError(Exception):
    """Base of every error esxcap reports to the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EsxcapError):
    """A command-line value or combination that cannot work (exit code 2)."""


class ConfigError(EsxcapError):
    """The inventory or another configuration file is wrong (exit code 2)."""


class Cancelled(EsxcapError):
    """The user answered no to a confirmation; nothing was done (exit code 5)."""


class HostError(EsxcapError):
    """Something failed on or on the way to one host; other hosts carry on."""


class ConnectError(HostError):
    """The host could not be reached or did not answer SSH in time."""


class AuthError(HostError):
    """The host refused our credentials."""


class HostKeyError(HostError):
    """The host's key is unknown or has changed."""


class CommandTimeout(HostError):
    """A remote command did not finish in time."""


class RemoteCommandError(HostError):
    """A remote command failed (non-zero exit status or an error message)."""


class ParseError(HostError):
    """Command output did not have the shape we know; never guessed around."""

    def __init__(self, command: str, line_no: int, line: str, reason: str = "unexpected line") -> None:
        super().__init__(
            f"cannot parse output of '{command}' at line {line_no}: {reason}: {line!r}",
            "this host prints something esxcap does not know yet; please report it with the line above",
        )
        self.command = command
        self.line_no = line_no
        self.line = line
        self.reason = reason
