"""asyncssh's client receive buffer, fed one SSH packet at a time.

asyncssh keeps received bytes in an immutable `bytes` buffer (`_inpbuf`) and takes each packet off its
front by slicing, which re-copies everything still behind that packet. Whenever the client is busy (during
every fast capture) the socket hands over 256 KiB at once, eight 32 KiB packets from OpenSSH's sshd, and
each chunk was copied about 4.5 times over: a third of the client's CPU time for a 1 GiB stream.

`install()` replaces `SSHClientConnection.data_received` (append the chunk, run the parser) by one that
hands the chunk to asyncssh's own parser in the pieces that parser is waiting for: the rest of the current
packet header, then the rest of the packet. Each piece is consumed whole, so nothing behind it is copied
again. Parsing, decryption, MAC checks and dispatch stay asyncssh's. Where a state is not recognised (the
version exchange, a packet whose handler is still running) the rest of the chunk is handed over at once,
as asyncssh itself does; an asyncssh whose `data_received` is not the one this was written for is left
untouched.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHClientConnection, SSHConnection

_EXPECTED_NAMES = ("_inpbuf", "_recv_data")
"""What asyncssh's own data_received uses: append to `_inpbuf`, then `_recv_data()`."""
_ORIGINAL = SSHConnection.data_received
_HEADER = getattr(SSHConnection, "_recv_pkthdr", None)
_BODY = getattr(SSHConnection, "_recv_packet", None)


def bytes_wanted(conn: Any) -> int | None:
    """Bytes asyncssh's parser needs before it can take its next step, or None where that is unknown."""
    handler = getattr(getattr(conn, "_recv_handler", None), "__func__", None)
    try:
        if handler is _HEADER:
            need = int(conn._recv_blocksize)
        elif handler is _BODY:
            need = 4 + int(conn._pktlen) + int(conn._recv_macsize) - int(conn._recv_blocksize)
        else:
            return None
    except AttributeError:
        return None
    return need - len(conn._inpbuf)


def data_received(conn: Any, data: bytes, datatype: object = None) -> None:
    """asyncssh's data_received, with `data` handed to the parser a packet at a time."""
    pos, end = 0, len(data)
    while pos < end:
        want = bytes_wanted(conn)
        take = end - pos if want is None or want <= 0 else min(want, end - pos)
        conn._inpbuf += data if take == end else data[pos : pos + take]
        pos += take
        conn._recv_data()
        if conn._transport is None and pos < end:
            conn._inpbuf += data[pos:]
            return


def install() -> bool:
    """Feed asyncssh client connections a packet at a time; True when installed (now or before)."""
    if SSHClientConnection.__dict__.get("data_received") is data_received:
        return True
    code = getattr(_ORIGINAL, "__code__", None)
    if (
        code is None
        or code.co_names != _EXPECTED_NAMES
        or _HEADER is None
        or _BODY is None
        or SSHClientConnection.data_received is not _ORIGINAL
    ):
        return False
    setattr(SSHClientConnection, "data_received", data_received)  # noqa: B010 (mypy: a method)
    return True
