"""asyncssh's receive path, made cheaper for long streams: the client's buffer is fed one SSH packet at a
time, and AES-GCM packets are decrypted with one copy fewer.

asyncssh keeps received bytes in an immutable `bytes` buffer (`_inpbuf`) and takes each packet off its
front by slicing, which re-copies everything still behind that packet. Whenever the client is busy (during
every fast capture) the socket hands over 256 KiB at once, eight 32 KiB packets from OpenSSH's sshd, and
each chunk was copied about 4.5 times over: 0.3 to 0.4 of the 2.3 CPU seconds a 1 GiB capture took.

`install()` replaces `SSHClientConnection.data_received` (append the chunk, run the parser) by one that
hands the chunk to asyncssh's own parser in the pieces that parser is waiting for: the rest of the current
packet header, then the rest of the packet. Each piece is consumed whole, so nothing behind it is copied
again. Parsing, decryption, MAC checks and dispatch stay asyncssh's. Where a state is not recognised (the
version exchange, a packet whose handler is still running) the rest of the chunk is handed over at once,
as asyncssh itself does.

asyncssh decrypts an AES-GCM packet after gluing its pieces together twice (body to the rest of the first
block, then the tag): one join does (6 % of the client's instructions for a stream, counted by callgrind).

An asyncssh whose code does not read as these expect (asyncssh 2.24 does) is left untouched.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHClientConnection, SSHConnection
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_ORIGINAL = SSHConnection.data_received
_THEIR_GCM_DECRYPT = GCMEncryption.decrypt_packet
_HEADER = getattr(SSHConnection, "_recv_pkthdr", None)
_BODY = getattr(SSHConnection, "_recv_packet", None)
_STEPS = (
    (_HEADER, {"_inpbuf", "_recv_blocksize", "_pktlen", "_recv_handler"}),
    (_BODY, {"_inpbuf", "_recv_blocksize", "_pktlen", "_recv_macsize", "_recv_handler"}),
)
"""The parser's two steps, and the attributes of theirs that `data_received` reads to size each piece."""


def data_received(conn: Any, data: bytes, datatype: object = None) -> None:
    """asyncssh's data_received, with `data` handed to the parser a packet at a time."""
    pos, end = 0, len(data)
    while pos < end:
        step = getattr(conn._recv_handler, "__func__", None)
        if step is _HEADER:
            want = conn._recv_blocksize - len(conn._inpbuf)
        elif step is _BODY:
            want = 4 + conn._pktlen + conn._recv_macsize - conn._recv_blocksize - len(conn._inpbuf)
        else:
            want = 0
        take = end - pos if want <= 0 else min(want, end - pos)
        conn._inpbuf += data if take == end else data[pos : pos + take]
        pos += take
        conn._recv_data()
        if conn._transport is None and pos < end:
            conn._inpbuf += data[pos:]
            return


def decrypt_gcm_packet(
    encryption: Any, seq: int, first: bytes, rest: bytes, header_len: int, mac: bytes
) -> bytes | None:
    """asyncssh's GCMEncryption.decrypt_packet: the packet after the length field, or None when the tag
    does not verify; the invocation counter moves on either way."""
    cipher = encryption._cipher
    try:
        packet: bytes | None = AESGCM(cipher._key).decrypt(
            cipher._iv, b"".join((first[header_len:], rest, mac)), first[:header_len]
        )
    except InvalidTag:
        packet = None
    cipher._update_iv()
    return packet


def _reads_as(function: object, names: set[str]) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and names <= set(code.co_names)


def _install_gcm() -> bool:
    if GCMEncryption.decrypt_packet is decrypt_gcm_packet:
        return True
    if not (
        GCMEncryption.decrypt_packet is _THEIR_GCM_DECRYPT
        and _reads_as(_THEIR_GCM_DECRYPT, {"_cipher", "verify_and_decrypt"})
        and _reads_as(
            GCMCipher.verify_and_decrypt, {"AESGCM", "_key", "_iv", "decrypt", "InvalidTag", "_update_iv"}
        )
    ):
        return False
    setattr(GCMEncryption, "decrypt_packet", decrypt_gcm_packet)  # noqa: B010 (mypy: a method)
    return True


def _install_feeding() -> bool:
    if SSHClientConnection.__dict__.get("data_received") is data_received:
        return True
    if SSHClientConnection.data_received is not _ORIGINAL or _ORIGINAL.__code__.co_names != (
        "_inpbuf",
        "_recv_data",
    ):
        return False
    if not all(_reads_as(step, names) for step, names in _STEPS):
        return False
    setattr(SSHClientConnection, "data_received", data_received)  # noqa: B010 (mypy: a method)
    return True


def install() -> bool:
    """Make asyncssh's receive path cheaper (see above), where its code is as expected; True when both
    changes are in place (now or before)."""
    gcm = _install_gcm()
    return _install_feeding() and gcm
