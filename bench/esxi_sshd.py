"""OpenSSH's real sshd as simulated ESXi hosts: every session runs under BusyBox `sh` (ESXi's shell) with
the simulator's command shims (`esxcap.sim.shim`) first on PATH.

`start_esxi_sshd(workdir, topology, hosts)` starts one sshd on 127.0.0.1 with one port per host; the
session script (sshd's `ForceCommand`) picks the host by the port the client reached, exports the
shims' environment and runs `busybox sh -c "$SSH_ORIGINAL_COMMAND"`. PATH holds the shims, then a few
BusyBox applets (nothing that sees or touches the machine's other processes). Where mount namespaces
work (root), each host has its own /tmp/esxcap (esxcap's pidfiles: per host, never the machine's);
elsewhere the hosts share the machine's.
`esxcap -i sshd.inventory` reaches the hosts; `sshd.pktcaps(host)` lists the real pktcap-uw shim
processes; `sshd.leftovers()` kills whatever processes of the tier are still running and names them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.sshd import OpenSshd, SshdUnavailable
from esxcap.esxi.lifecycle import PID_DIR
from esxcap.sim.shim import (
    HOST_ENV,
    SOCKET_ENV,
    TIER_ENV,
    TOPOLOGY_ENV,
    ProgramServer,
    TierProcess,
    tier_processes,
    write_launchers,
)

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ash", "kill", "cat", "rm", "mkdir", "sleep", "echo", "true", "false", "test", "[",
           "printf", "ls", "grep", "sed", "head", "tail", "wc", "tr", "cut", "env", "id")  # fmt: skip
"""BusyBox applets a session may run (ps is a shim; pgrep/pkill/top would see the whole machine)."""


def sshd_config_lines(session: Path) -> list[str]:
    """Every session runs `session`; bash (the account's shell, which runs ForceCommand) reads ~/.bashrc
    when sshd starts it unless SHLVL says it is nested, and this machine's ~/.bashrc (slow, and no part
    of a host) must not run."""
    return [f"ForceCommand {session}", "SetEnv SHLVL=1"]


__all__ = ["EsxiSshd", "SshdUnavailable", "start_esxi_sshd"]


@dataclass
class EsxiSshd:
    """A running sshd serving simulated hosts; the paths and processes tests look at."""

    sshd: OpenSshd
    root: Path
    tier: str
    hosts: dict[str, int]
    isolated_pid_dir: bool
    inventory: Path
    programs: ProgramServer

    def pid_dir(self, host: str) -> Path:
        """The host's /tmp/esxcap as its sessions see it."""
        return self.root / "hosts" / host / "esxcap" if self.isolated_pid_dir else Path(PID_DIR)

    def pidfiles(self, host: str) -> dict[str, int]:
        """esxcap's pidfiles on the host: marker -> pktcap-uw's PID."""
        return {marker: pids[0] for marker, pids in self.pidfile_pids(host).items()}

    def pidfile_pids(self, host: str) -> dict[str, list[int]]:
        """esxcap's pidfiles on the host, complete ones only: marker -> [pktcap-uw's PID, its watcher's]."""
        found = {}
        for path in self.pid_dir(host).glob("*.pid"):
            words = path.read_text(errors="replace").split()
            if len(words) == 2 and all(w.isdigit() for w in words):
                found[path.stem] = [int(w) for w in words]
        return found

    def remove_pidfiles(self) -> dict[str, dict[str, int]]:
        """Remove every host's pidfiles; returns what there was (host -> marker -> PID)."""
        found = {host: self.pidfiles(host) for host in self.hosts}
        for host, markers in found.items():
            for marker in markers:
                (self.pid_dir(host) / f"{marker}.pid").unlink(missing_ok=True)
        return {host: markers for host, markers in found.items() if markers}

    def processes(self, host: str | None = None) -> list[TierProcess]:
        return [p for p in tier_processes(self.tier) if host is None or p.host == host]

    def pktcaps(self, host: str | None = None) -> list[TierProcess]:
        """The real pktcap-uw shim processes running for the host (or any host)."""
        return [p for p in self.processes(host) if p.name == "pktcap-uw"]

    def ssh_argv(self, host: str) -> list[str]:
        """OpenSSH's client to the host; append the remote command line."""
        return self.sshd.ssh_argv(port=self.hosts[host])

    def leftovers(self, wait: float) -> list[TierProcess]:
        """Processes of the tier still running after `wait` seconds; each is killed."""
        deadline = time.monotonic() + wait
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in left:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        return left

    def stop(self) -> None:
        self.sshd.stop()
        self.programs.stop()
        shutil.rmtree(self.programs.socket_path.parent, ignore_errors=True)
        self.leftovers(0)


def _session_script(
    root: Path, tier: str, hosts: dict[str, int], topology: Path, socket: Path, isolated: bool
) -> str:
    cases = "".join(f"  {port}) host={name} ;;\n" for name, port in hosts.items())
    inner = f'exec {BUSYBOX} sh -c "$SSH_ORIGINAL_COMMAND"'
    if isolated:
        unshare, mount = shutil.which("unshare"), shutil.which("mount")
        run = (
            f"exec {unshare} --mount {BUSYBOX} sh -c "
            f'\'{mount} --bind "$1" {PID_DIR} && {inner}\' session "{root}/hosts/$host/esxcap"'
        )
    else:
        run = inner
    return (
        "#!/bin/sh\n"
        'case "${SSH_CONNECTION##* }" in\n'
        f"{cases}"
        '  *) echo "no simulated host on this port" >&2; exit 1 ;;\n'
        "esac\n"
        'if [ -z "$SSH_ORIGINAL_COMMAND" ]; then\n'
        '  echo "interactive shells are not simulated; run a command" >&2; exit 1\n'
        "fi\n"
        f"export {HOST_ENV}=$host {TOPOLOGY_ENV}={topology} {TIER_ENV}={tier} {SOCKET_ENV}={socket} "
        f"PATH={root / 'shims'}:{root / 'bin'}\n"
        f"{run}\n"
    )


def _can_isolate_pid_dir(root: Path) -> bool:
    """Whether a session may bind its own directory over /tmp/esxcap in a mount namespace of its own
    (the mount point is created on the machine: an empty directory)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if unshare is None or mount is None:
        return False
    probe = root / "probe"
    probe.mkdir(exist_ok=True)
    try:
        Path(PID_DIR).mkdir(mode=0o755, exist_ok=True)
    except OSError:
        return False
    result = subprocess.run(
        [unshare, "--mount", BUSYBOX, "sh", "-c", f'{mount} --bind "$1" {PID_DIR}', "probe", str(probe)],
        check=False,
        capture_output=True,
        timeout=10,
    )
    return result.returncode == 0


def _inventory(sshd: OpenSshd, hosts: dict[str, int]) -> dict[str, Any]:
    return {
        "defaults": {
            "username": sshd.user,
            "known_hosts": str(sshd.known_hosts),
            "identity_file": str(sshd.client_key),
        },
        "hosts": {name: {"hostname": "127.0.0.1", "port": port} for name, port in hosts.items()},
    }


def start_esxi_sshd(workdir: Path, topology: dict[str, Any], hosts: Sequence[str]) -> EsxiSshd:
    """Start sshd serving `hosts` of `topology` (a dict shaped like the topology YAML).

    Raises SshdUnavailable when sshd or BusyBox is missing (the message says how to install them).
    """
    if not Path(BUSYBOX).exists():
        raise SshdUnavailable(f"{BUSYBOX} not found; install BusyBox: apt-get install busybox")
    workdir.mkdir(parents=True, exist_ok=True)
    topology_file = workdir / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(topology), encoding="utf-8")
    write_launchers(workdir / "shims", sys.executable)
    applets = workdir / "bin"
    applets.mkdir(exist_ok=True)
    for applet in APPLETS:
        (applets / applet).symlink_to(BUSYBOX)
    for host in hosts:
        (workdir / "hosts" / host / "esxcap").mkdir(parents=True, exist_ok=True)
    isolated = _can_isolate_pid_dir(workdir)
    tier = secrets.token_hex(8)
    socket = Path(tempfile.mkdtemp(prefix="esxsim-")) / "programs.sock"  # AF_UNIX paths: < 108 bytes
    programs = ProgramServer(socket)
    session = workdir / "session.sh"
    try:
        sshd = OpenSshd.start(workdir / "sshd", ports=len(hosts), extra_config=sshd_config_lines(session))
    except SshdUnavailable:
        programs.stop()
        raise
    by_name = dict(zip(hosts, sshd.ports, strict=True))
    script = _session_script(workdir, tier, by_name, topology_file, socket, isolated)
    session.write_text(script, encoding="utf-8")
    session.chmod(0o755)
    inventory = workdir / "inventory.yaml"
    fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(_inventory(sshd, by_name), handle)
    return EsxiSshd(sshd, workdir, tier, by_name, isolated, inventory, programs)
