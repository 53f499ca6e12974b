"""known_hosts bookkeeping shared by the transports: entry patterns, recording a newly trusted key, and the
messages that refuse an unknown or changed key with the exact next step.

No SSH library here: transports hand over the key's type, fingerprint and OpenSSH public-key text.
"""

from __future__ import annotations

import os
from pathlib import Path

from esxcap.errors import HostKeyError

DEFAULT_PORT = 22


def known_hosts_pattern(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host` on port 22, `[host]:port` otherwise."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def record_host_key(path: Path, host: str, port: int, public_key: str) -> None:
    """Append `pattern keytype base64` to known_hosts, creating it (0600, folder 0700) if missing."""
    fields = public_key.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key: {public_key!r}")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        needs_newline = False
        if size:
            f.seek(size - 1)
            needs_newline = f.read(1) != b"\n"
        line = f"{known_hosts_pattern(host, port)} {fields[0]} {fields[1]}\n"
        f.write((("\n" if needs_newline else "") + line).encode("ascii"))


def unknown_key_error(
    label: str, name: str, host: str, port: int, key_type: str, fingerprint: str, known_hosts: Path
) -> HostKeyError:
    return HostKeyError(
        f"{label}: unknown host key: {key_type} {fingerprint} is not in {known_hosts}",
        f"if this fingerprint is the host's (on the host: for f in /etc/ssh/ssh_host_*_key.pub; "
        f"do ssh-keygen -lf $f; done), trust it with: esxcap discover {name} --accept-new  "
        f"(or: ssh-keyscan -p {port} {host} >> {known_hosts}, then compare the fingerprint)",
    )


def changed_key_error(
    label: str,
    host: str,
    port: int,
    key_type: str,
    fingerprint: str,
    known_hosts: Path,
    known_types: list[str],
) -> HostKeyError:
    pattern = known_hosts_pattern(host, port)
    return HostKeyError(
        f"{label}: HOST KEY CHANGED: the host presented {key_type} {fingerprint}, but {known_hosts} holds "
        f"a different key for {pattern} ({', '.join(known_types)}); refusing to connect",
        "a reinstalled host gets new keys, but so does someone intercepting the connection; "
        "--accept-new never replaces a key. If the change is expected, remove the old entry with: "
        f"ssh-keygen -R '{pattern}' -f {known_hosts}  and connect again with --accept-new",
    )
