"""known_hosts as OpenSSH reads it, and the one verdict on a presented host key that both transports follow.

Entries are matched by name, IP or `[name]:port`, hashed (`|1|salt|hash`) or by pattern (`*`, `?`, and
`!` negation, case-insensitive); `@revoked` refuses a key whatever else lists it; `@cert-authority`
vouches for host certificates it signed for a matching name. Lines that cannot be read are skipped, as
OpenSSH does.

Lookup is by name only, like OpenSSH's default `CheckHostIP no`: the name is what ssh would connect to
(the ssh_config HostName, else the inventory hostname), `[name]:port` off port 22. An entry for the
host's IP address does not vouch for its DNS name, and a DNS change cannot make a key trusted or
changed; revocations are checked against the address too, since refusing a revoked key is always safe.

No SSH library and no I/O here: transports hand over the presented key's wire blob and, for a host
certificate, its parsed fields once their SSH library has checked the CA's signature.
"""

from __future__ import annotations

import base64
import binascii
import enum
import fnmatch
import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_PORT = 22
HASH_MAGIC = "|1|"
CERT_SUFFIX = "-cert-v01@openssh.com"
CERT_TYPE_HOST = 2
CERTIFICATES = "certificates"
"""In `KnownHosts.host_key_types`: ask for host certificates first (a certificate authority is listed)."""


def lookup_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host` (lower case, as ssh looks it up and hashes it) on
    port 22, `[host]:port` otherwise."""
    host = host.lower()
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


class Marker(enum.Enum):
    NONE = ""
    REVOKED = "@revoked"
    CERT_AUTHORITY = "@cert-authority"


@dataclass(frozen=True)
class KnownHostLine:
    """One readable known_hosts line: its marker, host patterns, key type and key blob."""

    line_no: int
    marker: Marker
    patterns: str
    key_type: str
    key_blob: bytes

    def matches(self, names: Iterable[str]) -> bool:
        return any(host_matches(self.patterns, name) for name in names)


def host_matches(patterns: str, name: str) -> bool:
    """Whether a known_hosts host field lists `name`: a hashed entry, or comma-separated patterns of
    which one matches and no negated one does."""
    if patterns.startswith(HASH_MAGIC):
        return _hashed_matches(patterns, name)
    name = name.lower()
    matched = False
    for pattern in patterns.lower().split(","):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, _glob(pattern[1:] if negated else pattern)):
            if negated:
                return False
            matched = True
    return matched


def _glob(pattern: str) -> str:
    """An OpenSSH pattern (only `*` and `?` are special) as an fnmatch pattern."""
    return "".join(f"[{c}]" if c in "[]" else c for c in pattern)


def _hashed_matches(field: str, name: str) -> bool:
    parts = field[len(HASH_MAGIC) :].split("|")
    if len(parts) != 2:
        return False
    try:
        salt, digest = base64.b64decode(parts[0], validate=True), base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def hashed_name(name: str, salt: bytes) -> str:
    """`name` hashed as `ssh-keygen -H` writes it."""
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"{HASH_MAGIC}{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def parse_known_hosts(text: str) -> list[KnownHostLine]:
    """Every readable line of a known_hosts file; comments, blank and unreadable lines are skipped."""
    lines: list[KnownHostLine] = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = Marker.NONE
        if fields[0].startswith("@"):
            known = {m.value: m for m in Marker if m is not Marker.NONE}
            if fields[0].lower() not in known:
                continue
            marker = known[fields[0].lower()]
            fields = fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except binascii.Error:
            continue
        if _wire_strings(blob, 1)[:1] != [fields[1].encode()]:
            continue
        lines.append(KnownHostLine(line_no, marker, fields[0], fields[1], blob))
    return lines


def _wire_strings(data: bytes, count: int) -> list[bytes]:
    """The first `count` SSH wire strings of `data` (fewer if it ends early)."""
    out: list[bytes] = []
    offset = 0
    while len(out) < count and offset + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        if offset + 4 + size > len(data):
            break
        out.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return out


@dataclass(frozen=True)
class HostCertificate:
    """The fields of an OpenSSH host certificate that decide whether it vouches for a name."""

    key_blob: bytes
    """The certified public key, as a plain key's wire blob."""
    cert_type: int
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    ca_blob: bytes


class Verdict(enum.Enum):
    """What the known_hosts lines say about a presented key for a name."""

    TRUSTED = "trusted"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    REVOKED = "revoked"
    CA_REVOKED = "CA revoked"
    CERT_INVALID = "certificate invalid"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    known_types: tuple[str, ...] = ()
    """For CHANGED: the key types listed for the name."""
    reason: str = ""


class KnownHosts:
    """The lines of one known_hosts file, asked about one host at a time."""

    def __init__(self, lines: Sequence[KnownHostLine]) -> None:
        self.lines = tuple(lines)

    @classmethod
    def from_text(cls, text: str) -> KnownHosts:
        return cls(parse_known_hosts(text))

    def _for(self, marker: Marker, names: Iterable[str]) -> list[KnownHostLine]:
        wanted = list(names)
        return [line for line in self.lines if line.marker is marker and line.matches(wanted)]

    def keys(self, name: str) -> list[KnownHostLine]:
        """The plain (unmarked) lines listing `name`."""
        return self._for(Marker.NONE, [name])

    def authorities(self, name: str) -> list[KnownHostLine]:
        """The @cert-authority lines listing `name`."""
        return self._for(Marker.CERT_AUTHORITY, [name])

    def revoked(self, key_blob: bytes, names: Iterable[str]) -> bool:
        return any(line.key_blob == key_blob for line in self._for(Marker.REVOKED, names))

    def revoked_blobs(self, names: Iterable[str]) -> list[bytes]:
        return [line.key_blob for line in self._for(Marker.REVOKED, names)]

    def check_key(self, name: str, key_blob: bytes, address: str | None = None) -> Decision:
        """The verdict on a plain host key presented for `name` (a lookup_name) at `address`."""
        if self.revoked(key_blob, _with_address(name, address)):
            return Decision(Verdict.REVOKED)
        listed = self.keys(name)
        if any(line.key_blob == key_blob for line in listed):
            return Decision(Verdict.TRUSTED)
        if listed:
            return Decision(Verdict.CHANGED, tuple(sorted({line.key_type for line in listed})))
        return Decision(Verdict.UNKNOWN)

    def check_authority(self, name: str, ca_blob: bytes, address: str | None = None) -> Decision:
        """Whether a certificate authority's key vouches for `name` (its signature already checked)."""
        if self.revoked(ca_blob, _with_address(name, address)):
            return Decision(Verdict.CA_REVOKED)
        if any(line.key_blob == ca_blob for line in self.authorities(name)):
            return Decision(Verdict.TRUSTED)
        return Decision(Verdict.UNKNOWN, reason="its certificate authority is not listed for this host")

    def check_certificate(
        self, name: str, host: str, cert: HostCertificate, now: float, address: str | None = None
    ) -> Decision:
        """The verdict on a host certificate for `host` (principal) known as `name`, as OpenSSH gives it:
        revoked key or CA refuse; a listed CA vouches if the certificate is a valid host certificate for
        `host`; a certificate from an unlisted CA is judged by its plain key."""
        if self.revoked(cert.key_blob, _with_address(name, address)):
            return Decision(Verdict.REVOKED)
        authority = self.check_authority(name, cert.ca_blob, address)
        if authority.verdict is Verdict.UNKNOWN:
            return self.check_key(name, cert.key_blob, address)
        if authority.verdict is not Verdict.TRUSTED:
            return authority
        problem = certificate_problem(cert, host, now)
        return Decision(Verdict.CERT_INVALID, reason=problem) if problem else authority

    def host_key_types(self, name: str) -> list[str]:
        """Key types to ask the host for first: CERTIFICATES when a CA is listed, then the listed keys'."""
        wanted = [CERTIFICATES] if self.authorities(name) else []
        return list(dict.fromkeys(wanted + [line.key_type for line in self.keys(name)]))


def _with_address(name: str, address: str | None) -> list[str]:
    if not address:
        return [name]
    port = name.rpartition("]:")[2] if name.startswith("[") else ""
    return [name, f"[{address}]:{port}" if port else address]


def certificate_problem(cert: HostCertificate, host: str, now: float) -> str:
    """Why a CA-signed certificate does not vouch for `host` now ("" when it does)."""
    if cert.cert_type != CERT_TYPE_HOST:
        return "it is not a host certificate"
    if cert.principals and host.lower() not in (p.lower() for p in cert.principals):
        return f"it is not issued for {host} (principals: {', '.join(cert.principals)})"
    if not cert.valid_after <= now < cert.valid_before:
        return "it is not valid now"
    return ""


def key_blob_type(blob: bytes) -> str:
    """The type name a key (or certificate) wire blob starts with."""
    return b"".join(_wire_strings(blob, 1)).decode("ascii", "replace")


def is_certificate(blob: bytes) -> bool:
    """Whether a host key wire blob is an OpenSSH certificate."""
    return key_blob_type(blob).endswith(CERT_SUFFIX)


def parse_certificate(blob: bytes) -> tuple[HostCertificate, bytes, bytes]:
    """An OpenSSH certificate's fields, the bytes its CA signed, and the signature blob.
    ValueError if it is not one."""
    reader = _Reader(blob)
    cert_type_name = reader.string().decode("ascii", "replace")
    if not cert_type_name.endswith(CERT_SUFFIX):
        raise ValueError(f"not an OpenSSH certificate: {cert_type_name}")
    key_type = cert_type_name.removesuffix(CERT_SUFFIX)
    reader.string()  # nonce
    key_start = reader.offset
    for _ in range(_KEY_FIELDS.get(key_type, 0) or _unsupported(key_type)):
        reader.string()
    key_fields = blob[key_start : reader.offset]
    key_blob = struct.pack(">I", len(key_type)) + key_type.encode() + key_fields
    reader.uint64()  # serial
    cert_type = reader.uint32()
    reader.string()  # key id
    principals = tuple(p.decode("utf-8", "replace") for p in _Reader(reader.string()).strings())
    valid_after, valid_before = reader.uint64(), reader.uint64()
    for _ in range(3):  # critical options, extensions, reserved
        reader.string()
    ca_blob = reader.string()
    signed = blob[: reader.offset]
    signature = reader.string()
    cert = HostCertificate(key_blob, cert_type, principals, valid_after, valid_before, ca_blob)
    return cert, signed, signature


_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "ssh-rsa": 2,
}


def _unsupported(key_type: str) -> int:
    raise ValueError(f"unsupported certificate key type {key_type}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ValueError("certificate ends early")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def string(self) -> bytes:
        return self._take(self.uint32())

    def strings(self) -> list[bytes]:
        out = []
        while self.offset < len(self.data):
            out.append(self.string())
        return out
