"""Streaming throughput: one pcap stream from a remote command into a local file, through OpenSSH's client
(baseline, same run) and through esxcap's capture path, with MB/s, CPU seconds per GiB and peak RSS.

Cases (all against one private OpenSSH sshd on 127.0.0.1, remote command = bench.pcapgen):
- `ssh -c aes128-gcm@openssh.com host CMD > file` and `ssh host CMD > file` (OpenSSH's default cipher);
- esxcap: AsyncsshTransport -> run_stream (the dead-man-switch wrapper, pcap reader, pcapng CaptureSink)
  in a child process (`python -m bench.throughput --child CONFIG`), so its peak RSS is esxcap's alone;
  RSS is sampled at 25/50/75/100 % of the stream to show it stays flat;
- the same internal function with 3 and 10 streams (one connection each, the case's bytes shared among
  them) merged into one pcapng file: their CPU s/GiB against the one-stream case (target <= 1.25x).
The simulator case lives in bench.sim_throughput. Runs are interleaved and the median run is kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import GIB, Options, Row, pcapgen
from bench.sshd import OpenSshd, SshdUnavailable

BENCH = "throughput"
SAME_CIPHER = "aes128-gcm@openssh.com"
TARGET_SAME = 0.8
TARGET_DEFAULT = 1.0
MERGED_STREAMS = (3, 10)
TARGET_MERGED_CPU = 1.25
"""Merged N streams may cost at most this many times one stream's client CPU s/GiB."""
ONE_STREAM = "esxcap run_stream -> pcapng"
RSS_POINTS = (0.25, 0.5, 0.75)
_KEX_CIPHER = re.compile(r"kex: server->client cipher: (\S+)")


@dataclass(frozen=True)
class Measurement:
    """One streaming run: bytes received, wall and CPU seconds, peak RSS, RSS along the way (KiB)."""

    nbytes: int
    seconds: float
    cpu_seconds: float
    peak_rss_kib: int
    cipher: str
    rss_kib: tuple[int, ...] = ()
    error: str = ""
    end_delay: float = 0.0
    """Seconds from the last byte received until the command had ended (esxcap: wrapper stop)."""
    note: str = ""

    @property
    def mb_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_seconds * GIB / self.nbytes

    def describe(self) -> str:
        text = (
            f"{self.mb_s:7.1f} MB/s {self.cpu_per_gib:6.2f} CPU s/GiB "
            f"{self.peak_rss_kib / 1024:6.1f} MiB peak RSS  [{self.cipher}]"
        )
        if self.rss_kib:
            text += " RSS at 25/50/75/100%: " + "/".join(f"{k / 1024:.0f}" for k in self.rss_kib) + " MiB"
        if self.end_delay >= 0.5:
            text += f"; stream end +{self.end_delay:.1f} s"
        if self.note:
            text += f"; {self.note}"
        return text


def current_rss_kib() -> int:
    """This process's resident set now (Linux /proc), 0 where unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_rusage(proc: subprocess.Popen[bytes]) -> resource.struct_rusage:
    """Reap `proc` and return its own resource usage (CPU, peak RSS), not that of other children."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def run_openssh(sshd: OpenSshd, command: str, nbytes: int, out: Path, cipher: str | None) -> Measurement:
    """`ssh [-c cipher] host command > out`, measured from the outside."""
    log = out.with_suffix(".log")
    with out.open("wb") as stdout, log.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*sshd.ssh_argv(cipher, verbose=True), command],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        usage = wait_rusage(proc)
        seconds = time.perf_counter() - start
    said = log.read_text(errors="replace")
    found = _KEX_CIPHER.search(said)
    received = out.stat().st_size
    error = ""
    if proc.returncode != 0 or received != nbytes:
        error = f"ssh exit {proc.returncode}, {received} of {nbytes} bytes"
    return Measurement(
        received,
        seconds,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        found.group(1) if found else "?",
        error=error,
    )


@dataclass(frozen=True)
class ChildConfig:
    """What the esxcap child needs: where sshd is, what to run there, where to write."""

    port: int
    user: str
    known_hosts: str
    identity: str
    argv: list[str]
    nbytes: int
    out: str
    frame: int = 1514
    streams: int = 1
    """Streams (one connection each) merged into the one output file; argv's --bytes is per stream."""


async def _stream_with_esxcap(cfg: ChildConfig) -> Measurement:
    from esxcap.capture.run import StopControl, StreamRun, deadline_for, run_stream
    from esxcap.capture.sinks import CaptureSink
    from esxcap.esxi.pktcap import Selector
    from esxcap.inventory import HostConfig
    from esxcap.plan.planner import Stream, Target
    from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport

    host = HostConfig(
        name="bench",
        hostname="127.0.0.1",
        port=cfg.port,
        username=cfg.user,
        known_hosts=Path(cfg.known_hosts),
        identity_file=Path(cfg.identity),
        explicit=frozenset({"port", "username", "known_hosts", "identity_file"}),
    )
    target = Target("bench", "vmk", Selector("vmk", "vmk0"), "pcapgen", "benchmark pcap generator")
    per_stream = cfg.nbytes // cfg.streams
    packets, packet_bytes = pcapgen.layout(per_stream, cfg.frame)
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    transport = AsyncsshTransport(ssh_config=[])
    conns = [
        await transport.connect(host, password=lambda _prompt: None, accept_new=False)
        for _ in range(cfg.streams)
    ]
    cipher = conns[0].algorithms["cipher"]
    sink = CaptureSink(Path(cfg.out), comments=["esxcap throughput benchmark"])
    # each stream flags its packets' direction, as a one-direction capture (--dir in/out) does
    streams = [Stream(target, "stdout", f"out{n}", tuple(cfg.argv), "inbound") for n in range(cfg.streams)]
    runs = [StreamRun(stream, sink) for stream in streams]
    samples: list[int] = []
    control = StopControl()
    received_at: list[float] = []

    def received() -> int:
        return sum(run.bytes for run in runs)

    async def watch() -> None:
        for point in (*RSS_POINTS, 1.0):
            while received() < point * packet_bytes * cfg.streams:
                await asyncio.sleep(0.005)
            samples.append(current_rss_kib())
        received_at.append(time.perf_counter())
        control.stop("all bytes received")

    watcher = asyncio.create_task(watch())
    await asyncio.gather(
        *(run_stream(c, r, control, deadline_for(None)) for c, r in zip(conns, runs, strict=True))
    )
    watcher.cancel()
    if not received_at:
        received_at.append(time.perf_counter())
    samples += [current_rss_kib()] * (len(RSS_POINTS) + 1 - len(samples))
    finish_start = time.perf_counter()
    sink.finish(time.time_ns())
    finishing = time.perf_counter() - finish_start
    for conn in conns:
        await conn.close()
    end = time.perf_counter()
    end_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end_cpu.ru_utime - start_cpu.ru_utime) + (end_cpu.ru_stime - start_cpu.ru_stime)
    seconds = received_at[0] - start + finishing
    error = ""
    for run in runs:
        if run.error is not None or run.exit_status != 0:
            error = f"exit {run.exit_status}: {run.error or run.host_stderr}"
        elif (run.packets, run.bytes) != (packets, packet_bytes):
            error = f"got {run.packets} packets / {run.bytes} bytes, expected {packets} / {packet_bytes}"
    nbytes = per_stream * cfg.streams
    note = f"{cfg.streams} streams, {sink.late} packets later than the window" if cfg.streams > 1 else ""
    return Measurement(
        nbytes, seconds, cpu, end_cpu.ru_maxrss, cipher, tuple(samples), error, end - start - seconds, note
    )


def child_main(config_json: str) -> int:
    """The esxcap case in its own process; prints one JSON Measurement on stdout."""
    cfg = ChildConfig(**json.loads(config_json))
    result = asyncio.run(_stream_with_esxcap(cfg))
    print(json.dumps(asdict(result)))
    return 0


def run_esxcap(cfg: ChildConfig) -> Measurement:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.throughput", "--child", json.dumps(asdict(cfg))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        return Measurement(0, 1.0, 0.0, 0, "?", error=f"child failed: {' / '.join(tail)}")
    data = json.loads(stdout)
    data["rss_kib"] = tuple(data["rss_kib"])
    return Measurement(**data)


@dataclass
class Cases:
    """Interleaved runs of several cases; the median run (by wall time) of each is kept."""

    runs: dict[str, list[Measurement]] = field(default_factory=dict)

    def add(self, name: str, result: Measurement) -> None:
        self.runs.setdefault(name, []).append(result)

    def median(self, name: str) -> Measurement | None:
        good = sorted((m for m in self.runs.get(name, []) if not m.error), key=lambda m: m.seconds)
        return good[len(good) // 2] if good else None

    def error(self, name: str) -> str:
        return next((m.error for m in self.runs.get(name, []) if m.error), "no run")


def measure(options: Options, workdir: Path, sshd: OpenSshd) -> Cases:
    gen = workdir / "pcapgen.py"
    shutil.copyfile(Path(__file__).with_name("pcapgen.py"), gen)
    argv = [sys.executable, str(gen), "--bytes", str(options.nbytes)]
    command = shlex.join(argv)
    child = ChildConfig(
        sshd.port, sshd.user, str(sshd.known_hosts), str(sshd.client_key), argv, options.nbytes, ""
    )

    def esxcap_case(streams: int) -> Callable[[Path], Measurement]:
        def case(out: Path) -> Measurement:
            per_stream = [sys.executable, str(gen), "--bytes", str(options.nbytes // streams)]
            per_stream += ["-c", str(pcapgen.layout(options.nbytes // streams)[0])]  # ends as asked
            config = {**asdict(child), "out": str(out.with_suffix(".pcapng")), "streams": streams}
            return run_esxcap(ChildConfig(**{**config, "argv": per_stream}))

        return case

    cases: dict[str, Callable[[Path], Measurement]] = {
        "OpenSSH ssh -c aes128-gcm": lambda out: run_openssh(sshd, command, options.nbytes, out, SAME_CIPHER),
        "OpenSSH ssh (defaults)": lambda out: run_openssh(sshd, command, options.nbytes, out, None),
        ONE_STREAM: esxcap_case(1),
        **{merged_case(n): esxcap_case(n) for n in MERGED_STREAMS},
    }
    result = Cases()
    for i in range(options.repeat):
        for n, (name, case) in enumerate(cases.items()):
            out = workdir / f"case{n}-{i}.pcap"
            result.add(name, case(out))
            for leftover in workdir.glob(f"case{n}-{i}.*"):
                leftover.unlink()
    return result


def merged_case(streams: int) -> str:
    return f"esxcap run_stream x{streams} -> one merged pcapng"


def rows_for(cases: Cases) -> list[Row]:
    rows = []
    for name in cases.runs:
        m = cases.median(name)
        rows.append(Row(BENCH, name, m.describe()) if m else Row.skipped(BENCH, name, cases.error(name)))
    same, default, ours = (
        cases.median(n) for n in ("OpenSSH ssh -c aes128-gcm", "OpenSSH ssh (defaults)", ONE_STREAM)
    )
    why = "a case failed" if ours is None else ""
    ratio_same = ours.mb_s / same.mb_s if ours and same and ours.cipher == same.cipher else None
    if ours and same and ours.cipher != same.cipher:
        why = f"ciphers differ ({ours.cipher} vs {same.cipher})"
    rows.append(Row.ratio(BENCH, "esxcap / OpenSSH same cipher", ratio_same, TARGET_SAME, why))
    ratio_default = ours.mb_s / default.mb_s if ours and default else None
    rows.append(Row.ratio(BENCH, "esxcap / OpenSSH defaults", ratio_default, TARGET_DEFAULT, why))
    for streams in MERGED_STREAMS:
        merged = cases.median(merged_case(streams))
        cost = merged.cpu_per_gib / ours.cpu_per_gib if merged and ours else None
        case = f"CPU s/GiB x{streams} merged / one stream"
        rows.append(Row.at_most(BENCH, case, cost, TARGET_MERGED_CPU, "a case failed"))
    return rows


def run(options: Options) -> list[Row]:
    """The throughput rows of the benchmark table (`python -m bench`)."""
    workdir = Path(tempfile.mkdtemp(prefix="esxcap-bench-", dir=options.workdir))
    try:
        try:
            sshd = OpenSshd.start(workdir / "sshd")
        except SshdUnavailable as exc:
            return [Row.skipped(BENCH, "OpenSSH sshd cases", str(exc))]
        with sshd:
            return rows_for(measure(options, workdir, sshd))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--child":
        return child_main(argv[1])
    print("usage: python -m bench.throughput --child CONFIG_JSON (use `python -m bench` instead)")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
