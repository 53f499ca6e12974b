"""What paramiko is taught so that it talks to every ESXi version for long streams: the SHA-1 algorithms
ESXi 5.5/6.0 need (group14-sha1 / gex-sha1 key exchange, ssh-rsa host keys) added back and offered after
everything newer, re-key thresholds raised (paramiko's default re-keys every 512 MiB and could stall
there), one ssh-userauth service request per connection, and private keys read through `cryptography`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from hashlib import sha1
from pathlib import Path
from typing import Any, ClassVar

import paramiko
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.kex_gex import KexGexSHA256
from paramiko.kex_group14 import KexGroup14SHA256

from esxcap.ssh.transport import common

REKEY_LIMIT = 2**40
"""Bytes and packets between client-side re-keys (paramiko's 2**29 stalled long streams)."""


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


def auth_step(t: paramiko.Transport, method: str, *args: Any) -> None:
    """One login attempt (`auth_none`, `auth_publickey`, ...) through `_AuthHandler`; raises
    paramiko.AuthenticationException when refused."""
    done = threading.Event()
    t.auth_handler = handler = _AuthHandler(t)
    getattr(handler, method)(*args, done)
    handler.wait_for_response(done)


class EsxiTransport(paramiko.Transport):  # type: ignore[misc]
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


def load_key(path: Path) -> paramiko.PKey:
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


def set_preferences(
    transport: paramiko.Transport, configured: Mapping[str, str], known_key_types: Sequence[str]
) -> None:
    """Our preference lists, less what this paramiko lacks; a list set in ~/.ssh/config (`configured`:
    ciphers, kexalgorithms, macs) replaces ours."""
    options = transport.get_security_options()
    lists: dict[str, tuple[str, Sequence[str], dict[str, Any]]] = {
        "ciphers": ("ciphers", common.ENCRYPTION + common.ENCRYPTION_OLD, EsxiTransport._cipher_info),
        "kexalgorithms": ("kex", common.KEX + common.KEX_OLD, EsxiTransport._kex_info),
        "macs": ("digests", common.MAC + common.MAC_OLD, EsxiTransport._mac_info),
        "": ("key_types", common.host_key_preference(known_key_types), EsxiTransport._key_info),
    }
    for config_key, (attr, ours, available) in lists.items():
        wanted = configured.get(config_key, "")
        names = wanted.split(",") if wanted and wanted[0] not in "+-^" else ours
        setattr(options, attr, [n for n in names if n in available])
