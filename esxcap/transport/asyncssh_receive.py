"""asyncssh's client receive buffer, fed one SSH packet at a time.

asyncssh keeps received bytes in an immutable `bytes` buffer (`_inpbuf`) and takes each packet off its
front by slicing, which re-copies everything still behind that packet. Whenever the client is busy (during
every fast capture) the socket hands over 256 KiB at once, eight 32 KiB packets from OpenSSH's sshd, and
each chunk was copied about 4.5 times over: 0.3 to 0.4 of the 2.3 CPU seconds a 1 GiB capture took.

`install()` replaces `SSHClientConnection.data_received` (append the chunk, run the parser) by one that
hands the chunk to asyncssh's own parser in the pieces that parser is waiting for: the rest of the current
packet header, then the rest of the packet. Each piece is consumed whole, so nothing behind it is copied
again. Parsing, decryption, MAC checks and dispatch stay asyncssh's. Where a state is not recognised (the
version exchange, a packet whose handler is still running) the rest of the chunk is handed over at once,
as asyncssh itself does. An asyncssh whose `data_received` or parser steps do not read as this expects
(asyncssh 2.24 does) is left untouched.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHClientConnection, SSHConnection

_ORIGINAL = SSHConnection.data_received
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


def install() -> bool:
    """Feed asyncssh client connections a packet at a time; True when installed (now or before)."""
    if SSHClientConnection.__dict__.get("data_received") is data_received:
        return True
    if SSHClientConnection.data_received is not _ORIGINAL or _ORIGINAL.__code__.co_names != (
        "_inpbuf",
        "_recv_data",
    ):
        return False
    for step, names in _STEPS:
        code = getattr(step, "__code__", None)
        if code is None or not names <= set(code.co_names):
            return False
    setattr(SSHClientConnection, "data_received", data_received)  # noqa: B010 (mypy: a method)
    return True
