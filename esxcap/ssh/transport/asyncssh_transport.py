"""The asyncssh transport: connect with OpenSSH-like behaviour (known_hosts, ~/.ssh/config, keys, ssh-agent,
keyboard-interactive passwords as ESXi asks for them) and run argv lists binary-safe with streamed output.

Every asyncssh failure leaves this module as one of esxcap's errors naming the host and the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
from asyncssh.config import SSHClientConfig

from esxcap.errors import EsxcapError, HostKeyError
from esxcap.esxi.remote import command_line
from esxcap.ssh.transport import STREAM_CHUNK, CommandResult, PasswordSource, asyncssh_receive
from esxcap.ssh.transport.common import (
    ENCRYPTION,
    ENCRYPTION_OLD,
    KEX,
    KEX_OLD,
    MAC,
    MAC_OLD,
    ClosingConnection,
    CommandOutput,
    ConfiguredTransport,
    Login,
    StderrKept,
    cannot_connect_error,
    command_timeout_error,
    host_key_preference,
    identity_error,
    jump_error,
    no_common_algorithm_error,
    refused_error,
    run_failed_error,
    start_failed_error,
    stream_lost_error,
    supported,
)
from esxcap.ssh.transport.hostkeys import HostKeyCheck, PresentedKey, load_known_hosts
from esxcap.ssh.transport.known_hosts import (
    DEFAULT_PORT,
    Decision,
    KnownHosts,
    is_certificate,
    parse_certificate,
)
from esxcap.ssh.transport.passwords import Passwords

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig

READ_CHUNK = 256 * 1024
CLOSE_WAIT_S = 2.0
"""How long a closing connection may wait for the host before its socket is dropped."""


def algorithm_options(known_key_types: Sequence[str], ssh_config: SSHClientConfig) -> dict[str, list[str]]:
    """Preference lists for asyncssh.connect; host key types already in known_hosts go first, and a list
    the user set in ~/.ssh/config (Ciphers, KexAlgorithms, MACs, HostKeyAlgorithms) is left to asyncssh."""
    lists = {
        ("encryption_algs", "Ciphers"): (
            ENCRYPTION + ENCRYPTION_OLD,
            asyncssh.encryption.get_encryption_algs(),
        ),
        ("kex_algs", "KexAlgorithms"): (KEX + KEX_OLD, asyncssh.kex.get_kex_algs()),
        ("mac_algs", "MACs"): (MAC + MAC_OLD, asyncssh.mac.get_mac_algs()),
        ("server_host_key_algs", "HostKeyAlgorithms"): (
            host_key_preference(known_key_types),
            asyncssh.public_key.get_certificate_algs() + asyncssh.public_key.get_public_key_algs(),
        ),
    }
    return {
        option: supported(names, (a.decode() for a in available))
        for (option, key), (names, available) in lists.items()
        if ssh_config.get(key) is None
    }


@dataclass
class _Attempt(Login):
    """A login plus the host key check asyncssh's callbacks reach."""

    known: KnownHosts = field(default_factory=lambda: KnownHosts(()))
    check: HostKeyCheck | None = None
    presented: bytes = b""
    """The host key (or certificate) blob the server sent, as the key exchange received it."""
    key_problem: HostKeyError | None = None

    def note_conn_methods(self, conn: asyncssh.SSHClientConnection | None) -> None:
        self.note_methods(conn.get_server_auth_methods() if conn else ())

    def settle(self, addr: str, key: asyncssh.SSHKey) -> bool:
        """The shared verdict on what the host presented (`key`: the plain key, or a certificate's CA)."""
        assert self.check is not None, "set before connecting"
        name, target = self.check.name, self.check.target
        if is_certificate(self.presented):
            cert, _signed, _signature = parse_certificate(self.presented)
            decision: Decision = self.known.check_certificate(name, target, cert, time.time(), addr)
            plain = cert.key_blob
        else:
            plain = key.public_data
            decision = self.known.check_key(name, plain, addr)
        try:
            self.check.settle(decision, PresentedKey.from_blob(plain))
        except HostKeyError as exc:
            self.key_problem = exc
            return False
        return True


class _Client(asyncssh.SSHClient):
    """asyncssh callbacks: host key verdicts and password answers for one attempt."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn
        self._attempt.tcp_connected = True
        validate = conn.validate_server_host_key

        def keep_presented(key_data: bytes) -> asyncssh.SSHKey:
            self._attempt.presented = key_data
            return validate(key_data)

        # asyncssh's callbacks below see a certificate's CA only; the shared verdict needs the whole blob
        setattr(conn, "validate_server_host_key", keep_presented)  # noqa: B010

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._attempt.settle(addr, key)

    def validate_host_ca_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._attempt.settle(addr, key)

    def public_key_auth_requested(self) -> None:
        self._attempt.note_conn_methods(self._conn)

    def kbdint_auth_requested(self) -> str | None:
        self._attempt.note_conn_methods(self._conn)
        return None if self._attempt.kbdint_answered else ""

    async def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            return []
        if self._attempt.kbdint_answered or any(echo for _prompt, echo in prompts):
            return None
        password = await self._attempt.password()
        self._attempt.kbdint_answered = True
        return None if password is None else [password for _prompt in prompts]

    async def password_auth_requested(self) -> str | None:
        self._attempt.note_conn_methods(self._conn)
        if self._attempt.password_sent or self._attempt.kbdint_answered:
            return None
        self._attempt.password_sent = True
        return await self._attempt.password()


class AsyncsshConnection(ClosingConnection):
    """An open connection to one host; also an async context manager that closes on exit."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, host: HostConfig, label: str, receive_path: str
    ) -> None:
        self._conn = conn
        self.host = host
        self.label = label
        self.receive_path = receive_path

    def __repr__(self) -> str:
        return f"<AsyncsshConnection {self.label}>"

    @property
    def algorithms(self) -> dict[str, str]:
        """What was negotiated: cipher, MAC, server host key type and the server's version string."""
        key = self._conn.get_server_host_key()
        return {
            "cipher": str(self._conn.get_extra_info("send_cipher")),
            "mac": str(self._conn.get_extra_info("send_mac")),
            "host_key": key.get_algorithm() if key else "",
            "server_version": str(self._conn.get_extra_info("server_version")),
        }

    async def start(self, argv: Sequence[str]) -> AsyncsshProcess:
        try:
            process = await self._conn.create_process(command_line(argv), encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise start_failed_error(self.label, argv[0], _reason(exc)) from exc
        return AsyncsshProcess(process, self.label)

    async def run(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        line = command_line(argv)
        process: asyncssh.SSHClientProcess[bytes] | None = None
        try:
            async with asyncio.timeout(timeout):
                process = await self._conn.create_process(line, encoding=None)
                process.stdin.write_eof()
                stdout, stderr = CommandOutput(self.label, argv[0]), StderrKept()
                await asyncio.gather(_drain(process.stdout, stdout.add), _drain(process.stderr, stderr.add))
                await process.wait_closed()
                return CommandResult(process.exit_status, stdout.value(), stderr.value())
        except TimeoutError:
            raise command_timeout_error(self.label, line, timeout) from None
        except (asyncssh.Error, OSError) as exc:
            raise run_failed_error(self.label, argv[0], _reason(exc)) from exc
        finally:
            if process is not None:
                process.close()

    async def close(self) -> None:
        self._conn.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._conn.wait_closed()
        except TimeoutError:  # a host that stopped answering: drop the socket
            self._conn.abort()


class AsyncsshProcess:
    """A running remote command; stdout is read on demand (flow control reaches the host), stderr drains
    in the background, its first and last bytes kept for messages (StderrKept)."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes], label: str) -> None:
        self._process = process
        self._label = label
        self._stderr = StderrKept()
        self._stderr_event = asyncio.Event()
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        try:
            while chunk := await self._process.stderr.read(STREAM_CHUNK):
                self._stderr.add(chunk)
                self._stderr_event.set()
        except (asyncssh.Error, OSError):
            pass
        finally:
            self._stderr_event.set()

    async def read(self) -> bytes:
        try:
            return await self._process.stdout.read(STREAM_CHUNK)
        except (asyncssh.Error, OSError) as exc:
            raise stream_lost_error(self._label, _reason(exc)) from exc

    def stderr(self) -> bytes:
        return self._stderr.value()

    async def stderr_changed(self) -> None:
        await self._stderr_event.wait()
        if not self._stderr_task.done():
            self._stderr_event.clear()

    def close_stdin(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._process.stdin.write_eof()

    async def wait(self, timeout: float) -> int | None:
        try:
            async with asyncio.timeout(timeout):
                await self._process.wait_closed()
                await self._stderr_task
        except TimeoutError:
            self.abort()
            return None
        except (asyncssh.Error, OSError):
            return None
        return self._process.exit_status

    def abort(self) -> None:
        self._process.close()


async def _drain(stream: asyncssh.SSHReader[bytes], keep: Callable[[bytes], None]) -> None:
    while chunk := await stream.read(READ_CHUNK):
        keep(chunk)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class AsyncsshTransport(ConfiguredTransport):
    """Opens asyncssh connections."""

    async def connect(
        self, host: HostConfig, *, password: PasswordSource | Passwords, accept_new: bool
    ) -> AsyncsshConnection:
        fast_receive = asyncssh_receive.install()
        options = _connect_options(host, self.config_paths())
        ssh_config: SSHClientConfig = options.pop("_ssh_config")
        target, port = str(ssh_config.get("Hostname", host.hostname)), int(options.pop("_port"))
        label = f"{host.name} ({target}:{port})"
        known_hosts = host.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        check = HostKeyCheck(label, host.name, target, port, known_hosts, accept_new)
        known = load_known_hosts(known_hosts)
        options.update(algorithm_options(known.host_key_types(check.name), ssh_config))
        attempt = _Attempt(host, label, password, known=known, check=check)
        options["known_hosts"] = lambda _h, _a, _p: ([], [], [])  # every key goes to the shared verdict
        jump = host.proxy_jump or str(ssh_config.get("ProxyJump", "") or "")
        jump = "" if jump.lower() == "none" else jump
        try:
            async with asyncio.timeout(host.connect_timeout) as attempt.timeout:
                conn = await asyncssh.connect(
                    host.hostname, client_factory=lambda: _Client(attempt), **options
                )
        except TimeoutError:
            if jump and not attempt.tcp_connected:
                raise jump_error(label, jump, f"no answer within {host.connect_timeout:g} s") from None
            raise attempt.timeout_error(port) from None
        except (asyncssh.Error, OSError) as exc:
            if jump and not attempt.tcp_connected:
                raise _jump_failure(exc, label, jump, target, port) from None
            raise _connect_error(
                exc, attempt, label, target, port, known_hosts, str(options.get("username", ""))
            ) from None
        if fast_receive:
            asyncssh_receive.widen_socket_reads(conn)
        return AsyncsshConnection(conn, host, label, asyncssh_receive.state())


def _jump_failure(
    exc: asyncssh.Error | OSError, label: str, jump: str, target: str, port: int
) -> EsxcapError:
    """A failure before the host was reached, on its ProxyJump way."""
    if isinstance(exc, asyncssh.ChannelOpenError):
        return jump_error(
            label,
            jump,
            f"cannot reach {target}:{port} from there: {exc.reason}",
            "the jump host must allow TCP forwarding (AllowTcpForwarding) to that address",
        )
    return jump_error(
        label, jump, "connection refused" if isinstance(exc, ConnectionRefusedError) else _reason(exc)
    )


def _connect_error(
    exc: asyncssh.Error | OSError,
    attempt: _Attempt,
    label: str,
    target: str,
    port: int,
    known_hosts: Path,
    username: str,
) -> EsxcapError:
    """What a failed asyncssh.connect means for the user."""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return attempt.key_problem or HostKeyError(
            f"{label}: host key refused: {exc.reason}", f"check the entries for {target} in {known_hosts}"
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return attempt.auth_error(username)
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        return no_common_algorithm_error(label, exc.reason)
    if isinstance(exc, ConnectionRefusedError):
        return refused_error(label, port)
    return cannot_connect_error(label, _reason(exc), port)


def _connect_options(host: HostConfig, paths: list[Path]) -> dict[str, Any]:
    """asyncssh.connect keyword arguments: inventory values beat ~/.ssh/config, which beats our defaults."""
    explicit = host.explicit
    user_arg: Any = host.username if "username" in explicit else ()
    port_arg: Any = host.port if "port" in explicit else ()
    ssh_config = SSHClientConfig.load(
        None,
        [str(p) for p in paths],
        False,
        False,
        False,
        getpass.getuser(),
        user_arg,
        host.hostname,
        port_arg,
    )
    options: dict[str, Any] = {
        "config": [str(p) for p in paths],
        "username": host.username if "username" in explicit else ssh_config.get("User") or host.username,
        "_ssh_config": ssh_config,
        "_port": port_arg if port_arg != () else ssh_config.get("Port", DEFAULT_PORT),
        "keepalive_interval": host.keepalive_interval,
        "keepalive_count_max": host.keepalive_count,
    }
    if port_arg != ():
        options["port"] = port_arg
    if host.identity_file is not None:
        options["client_keys"] = [_load_identity(host)]
        options["agent_path"] = None
    if host.proxy_jump is not None:
        options["tunnel"] = None if host.proxy_jump.lower() == "none" else host.proxy_jump
    return options


def _load_identity(host: HostConfig) -> asyncssh.SSHKeyPair:
    try:
        return asyncssh.load_keypairs([str(host.identity_file)])[0]
    except (OSError, asyncssh.KeyImportError) as exc:
        raise identity_error(host, _reason(exc)) from None
