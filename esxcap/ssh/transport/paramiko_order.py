"""Channel messages from our threads kept before the channel's close.

paramiko builds a channel's EOF and window adjusts under the channel's lock but sends them after releasing
it, so its transport thread can answer the host's CHANNEL_CLOSE with ours in between. The late message then
names a channel the host has freed, and a strict SSH server ends the whole connection for it (asyncssh:
"Invalid channel number"), taking every other stream and command of the host with it. Here each such
message is built and sent under the channel's lock, after checking the channel is still open.
"""

from __future__ import annotations

from collections.abc import Callable

import paramiko
from paramiko.common import cMSG_CHANNEL_WINDOW_ADJUST

KEY_EXCHANGE_POLL_S = 0.1


def send_eof(chan: paramiko.Channel) -> None:
    """Send EOF on the channel's stdin, unless it is closed (or EOF was sent)."""
    _send_while_open(chan, chan._send_eof)


def receive(chan: paramiko.Channel, size: int) -> bytes:
    """`chan.recv`: up to `size` bytes of stdout (b"" at its end), the window reopened in order."""
    data: bytes = chan.in_buffer.read(size)
    _send_while_open(chan, lambda: _window_adjust(chan, len(data)))
    return data


def receive_stderr(chan: paramiko.Channel, size: int) -> bytes:
    """`chan.recv_stderr`, with the window reopened in order."""
    data: bytes = chan.in_stderr_buffer.read(size)
    _send_while_open(chan, lambda: _window_adjust(chan, len(data)))
    return data


def _window_adjust(chan: paramiko.Channel, consumed: int) -> paramiko.Message | None:
    """paramiko's `_check_add_window` for a caller holding the channel's lock: the adjust once a tenth
    of the window was read, None before that or once the host's side has ended."""
    if chan.closed or chan.eof_received or not chan.active:
        return None
    chan.in_window_sofar += consumed
    if chan.in_window_sofar <= chan.in_window_threshold:
        return None
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
    message.add_int(chan.remote_chanid)
    message.add_int(chan.in_window_sofar)
    chan.in_window_sofar = 0
    return message


def _send_while_open(chan: paramiko.Channel, build: Callable[[], paramiko.Message | None]) -> None:
    """Build and send one message under the channel's lock, so no close can pass it; nothing once the
    channel is closed. During a key exchange it waits with no lock held (the transport thread may need
    the channel's lock to finish it)."""
    transport = chan.transport
    while transport is not None and transport.active:
        with chan.lock:
            if chan.closed:
                return
            with transport.clear_to_send_lock:
                if transport.clear_to_send.is_set():
                    message = build()
                    if message is not None:
                        transport._send_message(message)
                    return
        transport.clear_to_send.wait(KEY_EXCHANGE_POLL_S)
