"""One simulated host's SSH server (asyncssh, 127.0.0.1 only): ESXi-like auth, algorithms and exec.

Auth as on ESXi (REFERENCE §4.1, §6.7): `publickey` (the state dir's client key, for root) and
`keyboard-interactive` with one `Password: ` prompt (no echo); the `password` method is not offered.
5.x / 6.0 personas offer only SHA-1-era algorithms and an `ssh-rsa` host key; newer ones offer the
algorithm lists of an 8.0.2 host's sshd_config. Exec requests go to `esxcap.sim.capture_exec`: captures
stream on the channel, everything else runs through the simulated shell, binary-safe.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence

import asyncssh

from esxcap.errors import ConfigError
from esxcap.sim import capture_exec
from esxcap.sim.processes import SIGNALS, ProcessTable
from esxcap.sim.programs import CallCount, host_programs
from esxcap.sim.shell import Output, Shell
from esxcap.sim.topology import Host, Topology
from esxcap.sim.traffic import TrafficModel

ROOT = "root"
PASSWORD_PROMPT = "Password: "  # noqa: S105 - the prompt text, not a password

LEGACY_ALGORITHMS: dict[str, Sequence[str]] = {
    "kex_algs": ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1"),
    "encryption_algs": ("aes128-ctr", "aes256-ctr"),
    "mac_algs": ("hmac-sha1",),
    "compression_algs": ("none",),
}
MODERN_ALGORITHMS: dict[str, Sequence[str]] = {
    "kex_algs": (
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
    ),
    "encryption_algs": (
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    ),
    "mac_algs": ("hmac-sha2-256", "hmac-sha2-512"),
    "compression_algs": ("none",),
}


LEGACY_HOST_KEY_ALGS = ("ssh-rsa",)
MODERN_HOST_KEY_ALGS = ("ecdsa-sha2-nistp256", "rsa-sha2-256", "rsa-sha2-512")


def algorithms(host: Host) -> dict[str, Sequence[str]]:
    """kex / cipher / MAC / compression lists for create_server (host key algorithms: `_host_keypairs`)."""
    return LEGACY_ALGORITHMS if host.legacy_ssh else MODERN_ALGORITHMS


def host_key_algorithms(host: Host) -> tuple[str, ...]:
    return LEGACY_HOST_KEY_ALGS if host.legacy_ssh else MODERN_HOST_KEY_ALGS


def _host_keypairs(
    keys: Sequence[asyncssh.SSHKey], certificates: Sequence[asyncssh.SSHCertificate], host: Host
) -> list[asyncssh.SSHKeyPair]:
    """The host keys (with their certificates, if any), each limited to the persona's host key algorithms
    (asyncssh offers every algorithm a key supports, e.g. ssh-rsa and rsa-sha2-* for one RSA key)."""
    plain = host_key_algorithms(host)
    allowed = {alg.encode() for alg in plain} | {f"{alg}-cert-v01@openssh.com".encode() for alg in plain}
    certified = {cert.key.public_data: cert for cert in certificates}
    pairs = asyncssh.load_keypairs(
        [(key, certified[key.public_data]) if key.public_data in certified else key for key in keys]
    )
    for pair in pairs:
        pair.host_key_algorithms = tuple(a for a in pair.host_key_algorithms if a in allowed)
    return [pair for pair in pairs if pair.host_key_algorithms]


class SimHost:
    """A simulated host while it is served: its port, host keys and what clients did to it."""

    def __init__(
        self,
        topology: Host,
        host_keys: Sequence[asyncssh.SSHKey],
        client_key: asyncssh.SSHKey,
        traffic: TrafficModel | None = None,
        host_certificates: Sequence[asyncssh.SSHCertificate] = (),
    ) -> None:
        self.name = topology.name
        self.topology = topology
        self.host_keys = tuple(host_keys)
        self.host_certificates = tuple(host_certificates)
        self.client_key = client_key
        self.port = 0
        self.connections = 0
        self.exec_requests = 0
        self.handshakes = HandshakeGauge()
        """Logins in progress (the Simulator shares one gauge among its hosts)."""
        self.failed_logins = 0
        """Wrong passwords received, keyboard-interactive and password alike (ESXi locks after a few)."""
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._silent: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()
        self.processes = ProcessTable()
        self.calls = CallCount()
        programs = (
            host_programs(topology, self.calls),
            self.processes.programs(),
            capture_exec.pktcap_program(topology),
        )

        def run(argv: Sequence[str]) -> Output | None:
            return next((out for out in (p(argv) for p in programs) if out is not None), None)

        self.traffic = traffic or TrafficModel(Topology((topology,), topology.name))
        self._runtime = capture_exec.HostRuntime(
            topology, self.traffic, self.processes, Shell(run), self.calls
        )

    @property
    def running(self) -> bool:
        return self._acceptor is not None or self._silent is not None

    async def start(self, port: int) -> None:
        """Listen on 127.0.0.1:port (0 = any free port; a restarted host keeps its port)."""
        if self.running:
            return
        if self.topology.faults.silent:
            self._silent = await asyncio.start_server(self._hold, "127.0.0.1", port)
            self.port = self._silent.sockets[0].getsockname()[1]
            return
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            "127.0.0.1",
            port,
            server_host_keys=_host_keypairs(self.host_keys, self.host_certificates, self.topology),
            process_factory=self._serve,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            **algorithms(self.topology),
        )
        self.port = self._acceptor.get_port()

    async def stop(self) -> None:
        """Stop listening and drop every open connection without a goodbye, like a host going down
        (its processes end with it)."""
        silent, self._silent = self._silent, None
        if silent is not None:
            silent.close()
            for writer in self._held:
                writer.transport.abort()
            self._held.clear()
            await silent.wait_closed()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        for proc in self.processes.running():
            self.processes.signal(proc.cid, SIGNALS["KILL"])
        acceptor.close()
        await acceptor.wait_closed()
        for conn in list(self._live):
            conn.abort()
        self._live.clear()

    def reset_connections(self) -> None:
        """Cut every open connection with a TCP reset (as a firewall or a crashed NIC would); the host
        stays up and its processes run on, each noticing the lost channel on its own."""
        for conn in list(self._live):
            sock = conn.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.abort()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A `silent` host's connection: read and ignore everything, answer nothing."""
        self.connections += 1
        self._held.add(writer)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self._held.discard(writer)
            writer.close()

    def _connected(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connections += 1
        self._live.add(conn)

    def _disconnected(self, conn: asyncssh.SSHServerConnection) -> None:
        self._live.discard(conn)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"esxcap simulator: interactive shells are not simulated; run a command\n")
            process.exit(1)
            return
        self.exec_requests += 1
        timeout = self.topology.faults.session_timeout_s
        serving = asyncio.create_task(capture_exec.serve(self._runtime, process, command))
        done, _pending = await asyncio.wait([serving], timeout=timeout)
        if not done:
            process.channel.close()  # the session ends under the command, as a shell timeout ends it
            await serving


class HandshakeGauge:
    """SSH connections between their start and the end of their login, now and the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def begin(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def end(self) -> None:
        self.now -= 1


class _Server(asyncssh.SSHServer):
    def __init__(self, host: SimHost) -> None:
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None
        self._logging_in = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._host._connected(conn)
        self._logging_in = True
        self._host.handshakes.begin()

    def auth_completed(self) -> None:
        self._logged_in()

    def connection_lost(self, exc: Exception | None) -> None:
        self._logged_in()
        if self._conn is not None:
            self._host._disconnected(self._conn)

    def _logged_in(self) -> None:
        if self._logging_in:
            self._logging_in = False
            self._host.handshakes.end()

    async def begin_auth(self, username: str) -> bool:
        await asyncio.sleep(self._host.topology.faults.login_delay_ms / 1000)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        admitted = username == ROOT and not self._host.topology.faults.lockdown
        return admitted and key.public_data == self._host.client_key.public_data

    def password_auth_supported(self) -> bool:
        return self._host.topology.faults.password_method

    def validate_password(self, username: str, password: str) -> bool:
        return self._login(username, [password])

    def kbdint_auth_supported(self) -> bool:
        return True

    def get_kbdint_challenge(
        self, username: str, lang: str, submethods: str
    ) -> tuple[str, str, str, list[tuple[str, bool]]]:
        return "", "", "", [(PASSWORD_PROMPT, False)]

    def validate_kbdint_response(
        self, username: str, responses: Sequence[str]
    ) -> bool | tuple[str, str, str, list[tuple[str, bool]]]:
        if self._login(username, responses):
            return True
        if self._host.topology.faults.password_retry_prompt:
            return "", "", "", [(PASSWORD_PROMPT, False)]
        return False

    def _login(self, username: str, answers: Sequence[str]) -> bool:
        """Whether the answers are root's password (and lockdown lets root in); every refusal counts as a
        failed login."""
        right = username == ROOT and list(answers) == [self._host.topology.password]
        if right and not self._host.topology.faults.lockdown:
            return True
        self._host.failed_logins += 1
        return False


async def start_hosts(hosts: Sequence[SimHost], port_base: int) -> None:
    """Start every host: port_base + i, or ephemeral ports when port_base is 0."""
    try:
        await asyncio.gather(*(h.start(port_base + i if port_base else 0) for i, h in enumerate(hosts)))
    except OSError as exc:
        last = port_base + len(hosts) - 1
        raise ConfigError(
            f"the simulator cannot listen on 127.0.0.1 ports {port_base}-{last}: {exc.strerror or exc}",
            "choose other ports with --port-base N, or 0 for any free ports",
        ) from exc
