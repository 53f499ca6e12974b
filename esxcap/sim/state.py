"""The simulator's state dir: generated keys, `known_hosts` and a ready-to-use `inventory.yaml`.

Layout (paths in the inventory are relative to the state dir):
  inventory.yaml, known_hosts, client_key (+ .pub, ECDSA nistp256: old ESXi refuses ed25519),
  hostkeys/<host>/ssh_host_ecdsa_key, hostkeys/<host>/ssh_host_rsa_key.
Keys are generated on first use and reused afterwards, so a restarted simulator keeps its identity.
A host certificate placed next to its key (`ssh_host_ecdsa_key-cert.pub`, as sshd's HostCertificate)
is served too.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from esxcap.errors import ConfigError

INVENTORY = "inventory.yaml"
KNOWN_HOSTS = "known_hosts"
CLIENT_KEY = "client_key"
LOCK = ".simulator.lock"
HOST_KEY_TYPES = (("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "ssh-rsa"))
RSA_BITS = 2048


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file only its owner can read (keys; the inventory, which esxcap expects to be 0600),
    never through a link someone placed in the state folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)


def lock(state_dir: Path) -> int:
    """Hold the state folder for one simulator: a second one would rewrite the keys and inventory the
    first is serving. Returns the lock's descriptor (closed with the simulator)."""
    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(
            f"state folder {state_dir} is a file", "give the simulator a folder with --state-dir DIR"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"state folder {state_dir} is in use by another simulator (pid {holder})",
            "stop that one (Ctrl-C), or give this one its own --state-dir",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _load_or_generate(path: Path, alg: str) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(path)
    key = (
        asyncssh.generate_private_key(alg, key_size=RSA_BITS)
        if alg == "ssh-rsa"
        else (asyncssh.generate_private_key(alg))
    )
    _write_private(path, key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key


def client_key(state_dir: Path) -> asyncssh.SSHKey:
    """The client key authorized for root on every simulated host."""
    return _load_or_generate(state_dir / CLIENT_KEY, "ecdsa-sha2-nistp256")


def host_keys(state_dir: Path, host: str, legacy: bool) -> list[asyncssh.SSHKey]:
    """A host's keys: ECDSA and RSA, or only RSA for a 5.x / 6.0 persona (which offers only ssh-rsa)."""
    keys = []
    for kind, alg in HOST_KEY_TYPES:
        if legacy and kind != "rsa":
            continue
        keys.append(_load_or_generate(state_dir / "hostkeys" / host / f"ssh_host_{kind}_key", alg))
    return keys


def host_certificates(state_dir: Path, host: str) -> list[asyncssh.SSHCertificate]:
    """The host certificates placed next to a host's keys (none unless someone signed one)."""
    folder = state_dir / "hostkeys" / host
    return [asyncssh.read_certificate(path) for path in sorted(folder.glob("ssh_host_*_key-cert.pub"))]


def known_hosts_text(entries: Sequence[tuple[int, Sequence[asyncssh.SSHKey]]]) -> str:
    """`[127.0.0.1]:PORT keytype base64` per host key."""
    lines = []
    for port, keys in entries:
        for key in keys:
            public = key.export_public_key("openssh").decode().split()
            lines.append(f"[127.0.0.1]:{port} {public[0]} {public[1]}")
    return "".join(line + "\n" for line in lines)


def inventory_text(hosts: Sequence[tuple[str, int]]) -> str:
    """The inventory for (name, port) pairs; host names are plain (letters, digits, `._-`)."""
    lines = [
        "defaults:",
        "  username: root",
        "  port: 22",
        f"  known_hosts: {KNOWN_HOSTS}",
        f"  identity_file: {CLIENT_KEY}",
        "groups:",
        "  sim:",
        "    port: 22",
        "hosts:",
    ]
    for name, port in hosts:
        lines += [f"  {name}:", "    hostname: 127.0.0.1", f"    port: {port}", "    groups: [sim]"]
    return "".join(line + "\n" for line in lines)


def write_state(
    state_dir: Path, hosts: Sequence[tuple[str, int, Sequence[asyncssh.SSHKey]]]
) -> tuple[Path, Path]:
    """Write known_hosts and inventory.yaml for (name, port, host keys) entries; return their paths."""
    known = state_dir / KNOWN_HOSTS
    _write_private(known, known_hosts_text([(port, keys) for _, port, keys in hosts]).encode(), 0o644)
    inventory = state_dir / INVENTORY
    _write_private(inventory, inventory_text([(name, port) for name, port, _ in hosts]).encode())
    return inventory, known
