"""asyncssh's client receive path, made cheaper for long streams (a capture is 32 768 SSH packets per GiB).

1. No copying of what lies behind a packet. asyncssh keeps received bytes in an immutable `bytes` buffer
   (`_inpbuf`) and takes each packet off its front by slicing, which re-copies everything still behind it.
   Whenever the client is busy the socket hands over 256 KiB at once (eight 32 KiB packets from OpenSSH's
   sshd), and each read was copied about 4.5 times over: 0.3 to 0.4 of the 2.3 CPU seconds a 1 GiB capture
   took. `data_received` now hands asyncssh's parser a memoryview of the read once the connection is
   encrypted with AES-GCM (views slice without copying; what is left of a packet cut by the end of the read
   becomes bytes again), and before that, or with other ciphers, the pieces the parser is waiting for: the
   rest of the current packet header, then the rest of the packet.
2. Channel data straight to its channel. The header step first looks for a whole AES-GCM packet in the
   buffer; when it decrypts, and carries channel data for an open channel, the data goes to that channel
   as its own handler (`_process_data`) would hand it on (state and window checked, then `_accept_data`),
   and the packet is finished as asyncssh finishes it. The packet is decrypted into a buffer the connection
   keeps (AESGCM.decrypt_into, where the installed cryptography has it) and the data copied out once: no
   zero-filled new output per packet, no packet and string slices (callgrind, 112 MiB through the
   benchmark's stream: 15.05 -> 12.82 billion instructions per GiB; memset and memcpy 1.1 billion each).
   Data asyncssh's handler would refuse goes to that handler, which refuses it as it does.
   Everything else, including a packet whose tag does not verify or whose padding is short or longer than
   the packet, goes through asyncssh's own steps untouched (nothing is consumed or advanced before the
   fast path commits), and a buffer still held as a view when the cipher has changed (a re-key to another
   cipher mid-read) is made bytes again first.
3. AES-GCM packets asyncssh decrypts itself are joined from their pieces once. This is needed, not only
   cheaper: in view mode asyncssh's steps hand the decrypt views, which its own `+` cannot join.
4. `widen_socket_reads` lets asyncio read 1 MiB at a time where the socket has it (fewer event-loop
   rounds per MiB; 1.86 -> 1.72 CPU s/GiB in the median of 8 interleaved runs here). Only with 1-3 in
   place: asyncssh's own parser re-copies more the bigger the read.

Together these cut the instructions the client spends per streamed byte by 45 % (callgrind, 64 MiB through
the benchmark's stream: 1.83 to 1.0 billion, the pcapng transcoding and writing included).

They stand in for or imitate nine asyncssh functions, written against asyncssh 2.24.1: `install()` puts
them in place only under an asyncssh release they were checked against (CHECKED_VERSIONS) whose source of
each of those functions is exactly what was checked (_CHECKED_SOURCES); anything else leaves asyncssh as it
is (a working, slower client) until the code here is checked again, and `refusal()` says why.
ESXCAP_FAST_RECEIVE=0 in the environment keeps it off. Received channel-data packets taken by the fast path
are not written to asyncssh's packet log, nor logged at its debug level 2.
"""

from __future__ import annotations

import functools
import hashlib
import linecache
import os
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.connection import SSHClientConnection, SSHConnection
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from asyncssh.misc import ProtocolError
from asyncssh.packet import PacketDecodeError, SSHPacket
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_THEIR_DATA_RECEIVED = SSHConnection.data_received
_THEIR_GCM_DECRYPT = GCMEncryption.decrypt_packet
_THEIR_HEADER_STEP = getattr(SSHConnection, "_recv_pkthdr", None)
_THEIR_BODY_STEP = getattr(SSHConnection, "_recv_packet", None)
_DATA_HANDLER = SSHChannel._packet_handlers.get(MSG_CHANNEL_DATA)
_GCM_TAG_LEN = 16
SOCKET_READ = 1 << 20
_MIN_PADDING = 4
PLAIN_BUFFER_SIZE = 1 << 16
"""Bytes of the per-connection buffer packets are decrypted into (grown for a larger packet)."""
_PLAIN_BUFFER = "_esxcap_plain_buffer"

CHECKED_VERSIONS = ("2.24.1",)
"""The asyncssh releases this module was checked against, function by function."""
SWITCH = "ESXCAP_FAST_RECEIVE"
"""The environment variable that turns the fast path off when set to 0."""

_CHECKED_SOURCES = {
    "SSHConnection.data_received": "b2d14a83b2604db6",
    "SSHConnection._recv_data": "fc4e0735191bb0fd",
    "SSHConnection._recv_pkthdr": "7adc4d88fe20593c",
    "SSHConnection._recv_packet": "b3daa22e9763eee9",
    "SSHConnection._finish_recv_packet": "e12d96db58b3524e",
    "GCMEncryption.decrypt_packet": "6feb840baa1102a4",
    "GCMCipher.verify_and_decrypt": "c09eb5b36d0f6a92",
    "GCMCipher._update_iv": "bce250a8d9dc82b6",
    "SSHChannel._process_data": "342490795c4b893c",
}
"""SHA-256 (first 16 hex digits) of the source of each asyncssh function this module stands in for or
imitates, as checked against asyncssh 2.24.1."""
_OWNERS = {
    "SSHConnection": SSHConnection,
    "GCMEncryption": GCMEncryption,
    "GCMCipher": GCMCipher,
    "SSHChannel": SSHChannel,
}

_header_steps: tuple[object, ...] = (_THEIR_HEADER_STEP,)
_view_safe_encryption: type[Any] | None = None
"""The encryption whose packets the parser may take as views of the socket read; set by install() once it
has put everything in place (None: asyncssh runs as it is)."""


def data_received(conn: Any, data: bytes, datatype: object = None) -> None:
    """asyncssh's data_received: hand `data` to the parser without copying what lies behind a packet."""
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        step = getattr(conn._recv_handler, "__func__", None)
        if (
            not conn._inpbuf
            and type(conn._recv_encryption) is _view_safe_encryption
            and (step in _header_steps or step is _THEIR_BODY_STEP)
        ):
            conn._inpbuf = view[pos:]
            pos = end
        else:
            if step in _header_steps:
                want = conn._recv_blocksize - len(conn._inpbuf)
            elif step is _THEIR_BODY_STEP:
                want = 4 + conn._pktlen + conn._recv_macsize - conn._recv_blocksize - len(conn._inpbuf)
            else:
                want = 0
            take = end - pos if want <= 0 else min(want, end - pos)
            conn._inpbuf = bytes(conn._inpbuf) + (data if take == end else data[pos : pos + take])
            pos += take
        conn._recv_data()
        if conn._transport is None and pos < end:
            conn._inpbuf = bytes(conn._inpbuf) + data[pos:]
            break
    if type(conn._inpbuf) is memoryview:
        conn._inpbuf = bytes(conn._inpbuf)
    if type(getattr(conn, "_packet", None)) is memoryview:
        conn._packet = bytes(conn._packet)  # the first block of a packet cut by the read's end


def header_step(conn: Any) -> bool:
    """asyncssh's header step, which first takes a whole AES-GCM channel-data packet to its channel."""
    buf = conn._inpbuf
    if type(buf) is memoryview:
        if type(conn._recv_encryption) is not _view_safe_encryption:
            conn._inpbuf = bytes(buf)  # the cipher changed mid-read: asyncssh's steps need bytes
        elif _take_channel_data(conn, buf):
            return True
    return bool(_THEIR_HEADER_STEP(conn))  # type: ignore[misc]


def _take_channel_data(conn: Any, buf: memoryview) -> bool:
    """Hand the whole AES-GCM channel-data packet at the front of `buf` to its channel and finish it as
    asyncssh does; False, with nothing consumed or advanced, for anything else."""
    if not conn._auth_complete or conn._decompressor is not None or len(buf) <= 4:
        return False
    length = int.from_bytes(buf[:4], "big")
    end = 4 + length + _GCM_TAG_LEN
    if end > len(buf) or length > conn._max_recv_pktlen:
        return False
    cipher = conn._recv_encryption._cipher
    try:
        packet = open_sealed(conn, cipher, buf[4:end], buf[:4])
    except InvalidTag:
        return False
    padding = packet[0]
    if not (_MIN_PADDING <= padding <= length - 6 and packet[1] == MSG_CHANNEL_DATA):
        return False
    channel = conn._channels.get(int.from_bytes(packet[2:6], "big"))
    if channel is None or channel._packet_handlers.get(MSG_CHANNEL_DATA) is not _DATA_HANDLER:
        return False
    cipher._update_iv()
    conn._inpbuf = buf[end:]
    seq = conn._recv_seq
    deliver_channel_data(channel, seq, packet[6 : length - padding])
    conn._finish_recv_packet(MSG_CHANNEL_DATA, seq)
    return True


def decrypt_into_buffer(conn: Any, cipher: Any, sealed: memoryview, header: memoryview) -> memoryview:
    """The packet after the length field, decrypted into `conn`'s own buffer (reused from packet to packet,
    so valid until the next packet): no new, zero-filled output per packet; InvalidTag when the tag does
    not verify."""
    length = len(sealed) - _GCM_TAG_LEN
    buffer: memoryview | None = getattr(conn, _PLAIN_BUFFER, None)
    if buffer is None or len(buffer) < length:
        buffer = memoryview(bytearray(max(length, PLAIN_BUFFER_SIZE)))
        setattr(conn, _PLAIN_BUFFER, buffer)
    plain = buffer[:length]
    AESGCM(cipher._key).decrypt_into(cipher._iv, sealed, header, plain)
    return plain


def decrypt_to_bytes(_conn: Any, cipher: Any, sealed: memoryview, header: memoryview) -> memoryview:
    """decrypt_into_buffer for a cryptography release without AESGCM.decrypt_into: a new output per
    packet."""
    return memoryview(AESGCM(cipher._key).decrypt(cipher._iv, sealed, header))


open_sealed = decrypt_into_buffer if hasattr(AESGCM, "decrypt_into") else decrypt_to_bytes


def deliver_channel_data(channel: Any, seq: int, payload: memoryview) -> None:
    """SSHChannel._process_data for a channel-data packet's `payload` (its string: length, then the
    data), the data copied out of the decrypt's buffer once; anything it would refuse goes to asyncssh's
    own handler, which raises as it does."""
    size = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else -1
    if channel._recv_state == "open" and size == len(payload) - 4 and size <= channel._recv_window:
        channel._accept_data(bytes(payload[4:]))
        return
    try:
        _DATA_HANDLER(channel, MSG_CHANNEL_DATA, seq, SSHPacket(bytes(payload)))  # type: ignore[misc]
    except PacketDecodeError as exc:
        raise ProtocolError(str(exc)) from None


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


@functools.cache
def source_digest(qualname: str) -> str | None:
    """The _CHECKED_SOURCES digest of asyncssh's function `qualname` as installed (the source lines its
    code spans: what `inspect.getsource` gives for these functions, without tokenizing the module, which
    cost 40 ms in front of every command's first connection), None where unreadable."""
    owner, _, name = qualname.partition(".")
    code = getattr(_OWNERS[owner].__dict__.get(name), "__code__", None)
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)
    last = max((end for _start, end, _col, _end_col in code.co_positions() if end is not None), default=0)
    if not lines or last < code.co_firstlineno:
        return None
    return hashlib.sha256("".join(lines[code.co_firstlineno - 1 : last]).encode()).hexdigest()[:16]


def widen_socket_reads(conn: object) -> None:
    """Let asyncio read up to SOCKET_READ bytes at a time from `conn`'s socket (its default, 256 KiB, means
    four event-loop rounds per MiB of a fast stream); a tunnelled connection has no socket of its own."""
    transport = getattr(conn, "_transport", None)
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = SOCKET_READ  # type: ignore[union-attr]


def refusal() -> str | None:
    """Why the fast path stays off in this process; None when it is in place or may be put there."""
    if _view_safe_encryption is not None:
        return None
    if os.environ.get(SWITCH, "").strip() == "0":
        return f"{SWITCH}=0"
    if asyncssh.__version__ not in CHECKED_VERSIONS:
        checked = ", ".join(CHECKED_VERSIONS)
        return f"asyncssh {asyncssh.__version__} is not a release it was checked against ({checked})"
    if (
        SSHClientConnection.data_received is not _THEIR_DATA_RECEIVED
        or getattr(SSHClientConnection, "_recv_pkthdr", None) is not _THEIR_HEADER_STEP
        or GCMEncryption.decrypt_packet is not _THEIR_GCM_DECRYPT
        or _DATA_HANDLER is not SSHChannel.__dict__.get("_process_data")
    ):
        return "other code has replaced asyncssh's receive functions"
    for name, digest in _CHECKED_SOURCES.items():
        if source_digest(name) != digest:
            return f"asyncssh's {name} is not the code it was checked against"
    return None


def state() -> str:
    """The fast path as a user reads it: `asyncssh 2.24.1: fast receive path active` or `... off: <why>`."""
    why = refusal()
    return f"asyncssh {asyncssh.__version__}: fast receive path " + (f"off: {why}" if why else "active")


def install() -> bool:
    """Put the cheaper receive path in place where refusal() has nothing against it; True when it is
    (now or before)."""
    global _header_steps, _view_safe_encryption  # noqa: PLW0603 (set once, by the one installer)
    if _view_safe_encryption is not None:
        return True
    if refusal() is not None:
        return False
    setattr(GCMEncryption, "decrypt_packet", decrypt_gcm_packet)  # noqa: B010 (mypy: a method)
    setattr(SSHClientConnection, "_recv_pkthdr", header_step)  # noqa: B010
    _header_steps = (header_step, _THEIR_HEADER_STEP)
    _view_safe_encryption = GCMEncryption
    setattr(SSHClientConnection, "data_received", data_received)  # noqa: B010
    return True
