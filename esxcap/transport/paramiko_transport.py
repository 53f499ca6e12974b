"""The paramiko transport: the same behaviour and messages as the asyncssh one (known_hosts, ~/.ssh/config,
keys, ssh-agent, keyboard-interactive passwords as ESXi asks for them, ProxyJump hops), with paramiko's
blocking calls on worker threads under asyncio timeouts.

paramiko is tuned for long streams: its re-key thresholds are raised (by default it re-keys every
512 MiB and could stall there), and channels get a larger window and packet size. The SHA-1 algorithms
that ESXi 5.5/6.0 need (group14-sha1 / gex-sha1 key exchange, ssh-rsa host keys) are added back where
paramiko dropped them, and offered after everything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from hashlib import sha1
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import paramiko
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.kex_gex import KexGexSHA256
from paramiko.kex_group14 import KexGroup14SHA256

from esxcap.errors import ConfigError, HostKeyError
from esxcap.inventory import DEFAULT_KNOWN_HOSTS
from esxcap.transport import PasswordSource, common
from esxcap.transport.common import (
    ConfiguredTransport,
    Login,
    cannot_connect_error,
    identity_error,
    jump_error,
    no_common_algorithm_error,
    refused_error,
)
from esxcap.transport.hostkeys import (
    DEFAULT_PORT,
    changed_key_error,
    known_hosts_pattern,
    record_host_key,
    unknown_key_error,
)
from esxcap.transport.paramiko_channel import SSH_ERRORS, ParamikoConnection, Threads, reason

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig

logging.getLogger("paramiko").addHandler(logging.NullHandler())
"""paramiko logs failures it also raises (e.g. a refused channel) to stderr otherwise; we report them."""

REKEY_LIMIT = 2**40
"""Bytes and packets between client-side re-keys (paramiko's 2**29 stalled long streams)."""
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


class _KexGroup14SHA1(KexGroup14SHA256):  # type: ignore[misc]
    name = "diffie-hellman-group14-sha1"
    hash_algo = sha1


class _KexGexSHA1(KexGexSHA256):  # type: ignore[misc]
    name = "diffie-hellman-group-exchange-sha1"
    hash_algo = sha1


class _RSAKey(paramiko.RSAKey):  # type: ignore[misc]
    """An RSA host key that may also sign with SHA-1 (`ssh-rsa`), as ESXi 5.5/6.0 hosts do."""

    HASHES: ClassVar[dict[str, Any]] = {**paramiko.RSAKey.HASHES, "ssh-rsa": hashes.SHA1}


class _AuthHandler(paramiko.auth_handler.AuthHandler):  # type: ignore[misc]
    """Asks for the ssh-userauth service once per connection, as OpenSSH's client does; paramiko asks
    again before every attempt, which servers other than OpenSSH's may refuse."""

    def _request_auth(self) -> None:
        if not self.transport.userauth_accepted:
            super()._request_auth()
            return
        accept = paramiko.Message()
        accept.add_string("ssh-userauth")
        accept.rewind()
        self._parse_service_accept(accept)

    def _parse_service_accept(self, m: paramiko.Message) -> None:
        self.transport.userauth_accepted = True
        super()._parse_service_accept(m)


def _auth(t: paramiko.Transport, method: str, *args: Any) -> None:
    """One login attempt (`auth_none`, `auth_publickey`, ...) through `_AuthHandler`; raises
    paramiko.AuthenticationException when refused."""
    done = threading.Event()
    t.auth_handler = handler = _AuthHandler(t)
    getattr(handler, method)(*args, done)
    handler.wait_for_response(done)


class _Transport(paramiko.Transport):  # type: ignore[misc]
    userauth_accepted = False
    _kex_info: ClassVar[dict[str, Any]] = {
        **paramiko.Transport._kex_info,
        _KexGroup14SHA1.name: _KexGroup14SHA1,
        _KexGexSHA1.name: _KexGexSHA1,
    }
    _key_info: ClassVar[dict[str, Any]] = {**paramiko.Transport._key_info, "ssh-rsa": _RSAKey}


_KEY_CLASSES = (
    (rsa.RSAPrivateKey, paramiko.RSAKey),
    (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
)


def _load_key(path: Path) -> paramiko.PKey:
    """A private key file (OpenSSH or PEM, unencrypted) as a paramiko key. The file is read with
    `cryptography` and handed to paramiko in the OpenSSH format ssh-keygen writes, since paramiko's own
    reader refuses some valid files (ECDSA keys written by other tools)."""
    data = path.read_bytes()
    loaded: object
    try:
        loaded = serialization.load_ssh_private_key(data, None)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, None)
    for kind, cls in _KEY_CLASSES:
        if isinstance(loaded, kind):
            encoding, form = serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH
            text = loaded.private_bytes(encoding, form, serialization.NoEncryption()).decode("ascii")
            key: paramiko.PKey = cls.from_private_key(io.StringIO(text))
            return key
    raise ValueError(f"unsupported key type {type(loaded).__name__}")


def _key_algs(key: paramiko.PKey) -> list[str]:
    name = str(key.get_name())
    return ["rsa-sha2-512", "rsa-sha2-256", name] if name == "ssh-rsa" else [name]


@dataclass(frozen=True)
class _Endpoint:
    """Where and as whom to connect: inventory values beat ~/.ssh/config, which beats our defaults."""

    target: str
    port: int
    username: str
    identity_files: tuple[Path, ...]
    algorithms: dict[str, str]
    jumps: tuple[HostConfig, ...] = ()
    """ProxyJump hops, first to last (the inventory's proxy_jump, else ~/.ssh/config's)."""

    @classmethod
    def resolve(cls, host: HostConfig, paths: Sequence[Path], hop: bool = False) -> _Endpoint:
        config = paramiko.SSHConfig()
        for path in paths:
            with contextlib.suppress(FileNotFoundError), path.open() as f:
                config.parse(f)
        found = config.lookup(host.hostname)
        if "proxycommand" in found:
            raise ConfigError(
                f"{host.name}: the paramiko transport does not run a ProxyCommand",
                "use ProxyJump, or the asyncssh transport (--transport asyncssh) for this host",
            )
        jump = None if hop else host.proxy_jump or found.get("proxyjump")
        explicit = host.explicit
        return cls(
            target=str(found.get("hostname", host.hostname)),
            port=host.port if "port" in explicit else int(found.get("port", DEFAULT_PORT)),
            username=host.username if "username" in explicit else str(found.get("user", host.username)),
            identity_files=tuple(Path(p).expanduser() for p in found.get("identityfile", ())),
            algorithms={k: str(found[k]) for k in ("ciphers", "kexalgorithms", "macs") if k in found},
            jumps=tuple(_hop(spec.strip(), host, config) for spec in _jump_specs(jump)),
        )


def _jump_specs(jump: str | None) -> list[str]:
    return [] if not jump or jump.strip().lower() == "none" else jump.split(",")


def _hop(spec: str, host: HostConfig, config: paramiko.SSHConfig) -> HostConfig:
    """One ProxyJump hop `[user@]host[:port]` as OpenSSH reads it: ~/.ssh/config fills in what the spec
    leaves out (HostName, User, Port, IdentityFile, UserKnownHostsFile); otherwise the local user, port
    22 and ~/.ssh/known_hosts. The inventory's identity_file and password_env belong to the ESXi host."""
    user, _, address = spec.rpartition("@")
    name, port_text = address, ""
    if address.startswith("["):
        name, _, rest = address[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif address.count(":") == 1:
        name, port_text = address.split(":")
    if not name or (port_text and not port_text.isdigit()):
        raise ConfigError(
            f"{host.name}: ProxyJump hop '{spec}' is not [user@]host[:port]", "e.g. admin@bastion:22"
        )
    found = config.lookup(name)
    known = found.get("userknownhostsfile", "").split()
    explicit = {"hostname"} | ({"username"} if user else set()) | ({"port"} if port_text else set())
    return replace(
        host,
        name=spec,
        hostname=name,
        port=int(port_text or DEFAULT_PORT),
        username=user or getpass.getuser(),
        known_hosts=Path(known[0] if known else DEFAULT_KNOWN_HOSTS).expanduser(),
        identity_file=None,
        password_env=None,
        proxy_jump=None,
        explicit=frozenset(explicit),
    )


def _known_keys(path: Path, names: Sequence[str], port: int) -> list[paramiko.PKey]:
    if not path.is_file():
        return []
    known = paramiko.HostKeys()
    try:
        known.load(str(path))
    except (OSError, paramiko.hostkeys.InvalidHostKey) as exc:
        raise HostKeyError(f"cannot read known_hosts {path}: {exc}", "fix or remove the broken line") from exc
    keys: list[paramiko.PKey] = []
    for name in dict.fromkeys(names):
        keys += (known.lookup(known_hosts_pattern(name, port)) or {}).values()
    return keys


def _preferences(transport: paramiko.Transport, endpoint: _Endpoint, known_algs: Sequence[str]) -> None:
    """Our preference lists, less what this paramiko lacks; a list set in ~/.ssh/config replaces ours."""
    options = transport.get_security_options()
    lists: dict[str, tuple[str, Sequence[str], dict[str, Any]]] = {
        "ciphers": ("ciphers", common.ENCRYPTION + common.ENCRYPTION_OLD, _Transport._cipher_info),
        "kexalgorithms": ("kex", common.KEX + common.KEX_OLD, _Transport._kex_info),
        "macs": ("digests", common.MAC + common.MAC_OLD, _Transport._mac_info),
        "": ("key_types", common.host_key_preference(known_algs), _Transport._key_info),
    }
    for config_key, (attr, ours, available) in lists.items():
        wanted = endpoint.algorithms.get(config_key, "")
        names = wanted.split(",") if wanted and wanted[0] not in "+-^" else ours
        setattr(options, attr, [n for n in names if n in available])


class ParamikoTransport(ConfiguredTransport):
    """Opens paramiko connections."""

    async def connect(
        self, host: HostConfig, *, password: PasswordSource, accept_new: bool
    ) -> ParamikoConnection:
        endpoint = _Endpoint.resolve(host, self.config_paths())
        target, port = endpoint.target, endpoint.port
        label = f"{host.name} ({target}:{port})"
        login = Login(host, label, password)
        threads = Threads(f"ssh-{host.name}")
        session = _Session(host, endpoint, login, threads, accept_new, self.config_paths())
        try:
            async with asyncio.timeout(host.connect_timeout) as login.timeout:
                transport = await session.open()
        except TimeoutError:
            session.abandon()
            raise login.timeout_error(port) from None
        except ConnectionRefusedError:
            session.abandon()
            raise refused_error(label, port) from None
        except paramiko.IncompatiblePeer as exc:
            session.abandon()
            raise no_common_algorithm_error(label, reason(exc)) from None
        except SSH_ERRORS as exc:
            session.abandon()
            raise cannot_connect_error(label, reason(exc), port) from None
        except BaseException:
            session.abandon()
            raise
        return ParamikoConnection(transport, threads, label, session.hops)


class _Session:
    """One connection attempt: TCP, key exchange, host key verdict, then login, each step on a thread."""

    def __init__(
        self,
        host: HostConfig,
        endpoint: _Endpoint,
        login: Login,
        threads: Threads,
        accept_new: bool,
        paths: Sequence[Path],
    ) -> None:
        self.host = host
        self.endpoint = endpoint
        self.login = login
        self.threads = threads
        self.accept_new = accept_new
        self.paths = paths
        self.known_hosts = host.known_hosts or Path(DEFAULT_KNOWN_HOSTS).expanduser()
        self.sock: socket.socket | paramiko.Channel | None = None
        self.transport: paramiko.Transport | None = None
        self.hops: list[paramiko.Transport] = []
        """The jump hosts' connections, first hop first; they live as long as this one."""

    def abandon(self) -> None:
        """Close whatever is open; a step still blocked on its thread then fails and ends."""
        self.close_open()
        self.threads.shutdown()

    def close_open(self) -> None:
        """Close this attempt's connections (the worker threads may serve another hop)."""
        for t in (self.transport, *reversed(self.hops)):
            if t is not None:
                t.close()
        if self.sock is not None:
            self.sock.close()

    async def open(self, channel: paramiko.Channel | None = None) -> paramiko.Transport:
        """Connect (over `channel` when a jump host opened one), check the host key, log in."""
        host, endpoint = self.host, self.endpoint
        if channel is None and endpoint.jumps:
            channel = await self._through_jumps()
        if channel is not None:
            self.sock, peer = channel, endpoint.target
        else:
            address = (endpoint.target, endpoint.port)
            sock = await self.threads.call(socket.create_connection, address, host.connect_timeout)
            sock.settimeout(None)
            self.sock, peer = sock, str(sock.getpeername()[0])
        self.login.tcp_connected = True
        known = _known_keys(self.known_hosts, [endpoint.target, peer], endpoint.port)
        t = self.transport = _Transport(self.sock)
        t.packetizer.REKEY_BYTES = t.packetizer.REKEY_PACKETS = REKEY_LIMIT
        t.banner_timeout = t.handshake_timeout = host.connect_timeout
        t.auth_timeout = None  # the connect timeout covers the login (and pauses while the prompt is open)
        _preferences(t, endpoint, [alg for key in known for alg in _key_algs(key)])
        await self.threads.call(t.start_client, None, host.connect_timeout)
        self._check_host_key(t.get_remote_server_key(), known)
        await self.threads.call(self._authenticate, t, asyncio.get_running_loop())
        return t

    async def _through_jumps(self) -> paramiko.Channel:
        """Log in to each ProxyJump hop in turn (its own host key check and login, over a channel of the
        hop before it) and return a channel from the last hop to this host."""
        hops, timeout = self.endpoint.jumps, self.host.connect_timeout
        channel: paramiko.Channel | None = None
        for index, hop in enumerate(hops):
            endpoint = _Endpoint.resolve(hop, self.paths, hop=True)
            where = f"{endpoint.target}:{endpoint.port}"
            label = f"jump host {hop.name} ({where})"
            login = Login(hop, label, self.login.password_source, timeout=self.login.timeout)
            session = _Session(hop, endpoint, login, self.threads, self.accept_new, self.paths)
            try:
                transport = await session.open(channel)
            except BaseException as exc:
                session.close_open()
                if isinstance(exc, SSH_ERRORS):
                    raise jump_error(self.login.label, hop.name, reason(exc), address=where) from None
                raise
            self.hops.append(transport)
            if index + 1 < len(hops):
                after = _Endpoint.resolve(hops[index + 1], self.paths, hop=True)
                target = (after.target, after.port)
            else:
                target = (self.endpoint.target, self.endpoint.port)
            try:
                channel = await self.threads.call(
                    transport.open_channel, "direct-tcpip", target, ("127.0.0.1", 0), None, timeout
                )
            except SSH_ERRORS as exc:
                raise jump_error(
                    self.login.label,
                    hop.name,
                    f"cannot reach {target[0]}:{target[1]} from there: {reason(exc)}",
                    "the jump host must allow TCP forwarding (AllowTcpForwarding) to that address",
                    address=where,
                ) from None
        assert channel is not None, "called only with at least one hop"
        return channel

    def _check_host_key(self, key: paramiko.PKey, known: list[paramiko.PKey]) -> None:
        label, target, port = self.login.label, self.endpoint.target, self.endpoint.port
        if any(k.asbytes() == key.asbytes() for k in known):
            return
        key_type, fingerprint = str(key.get_name()), str(key.fingerprint)
        if known:
            known_types = sorted({str(k.get_name()) for k in known})
            raise changed_key_error(label, target, port, key_type, fingerprint, self.known_hosts, known_types)
        if not self.accept_new:
            raise unknown_key_error(
                label, self.host.name, target, port, key_type, fingerprint, self.known_hosts
            )
        record_host_key(self.known_hosts, target, port, f"{key_type} {key.get_base64()}")

    def _authenticate(self, t: paramiko.Transport, loop: asyncio.AbstractEventLoop) -> None:
        """publickey (identity_file, else ssh-agent and default keys), then keyboard-interactive, then
        password; AuthError naming what the server offered when none got in."""
        login, user = self.login, self.endpoint.username
        try:
            _auth(t, "auth_none", user)
            return
        except paramiko.BadAuthenticationType as exc:
            login.note_methods(exc.allowed_types)
        except paramiko.AuthenticationException:
            pass
        if "publickey" in login.offered and self._try_keys(t, user):
            return

        def password() -> str | None:
            return asyncio.run_coroutine_threadsafe(login.password(), loop).result()

        def answer(_title: str, _instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
            if not prompts:
                return []
            if login.kbdint_answered or any(echo for _prompt, echo in prompts):
                return []
            secret = password()
            login.kbdint_answered = True
            return [] if secret is None else [secret for _prompt in prompts]

        with contextlib.suppress(paramiko.AuthenticationException):
            if "keyboard-interactive" in login.offered:
                _auth(t, "auth_interactive", user, answer)
                return
        with contextlib.suppress(paramiko.AuthenticationException):
            if "password" in login.offered and not login.kbdint_answered:
                secret = password()
                login.password_sent = True
                if secret is not None:
                    _auth(t, "auth_password", user, secret)
                    return
        raise login.auth_error(user)

    def _try_keys(self, t: paramiko.Transport, user: str) -> bool:
        for key in self._keys():
            with contextlib.suppress(paramiko.AuthenticationException):
                _auth(t, "auth_publickey", user, key)
                return True
        return False

    def _keys(self) -> list[paramiko.PKey]:
        if self.host.identity_file is not None:
            try:
                return [_load_key(self.host.identity_file)]
            except (OSError, paramiko.SSHException, ValueError, TypeError) as exc:
                raise identity_error(self.host, reason(exc)) from None
        keys: list[paramiko.PKey] = []
        with contextlib.suppress(paramiko.SSHException, OSError):
            keys += paramiko.Agent().get_keys()
        home = Path("~/.ssh").expanduser()
        for path in self.endpoint.identity_files or tuple(home / name for name in DEFAULT_KEYS):
            with contextlib.suppress(OSError, paramiko.SSHException, ValueError, TypeError):
                keys.append(_load_key(path))
        return keys
