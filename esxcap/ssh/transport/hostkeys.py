"""Acting on a known_hosts verdict, the same way on both transports: a trusted key passes, an unknown one
is recorded only with --accept-new, and every refusal names the key, the file and the exact next step.

No SSH library here: transports hand over the key's type, fingerprint and OpenSSH public-key text, and the
verdict from `known_hosts.KnownHosts`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from esxcap.errors import HostKeyError
from esxcap.ssh.transport.known_hosts import Decision, KnownHosts, Verdict, key_blob_type, lookup_name


def load_known_hosts(path: Path) -> KnownHosts:
    """The file's readable lines; none when it does not exist."""
    try:
        return KnownHosts.from_text(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return KnownHosts(())
    except OSError as exc:
        raise HostKeyError(
            f"cannot read known_hosts {path}: {exc.strerror}", "check the file's permissions"
        ) from exc


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
        line = f"{lookup_name(host, port)} {fields[0]} {fields[1]}\n"
        f.write((("\n" if needs_newline else "") + line).encode("ascii"))


@dataclass(frozen=True)
class PresentedKey:
    """What the host showed, for messages and for recording: `public_key` is the plain key as
    `type base64` (for a certificate: the key it certifies)."""

    key_type: str
    fingerprint: str
    public_key: str

    @classmethod
    def from_blob(cls, blob: bytes) -> PresentedKey:
        """A plain key from its wire blob: `SHA256:...` fingerprint as ssh-keygen -l shows it."""
        key_type = key_blob_type(blob)
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return cls(key_type, f"SHA256:{digest}", f"{key_type} {base64.b64encode(blob).decode()}")


@dataclass(frozen=True)
class HostKeyCheck:
    """One connection's host key check: which host, which file, whether new keys may be recorded."""

    label: str
    inventory_name: str
    target: str
    port: int
    path: Path
    accept_new: bool

    @property
    def name(self) -> str:
        return lookup_name(self.target, self.port)

    def settle(self, decision: Decision, key: PresentedKey) -> None:
        """Return if the key may be used (recording an unknown one with accept_new); else HostKeyError."""
        if decision.verdict is Verdict.TRUSTED:
            return
        if decision.verdict is Verdict.UNKNOWN and self.accept_new:
            record_host_key(self.path, self.target, self.port, key.public_key)
            return
        raise self.refusal(decision, key)

    def refusal(self, decision: Decision, key: PresentedKey) -> HostKeyError:
        shown = f"{key.key_type} {key.fingerprint}"
        if decision.verdict is Verdict.REVOKED:
            return HostKeyError(
                f"{self.label}: REVOKED HOST KEY: the host presented {shown}, which {self.path} marks "
                "@revoked; refusing to connect",
                "a revoked key is never trusted again, whatever else lists it (--accept-new included); "
                "give the host a new key and list that one",
            )
        if decision.verdict is Verdict.CA_REVOKED:
            return HostKeyError(
                f"{self.label}: the host presented a certificate {shown} signed by a certificate authority "
                f"that {self.path} marks @revoked; refusing to connect",
                "have the host's certificate reissued by a trusted authority",
            )
        if decision.verdict is Verdict.CERT_INVALID:
            return HostKeyError(
                f"{self.label}: the host's certificate {shown} is signed by a listed certificate authority, "
                f"but {decision.reason}; refusing to connect",
                f"have the certificate reissued for {self.target}, or list the host's key in {self.path}",
            )
        if decision.verdict is Verdict.CHANGED:
            return HostKeyError(
                f"{self.label}: HOST KEY CHANGED: the host presented {shown}, but {self.path} holds a "
                f"different key for {self.name} ({', '.join(decision.known_types)}); refusing to connect",
                "a reinstalled host gets new keys, but so does someone intercepting the connection; "
                "--accept-new never replaces a key. If the change is expected, remove the old entry with: "
                f"ssh-keygen -R '{self.name}' -f {self.path}  and connect again with --accept-new",
            )
        why = f" ({decision.reason})" if decision.reason else ""
        return HostKeyError(
            f"{self.label}: unknown host key: {shown} is not in {self.path}{why}",
            f"if this fingerprint is the host's (on the host: for f in /etc/ssh/ssh_host_*_key.pub; "
            "do ssh-keygen -lf $f; done), trust it with: "
            f"esxcap discover {self.inventory_name} --accept-new  "
            f"(or: ssh-keyscan -p {self.port} {self.target} >> {self.path}, then compare the fingerprint)",
        )
