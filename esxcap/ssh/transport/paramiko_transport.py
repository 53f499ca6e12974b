"""The paramiko transport: the same behaviour and messages as the asyncssh one (known_hosts, ~/.ssh/config,
keys, ssh-agent, keyboard-interactive passwords as ESXi asks for them, ProxyJump hops), with paramiko's
blocking calls on worker threads under asyncio timeouts. What paramiko is taught for ESXi and for long
streams (SHA-1 algorithms for 5.5/6.0, re-key thresholds) is in paramiko_compat; channels get a larger
window and packet size in paramiko_channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from esxcap.errors import ConfigError, HostKeyError
from esxcap.inventory import DEFAULT_KNOWN_HOSTS
from esxcap.ssh.transport import PasswordSource
from esxcap.ssh.transport.common import (
    OPEN_PROHIBITED,
    ConfiguredTransport,
    Login,
    cannot_connect_error,
    forward_error,
    identity_error,
    jump_error,
    no_common_algorithm_error,
    refused_error,
)
from esxcap.ssh.transport.hostkeys import HostKeyCheck, PresentedKey, load_known_hosts
from esxcap.ssh.transport.known_hosts import DEFAULT_PORT, KnownHosts, key_blob_type, parse_certificate
from esxcap.ssh.transport.paramiko_channel import (
    MAX_PACKET_SIZE,
    SSH_ERRORS,
    WINDOW_SIZE,
    ParamikoConnection,
    Threads,
    reason,
)
from esxcap.ssh.transport.paramiko_compat import (
    REKEY_LIMIT,
    EsxiTransport,
    auth_step,
    load_key,
    set_preferences,
)
from esxcap.ssh.transport.paramiko_keepalive import Keepalive
from esxcap.ssh.transport.passwords import Passwords

if TYPE_CHECKING:
    from esxcap.inventory import HostConfig

logging.getLogger("paramiko").addHandler(logging.NullHandler())
"""paramiko logs failures it also raises (e.g. a refused channel) to stderr otherwise; we report them."""

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class _Endpoint:
    """Where and as whom to connect: inventory values beat ~/.ssh/config, which beats our defaults."""

    target: str
    port: int
    username: str
    identity_files: tuple[Path, ...]
    algorithms: dict[str, str]
    jumps: tuple[tuple[HostConfig, _Endpoint], ...] = ()
    """ProxyJump hops, first to last (the inventory's proxy_jump, else ~/.ssh/config's), each resolved."""

    @classmethod
    def resolve(cls, host: HostConfig, paths: Sequence[Path]) -> _Endpoint:
        """The host's endpoint and its hops' (the ssh config files are read once for all of them)."""
        config = paramiko.SSHConfig()
        for path in paths:
            with contextlib.suppress(FileNotFoundError), path.open() as f:
                config.parse(f)
        return cls._from_config(host, config, hop=False)

    @classmethod
    def _from_config(cls, host: HostConfig, config: paramiko.SSHConfig, hop: bool) -> _Endpoint:
        found = config.lookup(host.hostname)
        if str(found.get("proxycommand") or "none").lower() != "none":
            raise ConfigError(
                f"{host.name}: the paramiko transport does not run a ProxyCommand",
                "use ProxyJump, or the asyncssh transport (--transport asyncssh) for this host",
            )
        specs = [] if hop else _jump_chain(_jump_specs(host.proxy_jump or found.get("proxyjump")), config)
        hops = [_hop(spec, host, config) for spec in specs]
        explicit = host.explicit
        return cls(
            target=str(found.get("hostname", host.hostname)),
            port=host.port if "port" in explicit else int(found.get("port", DEFAULT_PORT)),
            username=host.username if "username" in explicit else str(found.get("user", host.username)),
            identity_files=tuple(Path(p).expanduser() for p in found.get("identityfile", ())),
            algorithms={k: str(found[k]) for k in ("ciphers", "kexalgorithms", "macs") if k in found},
            jumps=tuple((h, cls._from_config(h, config, hop=True)) for h in hops),
        )


def _jump_specs(jump: str | None) -> list[str]:
    if not jump or jump.strip().lower() == "none":
        return []
    return [spec.strip().removeprefix("ssh://") for spec in jump.split(",")]


def _jump_chain(specs: list[str], config: paramiko.SSHConfig) -> list[str]:
    """The hops in order, as OpenSSH goes: the first hop is itself reached through its own ProxyJump in
    ~/.ssh/config, if it has one (a hop seen before ends the chain, so `Host *` entries do not loop)."""
    chain = list(specs)
    while chain:
        _user, name, _port = _split_hop(chain[0])
        before = [s for s in _jump_specs(config.lookup(name).get("proxyjump")) if s not in chain]
        if not before:
            return chain
        chain = before + chain
    return chain


def _split_hop(spec: str) -> tuple[str, str, str | None]:
    """`[user@]host[:port]` (IPv6 in brackets) -> (user or "", host, port text or None)."""
    user, _, address = spec.rpartition("@")
    if address.startswith("["):
        name, _, rest = address[1:].partition("]")
        return user, name, rest[1:] if rest.startswith(":") else (rest or None)
    if address.count(":") == 1:
        name, port_text = address.split(":")
        return user, name, port_text
    return user, address, None


def _hop(spec: str, host: HostConfig, config: paramiko.SSHConfig) -> HostConfig:
    """One ProxyJump hop `[user@]host[:port]` as OpenSSH reads it: ~/.ssh/config fills in what the spec
    leaves out (HostName, User, Port, IdentityFile, UserKnownHostsFile); otherwise the local user, port
    22 and ~/.ssh/known_hosts. The inventory's identity_file and password_env belong to the ESXi host."""
    user, name, port_text = _split_hop(spec)
    if not name or (port_text is not None and not port_text.isdigit()):
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


class ParamikoTransport(ConfiguredTransport):
    """Opens paramiko connections."""

    async def connect(
        self, host: HostConfig, *, password: PasswordSource | Passwords, accept_new: bool
    ) -> ParamikoConnection:
        endpoint = _Endpoint.resolve(host, self.config_paths())
        target, port = endpoint.target, endpoint.port
        label = f"{host.name} ({target}:{port})"
        login = Login(host, label, password)
        threads = Threads(f"ssh-{host.name}")
        session = _Session(host, endpoint, login, threads, accept_new)
        try:
            async with asyncio.timeout(host.connect_timeout) as login.timeout:
                transport = await session.open()
        except TimeoutError:
            session.abandon()
            if session.hop_label is not None:
                raise jump_error(
                    label, session.hop_label, f"no answer within {host.connect_timeout:g} s"
                ) from None
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
        keepalive = Keepalive(transport, host.keepalive_interval, host.keepalive_count)
        return ParamikoConnection(transport, threads, label, session.hops, keepalive)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Session:
    """One connection attempt: TCP, key exchange, host key verdict, then login, each step on a thread."""

    def __init__(
        self,
        host: HostConfig,
        endpoint: _Endpoint,
        login: Login,
        threads: Threads,
        accept_new: bool,
        esxi_host: str | None = None,
    ) -> None:
        self.host = host
        self.esxi_host = esxi_host or host.name
        """The inventory host this attempt is for (a jump host's key is trusted through its command)."""
        self.endpoint = endpoint
        self.login = login
        self.threads = threads
        self.accept_new = accept_new
        self.known_hosts = host.known_hosts or Path(DEFAULT_KNOWN_HOSTS).expanduser()
        self.sock: socket.socket | paramiko.Channel | None = None
        self.transport: paramiko.Transport | None = None
        self.hops: list[paramiko.Transport] = []
        """The jump hosts' connections, first hop first; they live as long as this one."""
        self.hop_label: str | None = None
        """The jump host being worked on (a timeout then is that hop's), None once this host's turn."""

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
            self.sock, peer = channel, None
        else:
            address = (endpoint.target, endpoint.port)
            sock = await self.threads.call(socket.create_connection, address, host.connect_timeout)
            sock.settimeout(None)
            self.sock, peer = sock, str(sock.getpeername()[0])
        self.login.tcp_connected = True
        where = (endpoint.target, endpoint.port)
        check = HostKeyCheck(self.login.label, self.esxi_host, *where, self.known_hosts, self.accept_new)
        known = load_known_hosts(self.known_hosts)
        t = self.transport = EsxiTransport(self.sock)
        t.packetizer.REKEY_BYTES = t.packetizer.REKEY_PACKETS = REKEY_LIMIT
        t.banner_timeout = t.handshake_timeout = host.connect_timeout
        t.auth_timeout = None  # the connect timeout covers the login (and pauses while the prompt is open)
        set_preferences(t, endpoint.algorithms, known.host_key_types(check.name))
        await self.threads.call(t.start_client, None, host.connect_timeout)
        _check_host_key(t.get_remote_server_key(), check, known, peer)
        await self.threads.call(self._authenticate, t, asyncio.get_running_loop())
        return t

    async def _through_jumps(self) -> paramiko.Channel:
        """Log in to each ProxyJump hop in turn (its own host key check and login, over a channel of the
        hop before it) and return a channel from the last hop to this host."""
        hops, timeout = self.endpoint.jumps, self.host.connect_timeout
        channel: paramiko.Channel | None = None
        for index, (hop, endpoint) in enumerate(hops):
            where = _address(endpoint.target, endpoint.port)
            self.hop_label = f"{hop.name} ({where})"
            login = Login(
                hop, f"jump host {self.hop_label}", self.login.passwords, timeout=self.login.timeout
            )
            session = _Session(hop, endpoint, login, self.threads, self.accept_new, self.esxi_host)
            try:
                transport = await session.open(channel)
            except BaseException as exc:
                session.close_open()
                if isinstance(exc, SSH_ERRORS):
                    raise jump_error(self.login.label, hop.name, reason(exc), address=where) from None
                raise
            self.hops.append(transport)
            after = hops[index + 1][1] if index + 1 < len(hops) else self.endpoint
            target = (after.target, after.port)
            try:
                channel = await self.threads.call(
                    functools.partial(
                        transport.open_channel,
                        "direct-tcpip",
                        dest_addr=target,
                        src_addr=("127.0.0.1", 0),
                        window_size=WINDOW_SIZE,
                        max_packet_size=MAX_PACKET_SIZE,
                        timeout=timeout,
                    )
                )
            except SSH_ERRORS as exc:
                prohibited = isinstance(exc, paramiko.ChannelException) and exc.code == OPEN_PROHIBITED
                raise forward_error(
                    self.login.label, hop.name, where, _address(*target), reason(exc), prohibited
                ) from None
        self.hop_label = None
        assert channel is not None, "called only with at least one hop"
        return channel

    def _authenticate(self, t: paramiko.Transport, loop: asyncio.AbstractEventLoop) -> None:
        """publickey (identity_file, else ssh-agent and default keys), then keyboard-interactive, then
        password; AuthError naming what the server offered when none got in."""
        login, user = self.login, self.endpoint.username
        try:
            auth_step(t, "auth_none", user)
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
            """The password for the first prompt round; anything else ends the exchange unanswered
            (raising here ends paramiko's connection), since every answer, even an empty one, is a
            login attempt that counts towards ESXi's account lockout."""
            if not prompts:
                return []
            if login.kbdint_answered or any(echo for _prompt, echo in prompts):
                raise paramiko.AuthenticationException("keyboard-interactive: not answering again")
            secret = password()
            login.kbdint_answered = True
            if secret is None:
                raise paramiko.AuthenticationException("keyboard-interactive: no password")
            return [secret for _prompt in prompts]

        with contextlib.suppress(paramiko.AuthenticationException):
            if "keyboard-interactive" in login.offered:
                auth_step(t, "auth_interactive", user, answer)
                return
        with contextlib.suppress(paramiko.AuthenticationException):
            if "password" in login.offered and not login.kbdint_answered and t.is_active():
                secret = password()
                login.password_sent = True
                if secret is not None:
                    auth_step(t, "auth_password", user, secret)
                    return
        raise login.auth_error(user)

    def _try_keys(self, t: paramiko.Transport, user: str) -> bool:
        for key in self._keys():
            with contextlib.suppress(paramiko.AuthenticationException):
                auth_step(t, "auth_publickey", user, key)
                return True
        return False

    def _keys(self) -> list[paramiko.PKey]:
        if self.host.identity_file is not None:
            try:
                return [load_key(self.host.identity_file)]
            except (OSError, paramiko.SSHException, ValueError, TypeError) as exc:
                raise identity_error(self.host, reason(exc)) from None
        keys: list[paramiko.PKey] = []
        with contextlib.suppress(paramiko.SSHException, OSError):
            keys += paramiko.Agent().get_keys()
        home = Path("~/.ssh").expanduser()
        for path in self.endpoint.identity_files or tuple(home / name for name in DEFAULT_KEYS):
            with contextlib.suppress(OSError, paramiko.SSHException, ValueError, TypeError):
                keys.append(load_key(path))
        return keys


def _check_host_key(key: paramiko.PKey, check: HostKeyCheck, known: KnownHosts, peer: str | None) -> None:
    """The shared verdict on the host's key or certificate; a certificate's CA signature is checked here."""
    blob = key.public_blob
    if blob is not None:
        cert, signed, signature = parse_certificate(blob.key_blob)
        ca = paramiko.PKey.from_type_string(key_blob_type(cert.ca_blob), cert.ca_blob)
        if not ca.verify_ssh_sig(signed, paramiko.Message(signature)):
            raise HostKeyError(
                f"{check.label}: the host's certificate carries a bad signature; refusing to connect",
                "have the host's certificate reissued",
            )
        decision = known.check_certificate(check.name, check.target, cert, time.time(), peer)
        plain = cert.key_blob
    else:
        plain = key.asbytes()
        decision = known.check_key(check.name, plain, peer)
    check.settle(decision, PresentedKey.from_blob(plain))
