"""asyncssh's AES-GCM packets decrypted by esxcap.transport.asyncssh_receive give what asyncssh's own code
gives: the same plaintext, None for a packet whose tag or header was altered, and the same invocation
counter afterwards (so the packet after a rejected one still decrypts). Streams through the receive path
are checked end to end in test_long_streams.py."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from esxcap.transport import asyncssh_receive
from esxcap.transport.asyncssh_receive import decrypt_gcm_packet

ASYNCSSH_DECRYPT = asyncssh_receive._THEIR_GCM_DECRYPT


def sealed_packets(alg: bytes, key: bytes, iv: bytes, payloads: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Each payload as asyncssh sends it: (length header + encrypted padded body, tag)."""
    from asyncssh.encryption import get_encryption  # noqa: TID251 (the peer is asyncssh's own code)

    sender = get_encryption(alg, key, iv)
    sealed = []
    for seq, payload in enumerate(payloads):
        pad = 16 - (1 + len(payload)) % 16 + 16
        body = bytes([pad]) + payload + os.urandom(pad)
        sealed.append(sender.encrypt_packet(seq, struct.pack(">I", len(body)), body))
    return sealed


def receiver(alg: bytes, key: bytes, iv: bytes) -> Any:
    from asyncssh.encryption import get_encryption  # noqa: TID251

    return get_encryption(alg, key, iv)


@pytest.mark.parametrize(
    ("alg", "key_len"), [(b"aes128-gcm@openssh.com", 16), (b"aes256-gcm@openssh.com", 32)]
)
def test_gcm_decrypt_matches_asyncssh(alg: bytes, key_len: int) -> None:
    key, iv = os.urandom(key_len), os.urandom(12)
    payloads = [os.urandom(n) for n in (0, 1, 15, 16, 1000, 32768, 7)]
    packets = sealed_packets(alg, key, iv, payloads)
    ours, theirs = receiver(alg, key, iv), receiver(alg, key, iv)
    for seq, (payload, (packet, sent_tag)) in enumerate(zip(payloads, packets, strict=True)):
        damaged = seq in (2, 5)
        tag = bytes([sent_tag[0] ^ 1]) + sent_tag[1:] if damaged else sent_tag
        first, rest = packet[:16], packet[16:]
        got = decrypt_gcm_packet(ours, seq, first, rest, 4, tag)
        expected = ASYNCSSH_DECRYPT(theirs, seq, first, rest, 4, tag)
        assert got == expected
        if damaged:
            assert got is None
        else:
            assert got is not None
            assert got[1 : 1 + len(payload)] == payload


def test_an_altered_length_header_is_rejected() -> None:
    key, iv = os.urandom(16), os.urandom(12)
    ((packet, tag),) = sealed_packets(b"aes128-gcm@openssh.com", key, iv, [b"x" * 100])
    altered = struct.pack(">I", struct.unpack(">I", packet[:4])[0] ^ 0x10) + packet[4:]
    ours = receiver(b"aes128-gcm@openssh.com", key, iv)
    assert decrypt_gcm_packet(ours, 0, altered[:16], altered[16:], 4, tag) is None
