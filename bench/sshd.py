"""A private OpenSSH sshd on 127.0.0.1 for benchmarks and tests: its own config, host key and client key
in a temp dir, run as `sshd -D -e -f CONFIG` child of this process on free ports, stopped on exit.

    with OpenSshd.start(workdir) as sshd:
        subprocess.run([*sshd.ssh_argv(), "true"])

`ports` listens on several ports (known_hosts has a line for each); `extra_config` adds sshd_config
lines (e.g. `ForceCommand`).

`SshdUnavailable` says why no sshd could be started (not installed: how to install it).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
"""Where a root-run sshd chroots its unprivileged child (created by the package at boot)."""
START_TIMEOUT_S = 10.0
INSTALL_HINT = "install OpenSSH's server and client: apt-get install openssh-server openssh-client"


class SshdUnavailable(Exception):
    """No sshd could be started here; the message says why and how to fix it."""


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "esxcap-bench", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _certify(public_key: Path, ca: Path) -> None:
    """Sign a host key with `ca`: `KEY-cert.pub` beside it, for localhost and 127.0.0.1."""
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "esxcap-bench", "-h", "-n", "localhost,127.0.0.1",
         str(public_key)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )  # fmt: skip


def _free_ports(count: int) -> tuple[int, ...]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return tuple(ports)


def _config(workdir: Path, ports: Sequence[int], user: str, extra: Sequence[str]) -> str:
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            *(f"Port {port}" for port in ports),
            f"HostKey {workdir / 'host_key'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            f"AllowUsers {user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel ERROR",
            "MaxStartups 100:30:200",
            *extra,
            "",
        ]
    )


@dataclass
class OpenSshd:
    """A running sshd and what a client needs to reach it."""

    workdir: Path
    ports: tuple[int, ...]
    user: str
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @classmethod
    def start(
        cls, workdir: Path, ports: int = 1, extra_config: Sequence[str] = (), host_ca: Path | None = None
    ) -> OpenSshd:
        """Generate keys and config in `workdir`, start sshd on `ports` free ports and wait until each
        answers SSH. With `host_ca` (a private key), the host key is certified by it for the principals
        localhost and 127.0.0.1, and sshd serves the certificate (HostCertificate)."""
        missing = [tool for tool in (SSHD, "ssh", "ssh-keygen") if shutil.which(tool) is None]
        if missing:
            raise SshdUnavailable(f"{', '.join(missing)} not found; {INSTALL_HINT}")
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        workdir.mkdir(parents=True, exist_ok=True)
        user = getpass.getuser()
        _keygen(workdir / "host_key")
        _keygen(workdir / "client_key")
        if host_ca is not None:
            _certify(workdir / "host_key.pub", host_ca)
            extra_config = [*extra_config, f"HostCertificate {workdir / 'host_key-cert.pub'}"]
        shutil.copyfile(workdir / "client_key.pub", workdir / "authorized_keys")
        host_pub = (workdir / "host_key.pub").read_text().split()
        last_error = ""
        for _attempt in range(3):
            chosen = _free_ports(ports)
            (workdir / "known_hosts").write_text(
                "".join(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n" for port in chosen)
            )
            config = workdir / "sshd_config"
            config.write_text(_config(workdir, chosen, user, extra_config))
            log = (workdir / "sshd.log").open("wb")
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            log.close()
            sshd = cls(workdir, chosen, user, process)
            if sshd._wait_ready():
                return sshd
            sshd.stop()
            last_error = (workdir / "sshd.log").read_text(errors="replace").strip()
        raise SshdUnavailable(f"sshd did not start: {last_error or 'no output'}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(self.ports)
        while waiting and time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", waiting[0]), 1) as s:
                s.settimeout(1)
                if s.recv(8).startswith(b"SSH-"):
                    waiting.pop(0)
                    continue
            time.sleep(0.05)
        return not waiting

    def ssh_argv(
        self, cipher: str | None = None, verbose: bool = False, port: int | None = None
    ) -> list[str]:
        """OpenSSH client argv up to the host (`port`: another of its ports); append the remote command.
        No user config is read."""
        argv = [
            "ssh",
            "-F",
            "/dev/null",
            "-T",
            "-p",
            str(port or self.port),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-l",
            self.user,
        ]
        if cipher is not None:
            argv += ["-c", cipher]
        if verbose:
            argv.append("-v")
        return [*argv, "127.0.0.1"]

    def stop(self) -> None:
        """Stop sshd (its sessions end with it)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> OpenSshd:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
