"""What the SSH transports share without any SSH library: algorithm preferences, where OpenSSH client config
comes from, the bookkeeping of one login (offered methods, the password asked at most once) and the
messages of every connection failure, so both transports say the same thing in the same words.
"""

from __future__ import annotations

import asyncio
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from esxcap.errors import AuthError, CommandTimeout, ConnectError, RemoteCommandError
from esxcap.ssh.transport import PasswordSource
from esxcap.ssh.transport.known_hosts import CERT_SUFFIX, CERTIFICATES
from esxcap.ssh.transport.passwords import Passwords

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig

SSH_CONFIG_ENV = "ESXCAP_SSH_CONFIG"

# Newest first; what ESXi 5.5/6.x may need comes last: chosen only when the host offers nothing newer.
ENCRYPTION = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com")
ENCRYPTION_OLD = ("aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc")
KEX = (
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
)
KEX_OLD = ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1")
MAC = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "umac-128@openssh.com",
)
MAC_OLD = ("hmac-sha1",)
HOST_KEY = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
HOST_KEY_OLD = ("ssh-rsa",)


def supported(names: Sequence[str], available: Iterable[str]) -> list[str]:
    """`names` in their order, less those the SSH library cannot do."""
    have = set(available)
    return [n for n in names if n in have]


def host_key_preference(known_key_types: Sequence[str]) -> list[str]:
    """Host key algorithms, the types known_hosts lists for the host first (so a known key is checked):
    certificate algorithms when a certificate authority is listed (no SHA-1 `ssh-rsa` certificates), then
    the listed keys' types (an RSA key signs as rsa-sha2-512, rsa-sha2-256 or ssh-rsa)."""
    wanted = {alg for t in known_key_types for alg in (RSA_SIGNATURES if t == "ssh-rsa" else (t,))}
    first = [a + CERT_SUFFIX for a in HOST_KEY] if CERTIFICATES in known_key_types else []
    first += [a for a in HOST_KEY if a in wanted]
    return first + [a for a in HOST_KEY + HOST_KEY_OLD if a not in first]


RSA_SIGNATURES = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


def default_ssh_config_paths() -> list[Path]:
    """$ESXCAP_SSH_CONFIG (empty: none), else ~/.ssh/config when readable."""
    if SSH_CONFIG_ENV in os.environ:
        value = os.environ[SSH_CONFIG_ENV]
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    path = Path("~/.ssh/config").expanduser()
    return [path] if os.access(path, os.R_OK) else []


class ConfiguredTransport:
    """A transport that reads OpenSSH client config: `ssh_config` files, or None for
    `default_ssh_config_paths()` at each connect."""

    def __init__(self, ssh_config: Sequence[Path] | None = None) -> None:
        self._ssh_config = list(ssh_config) if ssh_config is not None else None

    def config_paths(self) -> list[Path]:
        return self._ssh_config if self._ssh_config is not None else default_ssh_config_paths()


class ClosingConnection(ABC):
    """`async with conn:` closes the connection on the way out."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@dataclass
class Login:
    """What one login learns along the way: the methods the server offered, whether the password went out.

    The password comes from the command's Passwords, asked at most once per login and sent at most once
    (keyboard-interactive or password, never both), and not at all to a host that rejected it before;
    while the prompt is open the connect timeout (if any) is paused.
    """

    host: HostConfig
    label: str
    password_source: PasswordSource | Passwords
    timeout: asyncio.Timeout | None = None
    tcp_connected: bool = False
    offered: list[str] = field(default_factory=list)
    password_asked: bool = False
    password_value: str | None = field(default=None, repr=False)
    password_withheld: bool = False
    kbdint_answered: bool = False
    password_sent: bool = False

    def __post_init__(self) -> None:
        self.passwords = Passwords.of(self.password_source)

    async def password(self) -> str | None:
        if self.password_asked:
            return self.password_value
        self.password_asked = True
        if self.passwords.rejected(self.host):
            self.password_withheld = True
            return None
        loop = asyncio.get_running_loop()
        if self.timeout is not None:
            self.timeout.reschedule(None)
        try:
            self.password_value = await self.passwords.get(self.host, self.label)
        finally:
            if self.timeout is not None:
                self.timeout.reschedule(loop.time() + self.host.connect_timeout)
        return self.password_value

    def note_methods(self, methods: Iterable[str]) -> None:
        for method in methods:
            if method not in self.offered:
                self.offered.append(method)

    def auth_error(self, user: str) -> AuthError:
        """Permission denied; a password the host rejected is remembered so that it is not sent again."""
        methods = ", ".join(self.offered) if self.offered else "none that esxcap supports"
        tried = self.password_value is not None and (self.kbdint_answered or self.password_sent)
        if tried:
            self.passwords.reject(self.host)
        env = self.host.password_env
        source = f" (it came from ${env}, password_env)" if env and env in os.environ else ""
        rejected = (
            f"; the password was rejected{source} (not retried: ESXi locks the account after a few failures)"
            if tried
            else "; the password it rejected earlier in this run was not sent again"
            if self.password_withheld
            else f"; ${env} (password_env) is empty, so no password was sent"
            if env and os.environ.get(env) == ""
            else ""
        )
        return AuthError(
            f"{self.label}: permission denied for user '{user}' (server offered: {methods}){rejected}",
            _password_env_hint(env, self.host.name, tried)
            + "set identity_file to a key the host accepts (ESXi: RSA or ECDSA; append the .pub to "
            f"/etc/ssh/keys-{user}/authorized_keys on the host), or set password_env in the inventory "
            "to a variable holding the password, or answer the password prompt. If the host is in "
            f"lockdown mode, only its exception users may log in over SSH: add '{user}' under Lockdown "
            "Mode > Exception Users (vSphere Client: host > Configure > Security Profile) or leave "
            "lockdown from the DCUI. After repeated failures ESXi locks the account (900 s by default)",
        )

    def timeout_error(self, port: int) -> ConnectError:
        what = "no SSH answer" if self.tcp_connected else "no answer"
        return ConnectError(
            f"{self.label}: {what} within {self.host.connect_timeout:g} s",
            _down_hint(port)
            if not self.tcp_connected
            else "something answers on that port but does not speak SSH in time; "
            "check the port, or raise connect_timeout for a slow link",
        )


def _password_env_hint(env: str | None, host: str, tried: bool) -> str:
    """The first words of a login hint when the password came, or should have come, from password_env."""
    value = os.environ.get(env) if env else None
    if value == "":
        return f"put {host}'s password in ${env} (it is set but empty), or unset it to be asked; or "
    if value is not None and tried:
        return f"check the password in ${env}: {host} rejected it; or "
    return ""


def refused_error(label: str, port: int) -> ConnectError:
    return ConnectError(f"{label}: connection refused", _down_hint(port))


_UNRESOLVED = (
    "name or service not known",
    "nodename nor servname",
    "name resolution",
    "no address associated",
)


def cannot_connect_error(label: str, reason: str, port: int) -> ConnectError:
    if any(words in reason.lower() for words in _UNRESOLVED):
        return ConnectError(
            f"{label}: cannot connect: the name does not resolve ({reason})",
            "check the hostname in the inventory (or the HostName ~/.ssh/config gives it) and this "
            "machine's DNS, or give the host's address",
        )
    return ConnectError(f"{label}: cannot connect: {reason}", _down_hint(port))


_JUMP_SPEC = re.compile(r"(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+))(?::(?P<port>\d+))?\Z")


def ssh_command(spec: str) -> str:
    """`[user@]host[:port]` as the ssh command that reaches it (`ssh -p PORT user@host`)."""
    m = _JUMP_SPEC.match(spec)
    if m is None:
        return f"ssh {spec}"
    target = (f"{m['user']}@" if m["user"] else "") + (m["v6"] or m["host"])
    return f"ssh -p {m['port']} {target}" if m["port"] else f"ssh {target}"


def jump_error(
    label: str, jump: str, reason: str, hint: str | None = None, address: str | None = None
) -> ConnectError:
    """The host sits behind a ProxyJump hop, and the hop failed before the host was reached."""
    where = f" ({address})" if address else ""
    return ConnectError(
        f"{label}: through jump host {jump}{where}: {reason}",
        hint
        or f"check that the jump host is up and lets you in ({ssh_command(jump)}), and how ~/.ssh/config "
        "or the inventory's proxy_jump describes it",
    )


OPEN_PROHIBITED = 1
"""SSH_OPEN_ADMINISTRATIVELY_PROHIBITED: the jump host does not forward (AllowTcpForwarding no)."""


def forward_error(
    label: str, jump: str, address: str, target: str, reason: str, prohibited: bool
) -> ConnectError:
    """A jump host let us in but could not open the way on to `target`."""
    return jump_error(
        label,
        jump,
        f"cannot reach {target} from there: {reason}",
        "the jump host must allow TCP forwarding (AllowTcpForwarding) to that address"
        if prohibited
        else "the jump host could not connect to it: is the host up, with SSH enabled (TSM-SSH), and "
        "reachable from the jump host?",
        address=address,
    )


def no_common_algorithm_error(label: str, reason: str) -> ConnectError:
    return ConnectError(
        f"{label}: no common SSH algorithm: {reason}",
        "the host's sshd may be restricted (FIPS mode?); compare its Ciphers and KexAlgorithms with esxcap's",
    )


def identity_error(host: HostConfig, reason: str) -> AuthError:
    return AuthError(
        f"{host.name}: cannot use identity_file {host.identity_file}: {reason}",
        "check the path in the inventory; for a passphrase-protected key, drop identity_file and "
        "load the key into ssh-agent (ssh-add) instead",
    )


def command_timeout_error(label: str, line: str, timeout: float) -> CommandTimeout:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return CommandTimeout(
        f"{label}: '{shown}' did not finish within {timeout:g} s; its channel was closed",
        "the host may be overloaded; raise command_timeout in the inventory if it is just slow",
    )


def run_failed_error(label: str, program: str, reason: str) -> ConnectError:
    return ConnectError(
        f"{label}: connection failed while running '{program}': {reason}",
        "check the host's state and try again",
    )


def start_failed_error(label: str, program: str, reason: str) -> ConnectError:
    return ConnectError(
        f"{label}: cannot start '{program}': {reason}", "check the host's state and try again"
    )


SHELL_TIMEOUT_HINT = (
    "an ESXi shell timeout ends SSH sessions: see UserVars.ESXiShellInteractiveTimeOut and "
    "UserVars.ESXiShellTimeOut on the host (esxcli system settings advanced list -o "
    "/UserVars/ESXiShellInteractiveTimeOut; 0 = no timeout), or capture for a shorter -d"
)


def stream_lost_error(label: str, reason: str) -> ConnectError:
    return ConnectError(
        f"{label}: connection lost while streaming: {reason}",
        "everything received so far was kept; check the host and the network, then capture again "
        f"(also: {SHELL_TIMEOUT_HINT})",
    )


def session_ended_error(host: str, packets: int, seconds: float, kept: Path | None) -> ConnectError:
    """The host closed a capture's session without the capture's exit status (nobody asked it to stop)."""
    where = f" in {kept}" if kept else ""
    return ConnectError(
        f"{host}: the host ended the SSH session after {seconds:.0f} s, mid-capture ({packets} packets), "
        "before the capture reported its end",
        f"the {packets} packets received are kept{where}; {SHELL_TIMEOUT_HINT}",
    )


def _down_hint(port: int) -> str:
    return (
        f"is SSH enabled on the host and listening on port {port}? ESXi ships with SSH off; start the "
        "SSH service (TSM-SSH) in the Host Client (Manage > Services), in the vSphere Client (host > "
        "Configure > Services), or from the DCUI shell with 'vim-cmd hostsvc/enable_ssh' and "
        "'vim-cmd hostsvc/start_ssh'"
    )


MAX_COMMAND_OUTPUT = 64 << 20
"""What one command's stdout may hold in memory (a full discovery of a large host is a few MiB)."""
STDERR_KEPT = 64 << 10
"""Of a stream's stderr (kept for messages), the first and the last this many bytes are kept."""


class CommandOutput:
    """One command's stdout gathered in memory up to MAX_COMMAND_OUTPUT; past that, `add` raises a
    clear error instead of growing until the machine runs out of memory."""

    def __init__(self, label: str, program: str, limit: int = MAX_COMMAND_OUTPUT) -> None:
        self.label, self.program, self.limit = label, program, limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise output_limit_error(self.label, self.program, self.limit)
        self.parts.append(chunk)

    def value(self) -> bytes:
        return b"".join(self.parts)


class StderrKept:
    """A stream's stderr as far as messages need it: the first and the last STDERR_KEPT bytes, and how
    many bytes between them were left out (a host flooding stderr costs no memory)."""

    def __init__(self, kept: int = STDERR_KEPT) -> None:
        self.kept = kept
        self.head = bytearray()
        self.tail = bytearray()
        self.left_out = 0

    def add(self, chunk: bytes) -> None:
        room = self.kept - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        if len(self.tail) > self.kept:
            self.left_out += len(self.tail) - self.kept
            del self.tail[: len(self.tail) - self.kept]

    def value(self) -> bytes:
        if not self.left_out:
            return bytes(self.head + self.tail)
        note = f"\n[... {self.left_out} bytes of error output left out ...]\n".encode()
        return bytes(self.head) + note + bytes(self.tail)


def output_limit_error(label: str, program: str, limit: int) -> RemoteCommandError:
    return RemoteCommandError(
        f"{label}: {program} printed more than {limit >> 20} MiB; stopped reading it",
        "the host's command does not behave like ESXi's; run it by hand (ssh) to see what it prints",
    )
