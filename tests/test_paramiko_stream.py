"""A 1 GiB stream through the paramiko transport from OpenSSH's sshd on 127.0.0.1, with the server
re-keying every 256 MiB on the way: every byte arrives in order and the command's exit status is seen.

Untuned, paramiko re-keys by itself every 512 MiB and stalled there ("Key-exchange timed out waiting
for key negotiation", paramiko issue #822, about one run in three here); the transport raises that
threshold and widens the channel window. The stream is bench/pcapgen.py's pcap: every record is checked
(same frame, timestamps exactly one gap apart, so nothing is lost, repeated or reordered).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import pcapgen
from bench.sshd import OpenSshd, SshdUnavailable
from esxcap.inventory import HostConfig
from esxcap.pcap import PcapStreamReader
from esxcap.transport import STREAM_CHUNK
from esxcap.transport.paramiko_transport import ParamikoTransport

GIB = 1 << 30
SERVER_REKEY = "RekeyLimit 256M"
FRAME = pcapgen.DEFAULT_FRAME


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshd]:
    workdir = tmp_path_factory.mktemp("sshd")
    try:
        server = OpenSshd.start(workdir / "sshd", extra_config=[SERVER_REKEY])
    except SshdUnavailable as exc:
        pytest.skip(f"OpenSSH's sshd cannot run here: {exc}")
    shutil.copyfile(Path(pcapgen.__file__), workdir / "pcapgen.py")
    with server:
        yield server


class Checker:
    """Reads the generated pcap as it arrives and counts records that break the pattern (the last
    record may be cut short: the stream is exactly the requested length)."""

    def __init__(self) -> None:
        self.reader = PcapStreamReader()
        one_record = pcapgen.GLOBAL_HEADER_LEN + pcapgen.RECORD_HEADER_LEN + FRAME
        self.payload = b"".join(pcapgen.blocks(one_record))[-FRAME:]
        self.records = self.bad = 0
        self.last_ts: int | None = None

    def feed(self, chunk: bytes) -> None:
        for record in self.reader.feed(chunk):
            ts, self.last_ts = self.last_ts, record.ts_ns
            if not self.payload.startswith(record.data) or (
                ts is not None and record.ts_ns - ts != pcapgen.DEFAULT_GAP_NS
            ):
                self.bad += 1
            self.records += 1


async def stream(server: OpenSshd, nbytes: int) -> tuple[int, Checker, int | None, dict[str, str], float]:
    host = HostConfig(
        name="bench",
        hostname="127.0.0.1",
        port=server.port,
        username=server.user,
        known_hosts=server.known_hosts,
        identity_file=server.client_key,
        explicit=frozenset({"port", "username", "known_hosts", "identity_file"}),
    )
    conn = await ParamikoTransport(ssh_config=[]).connect(host, password=lambda _p: None, accept_new=False)
    try:
        gen = server.workdir.parent / "pcapgen.py"
        start = time.perf_counter()
        proc = await conn.start([sys.executable, str(gen), "--bytes", str(nbytes)])
        checker, received = Checker(), 0
        while chunk := await proc.read():
            assert len(chunk) <= STREAM_CHUNK
            checker.feed(chunk)
            received += len(chunk)
        status = await proc.wait(10)
        seconds = time.perf_counter() - start
        assert checker.reader.finish() == 0
        return received, checker, status, conn.algorithms, seconds
    finally:
        await conn.close()


def test_one_gib_stream_survives_server_rekeys(sshd: OpenSshd) -> None:
    received, checker, status, algorithms, seconds = asyncio.run(stream(sshd, GIB))
    assert (received, status) == (GIB, 0)
    assert (checker.records, checker.bad) == (pcapgen.layout(GIB)[0], 0)
    assert algorithms["cipher"] == "aes128-gcm@openssh.com"
    print(f"paramiko: 1 GiB in {seconds:.1f} s ({GIB / seconds / 1e6:.0f} MB/s)")
