"""The passwords of one esxcap command: where each comes from, asked at most once per host (or once for
every host that shares it), and never sent again to a host that rejected it.

ESXi locks an account after a few failed logins (for 900 s by default, Security.AccountUnlockTime), and
keyboard-interactive and password attempts both count; so a rejected password is remembered per host and
withheld from every later login to that host in the same command.

Sharing: hosts naming the same `password_env` share one password (read from the variable, or asked once
when it is not set); with `same_password` every host without `password_env` shares one prompt.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from esxcap.ssh.transport import PasswordSource

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig

EVERY_HOST = "*"


class Passwords:
    """One command's passwords, shared by all its connections (a plain PasswordSource becomes one)."""

    def __init__(self, source: PasswordSource, *, same_password: bool = False) -> None:
        self._source = source
        self.same_password = same_password
        self._given: dict[str, str | None] = {}
        self._asking: dict[str, asyncio.Lock] = {}
        self._rejected: set[str] = set()

    @classmethod
    def of(cls, source: PasswordSource | Passwords) -> Passwords:
        return source if isinstance(source, Passwords) else cls(source)

    def group(self, host: HostConfig) -> str:
        """Which password the host uses: its password_env's, the shared one, or its own."""
        if host.password_env:
            return f"${host.password_env}"
        return EVERY_HOST if self.same_password else f"host {host.name}"

    async def get(self, host: HostConfig, label: str) -> str | None:
        """The host's password: from its variable, else from the one prompt of its group (an empty
        variable gives none: an empty password only counts towards ESXi's lockout)."""
        env = host.password_env
        if env and env in os.environ:
            return os.environ[env] or None
        group = self.group(host)
        async with self._asking.setdefault(group, asyncio.Lock()):
            if group not in self._given:
                prompt = _prompt(group, label)
                self._given[group] = await asyncio.to_thread(self._source, prompt)
            return self._given[group]

    def reject(self, host: HostConfig) -> None:
        """The host refused the password it was sent: never send one to it again."""
        self._rejected.add(host.name)

    def rejected(self, host: HostConfig) -> bool:
        return host.name in self._rejected


def _prompt(group: str, label: str) -> str:
    if group == EVERY_HOST:
        return "Password for every host (--same-password): "
    if group.startswith("$"):
        return f"Password for the hosts with password_env {group[1:]} ({group} is not set): "
    return f"Password for {label}: "
