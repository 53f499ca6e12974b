"""esxcap.ssh.transport.asyncssh_receive against asyncssh's own code and a real asyncssh server on 127.0.0.1.

- Decryption: AES-GCM packets decrypted here give what asyncssh's own code gives (plaintext, None for a
  damaged tag or header, the same invocation counter afterwards), from bytes and from views.
- The fast path's refusals: a bad tag, short padding, an unknown channel or a channel with another data
  handler leave the buffer and the cipher as they were and hand the packet to asyncssh's own header step.
- Delivery: channel data is copied out of the buffer packets are decrypted into (reused for the next);
  data asyncssh's channel would refuse (closed, past the window, a malformed string) is refused with its
  own error.
- Streams: 4 MiB through an in-process asyncssh server, read slowly (so reads hold many packets), with
  every cipher family the client may negotiate, a re-key from AES-GCM to chacha20 in mid-stream, and a
  connection tunnelled through another: every byte arrives in order, decrypted into the fast path's own
  buffer and (as where cryptography has no decrypt_into) to new bytes.
- Guards: nothing is replaced when asyncssh's code is not the code this was checked against, under an
  asyncssh release it was not checked against, or with ESXCAP_FAST_RECEIVE=0; refusal() says which.

Under an asyncssh release the fast path was not checked against, the whole module is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from asyncssh.connection import SSHClientConnection
from asyncssh.encryption import GCMEncryption, get_encryption
from conftest import FAST_RECEIVE_CHECKED

from esxcap.ssh.transport import asyncssh_receive
from esxcap.ssh.transport.asyncssh_receive import decrypt_gcm_packet, header_step

pytestmark = FAST_RECEIVE_CHECKED

GCM = b"aes128-gcm@openssh.com"
CHACHA = "chacha20-poly1305@openssh.com"
MSG_CHANNEL_DATA = 94
PAYLOAD = bytes(range(256)) * 128
STREAM_BYTES = 4 << 20


@pytest.fixture(autouse=True)
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(asyncssh_receive.SWITCH, raising=False)
    assert asyncssh_receive.install(), (
        "asyncssh's receive code changed: check esxcap/ssh/transport/asyncssh_receive.py against it again"
    )


def seal(
    sender: Any, seq: int, payload: bytes, pad: int | None = None, claimed_pad: int | None = None
) -> bytes:
    """One packet as asyncssh sends it: length, encrypted body padded to whole blocks (by at least 4
    bytes unless `pad` says otherwise; its padding-length byte says `claimed_pad` if given), tag."""
    if pad is None:
        pad = 4 + (-(5 + len(payload))) % 16 + 16 * (seq % 2)
    body = bytes([pad if claimed_pad is None else claimed_pad]) + payload + os.urandom(pad)
    head, tag = sender.encrypt_packet(seq, struct.pack(">I", len(body)), body)
    return bytes(head + tag)


def channel_data(channel: int, data: bytes) -> bytes:
    return bytes([MSG_CHANNEL_DATA]) + struct.pack(">II", channel, len(data)) + data


@pytest.mark.parametrize(("alg", "key_len"), [(GCM, 16), (b"aes256-gcm@openssh.com", 32)])
@pytest.mark.parametrize("as_views", [False, True])
def test_gcm_decrypt_matches_asyncssh(alg: bytes, key_len: int, as_views: bool) -> None:
    key, iv = os.urandom(key_len), os.urandom(12)
    sender, ours, theirs = (get_encryption(alg, key, iv) for _ in range(3))
    payloads = [os.urandom(n) for n in (0, 1, 15, 16, 1000, 32768, 7)]
    for seq, payload in enumerate(payloads):
        wire = seal(sender, seq, payload)
        damaged = seq in (2, 5)
        if damaged:
            wire = wire[:-1] + bytes([wire[-1] ^ 1])
        view = memoryview(wire) if as_views else wire
        first, rest, tag = view[:16], view[16:-16], view[-16:]
        got = decrypt_gcm_packet(ours, seq, first, rest, 4, tag)
        expected = asyncssh_receive._THEIR_GCM_DECRYPT(theirs, seq, bytes(first), bytes(rest), 4, bytes(tag))
        assert got == expected
        assert (got is None) == damaged
        if got is not None:
            assert got[1 : 1 + len(payload)] == payload


def test_an_altered_length_header_is_rejected() -> None:
    key, iv = os.urandom(16), os.urandom(12)
    wire = seal(get_encryption(GCM, key, iv), 0, b"x" * 100)
    altered = struct.pack(">I", struct.unpack(">I", wire[:4])[0] ^ 0x10) + wire[4:]
    ours = get_encryption(GCM, key, iv)
    assert decrypt_gcm_packet(ours, 0, altered[:16], altered[16:-16], 4, altered[-16:]) is None


class Connection:
    """The fields of an asyncssh client connection that the header step reads, around one buffer."""

    def __init__(self, buf: bytes, encryption: Any, channels: dict[int, Any]) -> None:
        self._inpbuf = memoryview(buf)
        self._recv_encryption = encryption
        self._auth_complete = True
        self._decompressor = None
        self._max_recv_pktlen = 1 << 20
        self._channels = channels
        self._recv_seq = 7


class DataChannel:
    """A channel whose data handler is `handler`; the fast path must not reach it here."""

    def __init__(self, handler: object) -> None:
        self._packet_handlers = {MSG_CHANNEL_DATA: handler}


@pytest.fixture
def their_header_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Connection]]:
    calls: list[Connection] = []

    def recorded(conn: Connection) -> bool:
        calls.append(conn)
        return False

    monkeypatch.setattr(asyncssh_receive, "_THEIR_HEADER_STEP", recorded)
    yield calls


@pytest.mark.parametrize(
    "fault", ["bad tag", "short padding", "padding past the data", "unknown channel", "other data handler"]
)
def test_the_fast_path_leaves_what_it_does_not_take_untouched(
    fault: str, their_header_steps: list[Connection]
) -> None:
    key, iv = os.urandom(16), os.urandom(12)
    sender, receiver = get_encryption(GCM, key, iv), get_encryption(GCM, key, iv)
    wire = seal(
        sender,
        7,
        channel_data(0, b"hello" * 4),
        pad=2 if fault == "short padding" else None,
        claimed_pad=200 if fault == "padding past the data" else None,
    )
    if fault == "bad tag":
        wire = wire[:-1] + bytes([wire[-1] ^ 1])
    handler = asyncssh_receive._DATA_HANDLER if fault != "other data handler" else object()
    channels = {} if fault == "unknown channel" else {0: DataChannel(handler)}
    conn = Connection(wire, receiver, channels)
    iv_before = receiver._cipher._iv
    assert header_step(conn) is False
    assert their_header_steps == [conn]
    assert bytes(conn._inpbuf) == wire
    assert (receiver._cipher._iv, conn._recv_seq) == (iv_before, 7)


def test_a_view_left_by_a_rekey_to_another_cipher_becomes_bytes(their_header_steps: list[Connection]) -> None:
    chacha = get_encryption(CHACHA.encode(), os.urandom(64), b"")
    conn = Connection(b"\0" * 64, chacha, {})
    assert header_step(conn) is False
    assert type(conn._inpbuf) is bytes
    assert their_header_steps == [conn]


class OpenChannel:
    """The fields of an asyncssh channel that its data handler reads; keeps what it accepts."""

    def __init__(self, state: str = "open", window: int = 1 << 20) -> None:
        self._recv_state = state
        self._recv_window = window
        self.logger = asyncssh.logging.logger
        self.accepted: list[bytes] = []

    def _accept_data(self, data: bytes) -> None:
        self.accepted.append(data)


def test_channel_data_is_copied_out_of_the_reused_buffer() -> None:
    buffer = bytearray(struct.pack(">I", 5) + b"hello")
    channel = OpenChannel()
    asyncssh_receive.deliver_channel_data(channel, 7, memoryview(buffer))
    buffer[4:] = b"XXXXX"  # the next packet decrypted into the same buffer
    assert channel.accepted == [b"hello"]
    assert type(channel.accepted[0]) is bytes


@pytest.mark.parametrize(
    ("fault", "payload", "channel"),
    [
        ("closed", struct.pack(">I", 5) + b"hello", OpenChannel(state="close_pending")),
        ("window", struct.pack(">I", 5) + b"hello", OpenChannel(window=4)),
        ("string past the packet", struct.pack(">I", 9) + b"hello", OpenChannel()),
        ("bytes after the string", struct.pack(">I", 4) + b"hello", OpenChannel()),
        ("no length", b"he", OpenChannel()),
    ],
)
def test_channel_data_asyncssh_refuses_is_refused_as_asyncssh_does(
    fault: str, payload: bytes, channel: OpenChannel
) -> None:
    with pytest.raises(asyncssh.ProtocolError) as ours:
        asyncssh_receive.deliver_channel_data(channel, 7, memoryview(bytearray(payload)))
    handler = asyncssh_receive._DATA_HANDLER
    assert handler is not None
    with pytest.raises((asyncssh.ProtocolError, asyncssh.packet.PacketDecodeError)) as theirs:
        handler(channel, MSG_CHANNEL_DATA, 7, asyncssh.packet.SSHPacket(payload))
    assert str(ours.value) == str(theirs.value), fault
    assert channel.accepted == []


async def _stream(
    client_algs: list[str], macs: list[str], *, switch_to: str = "", tunnel: bool = False
) -> str:
    """Stream STREAM_BYTES from an in-process asyncssh server; return the cipher in use at the end."""
    server_conns: list[asyncssh.SSHServerConnection] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            server_conns.append(conn)

        def begin_auth(self, username: str) -> bool:
            return False

        def connection_requested(self, *args: object) -> bool:
            return True

    async def send(process: asyncssh.SSHServerProcess[bytes]) -> None:
        sent = 0
        while sent < STREAM_BYTES:
            process.stdout.write(PAYLOAD)
            sent += len(PAYLOAD)
            await process.stdout.drain()
            if switch_to and sent == STREAM_BYTES // 2:
                conn = server_conns[-1]
                conn._enc_algs = [switch_to.encode()]  # the server's next key exchange offers only this
                conn._send_kexinit()
                conn._kexinit_sent = True
        process.exit(0)

    key = asyncssh.generate_private_key("ssh-ed25519")
    server_algs = [*client_algs, *([switch_to] if switch_to else [])]
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[key],
        server_factory=Server,
        process_factory=send,
        encoding=None,
        encryption_algs=server_algs,
        mac_algs=macs,
    )
    port = server.sockets[0].getsockname()[1]
    options: dict[str, Any] = {
        "known_hosts": None,
        "username": "capture",
        "encryption_algs": server_algs,
        "mac_algs": macs,
    }
    try:
        outer = await asyncssh.connect("127.0.0.1", port, **options) if tunnel else None
        async with await asyncssh.connect("127.0.0.1", port, tunnel=outer, **options) as conn:
            process = await conn.create_process(encoding=None)
            digest, received, reads = hashlib.sha256(), 0, 0
            while chunk := await process.stdout.read(1 << 16):
                digest.update(chunk)
                received += len(chunk)
                reads += 1
                if reads % 8 == 0:
                    await asyncio.sleep(0.003)
            assert received == STREAM_BYTES
            assert digest.digest() == hashlib.sha256(PAYLOAD * (STREAM_BYTES // len(PAYLOAD))).digest()
            cipher = str(conn.get_extra_info("recv_cipher"))
        if outer is not None:
            outer.close()
        return cipher
    finally:
        server.close()


@pytest.fixture(params=["decrypt_into_buffer", "decrypt_to_bytes"])
def fast_path_packets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the packets the fast path hands to a channel, decrypting them with each of its two decrypt
    functions (into its own buffer where cryptography offers decrypt_into; to new bytes where not)."""
    count = [0]

    def counted(channel: Any, seq: int, payload: memoryview) -> None:
        count[0] += 1
        deliver(channel, seq, payload)

    deliver = asyncssh_receive.deliver_channel_data
    monkeypatch.setattr(asyncssh_receive, "deliver_channel_data", counted)
    monkeypatch.setattr(asyncssh_receive, "open_sealed", getattr(asyncssh_receive, request.param))
    return count


@pytest.mark.parametrize(
    ("ciphers", "macs", "fast"),
    [
        (["aes128-gcm@openssh.com"], ["hmac-sha2-256"], True),
        (["aes256-gcm@openssh.com"], ["hmac-sha2-256"], True),
        (["aes128-ctr"], ["hmac-sha1"], False),
        (["aes128-ctr"], ["hmac-sha2-256-etm@openssh.com"], False),
        ([CHACHA], ["hmac-sha2-256"], False),
    ],
)
def test_streams_arrive_whole_with_every_cipher(
    ciphers: list[str], macs: list[str], fast: bool, fast_path_packets: list[int]
) -> None:
    assert asyncio.run(_stream(ciphers, macs)) == ciphers[0]
    assert (fast_path_packets[0] > 0) == fast


def test_a_rekey_from_gcm_to_chacha20_mid_stream_loses_nothing() -> None:
    assert asyncio.run(_stream(["aes128-gcm@openssh.com"], ["hmac-sha2-256"], switch_to=CHACHA)) == CHACHA


def test_a_tunnelled_connection_streams_whole() -> None:
    assert asyncio.run(_stream(["aes128-gcm@openssh.com"], ["hmac-sha2-256"], tunnel=True)) == GCM.decode()


def pristine_asyncssh(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncssh as it comes, until the test ends."""
    monkeypatch.setattr(asyncssh_receive, "_view_safe_encryption", None)
    monkeypatch.setattr(asyncssh_receive, "_header_steps", (asyncssh_receive._THEIR_HEADER_STEP,))
    monkeypatch.delattr(SSHClientConnection, "data_received", raising=False)
    monkeypatch.delattr(SSHClientConnection, "_recv_pkthdr", raising=False)
    monkeypatch.setattr(GCMEncryption, "decrypt_packet", asyncssh_receive._THEIR_GCM_DECRYPT)


def assert_untouched() -> None:
    assert "data_received" not in SSHClientConnection.__dict__
    assert "_recv_pkthdr" not in SSHClientConnection.__dict__
    assert GCMEncryption.decrypt_packet is asyncssh_receive._THEIR_GCM_DECRYPT


def test_a_changed_asyncssh_function_leaves_asyncssh_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    pristine_asyncssh(monkeypatch)
    for name, digest in dict(asyncssh_receive._CHECKED_SOURCES).items():
        monkeypatch.setitem(asyncssh_receive._CHECKED_SOURCES, name, "0" * 16)
        assert not asyncssh_receive.install(), name
        assert asyncssh_receive.refusal() == f"asyncssh's {name} is not the code it was checked against"
        assert_untouched()
        monkeypatch.setitem(asyncssh_receive._CHECKED_SOURCES, name, digest)
    assert asyncssh_receive.install()


def test_a_replaced_data_received_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    pristine_asyncssh(monkeypatch)

    def their_data_received(conn: Any, data: bytes, datatype: object = None) -> None:
        conn._inbuf.extend(data)

    monkeypatch.setattr(SSHClientConnection, "data_received", their_data_received)
    assert not asyncssh_receive.install()
    assert SSHClientConnection.data_received is their_data_received
    assert "_recv_pkthdr" not in SSHClientConnection.__dict__
    assert GCMEncryption.decrypt_packet is asyncssh_receive._THEIR_GCM_DECRYPT


def test_the_switch_keeps_asyncssh_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    pristine_asyncssh(monkeypatch)
    monkeypatch.setenv("ESXCAP_FAST_RECEIVE", "0")
    assert not asyncssh_receive.install()
    assert_untouched()
    assert (
        asyncssh_receive.state()
        == f"asyncssh {asyncssh.__version__}: fast receive path off: ESXCAP_FAST_RECEIVE=0"
    )
    monkeypatch.setenv("ESXCAP_FAST_RECEIVE", "1")
    assert asyncssh_receive.install()
    assert asyncssh_receive.state() == f"asyncssh {asyncssh.__version__}: fast receive path active"


def test_an_unchecked_asyncssh_release_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    pristine_asyncssh(monkeypatch)
    monkeypatch.setattr(asyncssh, "__version__", "2.99.0")
    assert not asyncssh_receive.install()
    assert_untouched()
    checked = ", ".join(asyncssh_receive.CHECKED_VERSIONS)
    assert (
        asyncssh_receive.refusal() == f"asyncssh 2.99.0 is not a release it was checked against ({checked})"
    )
