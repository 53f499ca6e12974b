"""A running simulated pktcap-uw: status lines, packets from the traffic model, trailer, signals.

It asks the model for the packets that reached its tap since it last looked (every TICK seconds),
keeps those its flow filters match, truncates them to the snap length and writes them out: pcap or
pcapng (`-o -` to stdout, `-o FILE` into the host's file store) or the console text dump (no `-o`).
Bulk flows are written as fast as the reader drains them. Like the real tool it ignores SIGHUP, ends
with its trailer on SIGINT or when the count is reached, dies at once on TERM/KILL (exit 128+N), and
only notices that its reader is gone when a write fails (exit 141, SIGPIPE) - a capture whose filter
matches nothing therefore runs until someone kills it.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from typing import Protocol

from esxcap.pcap import Interface, PcapngWriter, Record, encode_record, parse_global_header, write_pcap_header
from esxcap.sim import pktcap_text
from esxcap.sim.frames import ETH_VLAN, fields
from esxcap.sim.pktcap import Session
from esxcap.sim.processes import PKTCAP, PKTCAP_WORLDS, SIGNALS, ProcessTable, SimProcess
from esxcap.sim.topology import Host
from esxcap.sim.traffic import Seen, TrafficModel

TICK = 0.05
BULK_BATCH = 64
SIGPIPE_STATUS = 128 + SIGNALS["PIPE"]
ERROR_STATUS = 1


class Writer(Protocol):
    """Where a program's stdout (1) and stderr (2) go; raises OSError once the reader is gone."""

    async def write(self, fd: int, data: bytes) -> None: ...


class PktcapRun:
    """One pktcap-uw process: `start()` puts it in the table and runs it; `status` is its exit status."""

    def __init__(
        self, host: Host, traffic: TrafficModel, table: ProcessTable, session: Session, out: Writer
    ) -> None:
        self.host = host
        self.traffic = traffic
        self.table = table
        self.session = session
        self.out = out
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._interrupted = False
        self._killed: int | None = None
        self._waker: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.proc: SimProcess | None = None

    def start(self) -> SimProcess:
        self.proc = self.table.spawn(self.session.argv, PKTCAP, self._signal, PKTCAP_WORLDS)
        self._task = asyncio.get_running_loop().create_task(self._run(self.proc))
        return self.proc

    def _signal(self, sig: int) -> None:
        if sig == SIGNALS["HUP"] or (sig == SIGNALS["INT"] and self.host.faults.pktcap_ignores_int):
            return
        if sig == SIGNALS["INT"]:
            self._interrupted = True
            if self._waker is not None:
                _wake(self._waker)
            return
        if self._killed is None and self._task is not None:
            self._killed = 128 + sig
            self._task.cancel()

    async def _run(self, proc: SimProcess) -> None:
        try:
            status = await self._main(proc)
        except asyncio.CancelledError:
            status = self._killed or 128 + SIGNALS["KILL"]
        except OSError:
            status = SIGPIPE_STATUS
        finally:
            self.table.exited(proc)
        if not self.status.done():
            self.status.set_result(status)

    def _now(self) -> int:
        return time.time_ns() + self.traffic.skew_ns(self.host.name)

    async def _err(self, lines: list[str], prefix: bool) -> None:
        await self.out.write(2, pktcap_text.prefixed(lines, prefix))

    async def _main(self, proc: SimProcess) -> int:
        s = self.session
        prefix = s.new_style and s.outfile is not None
        rng = random.Random(proc.cid)
        await self._err(list(s.echoes), False)
        session_no = self.table.next_session()
        threads = [rng.randrange(10**11, 10**12) for _ in range(3)]
        startup = pktcap_text.startup(
            s.new_style, s.outfile, rng.randint(20000, 65500), self.table.next_vsock_port(), threads
        )
        await self._err(startup, prefix)
        output = _Output(s, self.table, self.out)
        await output.begin(self.host.name)
        tap = self.traffic.tap(self.host.name, s.places)
        fail_after = self.host.faults.pktcap_fail_after
        bulk = [(point, frame) for point, frame in tap.bulk_frames() if s.filter.matches(fields(frame))]
        last = self._now()
        while not self._interrupted and not output.full:
            if bulk:
                await output.bulk(bulk, self._now(), BULK_BATCH)
                await asyncio.sleep(0)
            else:
                await self._sleep(TICK)
            now = self._now()
            seen = [x for x in tap.window(last, now) if s.filter.matches(fields(x.frame))]
            last = now
            await output.packets(seen)
            proc.packets = output.count
            if fail_after is not None and output.count >= fail_after:
                await self._err([pktcap_text.PORT_GONE], prefix)
                return ERROR_STATUS
        drops = self.host.faults.pktcap_drops
        v55 = self.host.version_tuple < (6, 0)
        lines = pktcap_text.trailer(s.new_style, session_no, s.outfile, output.count, drops, v55)
        await self._err(lines, prefix)
        return 0

    async def _sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._waker = waker = loop.create_future()
        handle = loop.call_later(seconds, _wake, waker)
        try:
            await waker
        finally:
            handle.cancel()
            self._waker = None


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


class _Output:
    """pcap / pcapng bytes or console text, to stdout or into a file of the host's store."""

    def __init__(self, session: Session, table: ProcessTable, out: Writer) -> None:
        self.s = session
        self.table = table
        self.out = out
        self.count = 0
        self._ng: PcapngWriter | None = None
        self._buffer = io.BytesIO()
        self._bulk_ns = 0
        self._header = parse_global_header(write_pcap_header(snaplen=session.snaplen or 262144, nanos=False))

    @property
    def full(self) -> bool:
        return self.s.count is not None and self.count >= self.s.count

    async def _put(self, data: bytes) -> None:
        if not data:
            return
        if self.s.outfile in (None, "-"):
            await self.out.write(1, data)
        else:
            self.table.files.setdefault(self.s.outfile or "", bytearray()).extend(data)

    def _take(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    async def begin(self, host: str) -> None:
        if self.s.outfile is None:
            return
        if self.s.outfile != "-":
            self.table.files[self.s.outfile] = bytearray()
        if self.s.pcapng:
            self._ng = PcapngWriter(self._buffer, userappl="pktcap-uw")
            self._ng.add_interface(Interface(name=host, snaplen=self.s.snaplen))
            await self._put(self._take())
        else:
            await self._put(self._header.raw)

    def _room(self, wanted: int) -> int:
        return wanted if self.s.count is None else min(wanted, self.s.count - self.count)

    def _record(self, ts_ns: int, frame: bytes) -> bytes:
        data = frame[: self.s.snaplen] if self.s.snaplen else frame
        if self._ng is not None:
            self._ng.write_packet(0, ts_ns, data, len(frame))
            return self._take()
        return encode_record(Record(ts_ns, len(frame), data), self._header) + data

    async def packets(self, seen: list[Seen]) -> None:
        seen = seen[: self._room(len(seen))]
        if self.s.outfile is None:
            text = "".join(self._console(x, self.count + i + 1) for i, x in enumerate(seen))
            await self._put(text.encode())
        else:
            await self._put(b"".join(self._record(x.ts_ns, x.frame) for x in seen))
        self.count += len(seen)

    def _console(self, x: Seen, number: int) -> str:
        frame, vlan = x.frame, 0
        if frame[12:14] == ETH_VLAN.to_bytes(2, "big"):
            vlan = int.from_bytes(frame[14:16], "big") & 0xFFF
            frame = frame[:12] + frame[16:]
        if self.s.snaplen:
            frame = frame[: self.s.snaplen]
        return pktcap_text.console_packet(self.s.new_style, number, x.ts_ns, x.point, vlan, frame)

    async def bulk(self, frames: list[tuple[str, bytes]], now_ns: int, batch: int) -> None:
        """`batch` bulk packets 1 µs apart, never earlier than the ones before."""
        start = max(now_ns, self._bulk_ns)
        seen = [Seen(start + i * 1000, *frames[i % len(frames)], "") for i in range(self._room(batch))]
        self._bulk_ns = start + len(seen) * 1000
        await self.packets(seen)
