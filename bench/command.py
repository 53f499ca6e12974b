"""The real command: `esxcap capture` (the console script, end to end: start-up, discovery, wrapper, clock
probes, summary) against simulated ESXi hosts behind OpenSSH's sshd, beside OpenSSH's own client
running the same remote pktcap-uw.

The hosts are copies of the default topology's ESXi 8.0 host served by bench.esxi_sshd (BusyBox sh, the
simulator's shims). Their `pktcap-uw`, when asked to capture to stdout (`... -o -`), runs bench.pcapgen
instead: a classic pcap stream of STREAM_BYTES_FILE's byte count, written as fast as the reader takes it;
every other use (discovery's help and version probes) goes to the simulator's own pktcap-uw.

Cases (the case's bytes shared among its streams): one stream; 3 and 10 hosts merged into one file;
3 hosts with --split (the merged file plus one file per stream). Each case has two rows: its streaming
phase (from the output's first MiB to the command's end: MB/s and the CLI's CPU seconds per GiB over that
span, the CLI's CPU sampled from /proc when the mark is crossed) and the whole command (start-up,
discovery and clock probes included, which the simulated hosts make slower than real ones). Ratio rows
check the targets on the streaming phase against OpenSSH (whole `ssh` runs, same remote command)
measured in the same run.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import Options, Row, pcapgen
from bench.discovery_scale import topology_data
from bench.sim_throughput import cpu_seconds
from bench.sshd import SshdUnavailable
from bench.throughput import SAME_CIPHER, Cases, Measurement, run_openssh

BENCH = "command"
STREAM_BYTES_FILE = "stream-bytes"
MERGED = (3, 10)
SPLIT = 3
HOSTS = max(*MERGED, SPLIT)
TARGET_SAME_MB_S = 1.0
TARGET_CPU_VS_OPENSSH = 1.5
TARGET_MERGED_CPU = 1.25
STREAMING_MARK = 1 << 20
"""Output bytes from which a capture counts as streaming (start-up, discovery and clock probes done)."""
POLL_S = 0.01
ONE = "esxcap capture, 1 host"
OPENSSH_SAME = "OpenSSH ssh -c aes128-gcm, same pktcap-uw"
OPENSSH_DEFAULT = "OpenSSH ssh (defaults), same pktcap-uw"

_PKTCAP = """#!{python} -IS
import os, sys
args = sys.argv[1:]
if args[-2:] == ["-o", "-"]:
    with open({count!r}) as f:
        count = f.read().strip()
    os.execv({python!r}, [{python!r}, "-IS", {gen!r}, "--bytes", count])
os.execv({sim!r}, [{sim!r}, *args])
"""


def _install_pktcap(root: Path) -> None:
    """Put the pcapgen-backed pktcap-uw first on the hosts' PATH, the simulator's behind it."""
    from esxcap.sim.shim import write_launchers

    write_launchers(root / "simshims", sys.executable)
    gen = root / "pcapgen.py"
    shutil.copyfile(Path(pcapgen.__file__), gen)
    script = _PKTCAP.format(
        python=sys.executable,
        count=str(root / STREAM_BYTES_FILE),
        gen=str(gen),
        sim=str(root / "simshims" / "pktcap-uw"),
    )
    launcher = root / "shims" / "pktcap-uw"
    launcher.write_text(script, encoding="utf-8")
    launcher.chmod(0o755)


@dataclass(frozen=True)
class _Watched:
    usage: resource.struct_rusage
    seconds: float
    streaming_from: float | None
    """Seconds from the start until the output held STREAMING_MARK bytes (None: it never did)."""
    cpu_before_streaming: float
    size_before_streaming: int


def _watch(proc: subprocess.Popen[bytes], out: Path) -> _Watched:
    """Wait for `proc`, noting when its output `out` (being written as a private `OUT.<random>.part`)
    starts to fill and how much CPU the process had used by then."""
    start = time.perf_counter()
    streaming_from, cpu, size = None, 0.0, 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return _Watched(usage, time.perf_counter() - start, streaming_from, cpu, size)
        if streaming_from is None:
            with contextlib.suppress(OSError):
                size = sum(part.stat().st_size for part in out.parent.glob(f"{out.name}.*.part"))
                if size >= STREAMING_MARK:
                    streaming_from, cpu = time.perf_counter() - start, cpu_seconds(proc.pid)
        time.sleep(POLL_S)


def _capture(
    root: Path, inventory: Path, hosts: list[str], nbytes: int, split: bool
) -> tuple[Measurement, Measurement]:
    """One `esxcap capture` of `hosts` (nbytes shared among them), measured from the outside: the
    streaming phase (from the output's first STREAMING_MARK bytes to the command's end) and the whole
    command."""
    per_stream = nbytes // len(hosts)
    (root / STREAM_BYTES_FILE).write_text(str(per_stream))
    out = root / "out" / "capture.pcapng"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir()  # esxcap writes into an existing folder only
    argv = [sys.executable, "-m", "esxcap", "-i", str(inventory), "capture"]
    for host in hosts:
        argv += ["--host", host]
    records, _ = pcapgen.layout(per_stream)
    argv += ["--vmk", "vmk0", "--dir", "in", "-c", str(records), "-o", str(out)]  # -c: pcapgen's end is
    # the capture's end (without it, a pktcap-uw ending on its own is an error: stopped on the host)
    if split:
        argv.append("--split")
    log = root / "cli.log"
    with log.open("wb") as said:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=said, stderr=said)
        watched = _watch(proc, out)
    _, packet_bytes = pcapgen.layout(per_stream)
    wire = per_stream * len(hosts)
    error = ""
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        error = f"esxcap capture exit {proc.returncode}: {' / '.join(tail) or 'no output'}"
    elif out.stat().st_size < packet_bytes * len(hosts):
        error = f"{out.name} holds {out.stat().st_size} bytes, less than {packet_bytes * len(hosts)}"
    elif watched.streaming_from is None:
        error = "the output never reached the streaming mark"
    files = len(list(out.parent.glob("*.pcapng")))
    usage = watched.usage
    cpu = usage.ru_utime + usage.ru_stime
    note = f"{len(hosts)} streams, {files} files" if len(hosts) > 1 else ""
    whole = Measurement(
        wire, watched.seconds, cpu, usage.ru_maxrss, "esxcap's choice", error=error, note=note
    )
    if error or watched.streaming_from is None:
        return whole, whole
    before = watched.size_before_streaming * wire // max(1, out.stat().st_size)
    streaming = Measurement(
        wire - before,
        watched.seconds - watched.streaming_from,
        cpu - watched.cpu_before_streaming,
        usage.ru_maxrss,
        "esxcap's choice",
        note=note,
    )
    return streaming, whole


def _cases() -> dict[str, tuple[int, bool]]:
    """Case name -> (hosts, --split)."""
    cases = {ONE: (1, False)}
    cases.update({f"esxcap capture, {n} hosts merged": (n, False) for n in MERGED})
    cases[f"esxcap capture, {SPLIT} hosts --split"] = (SPLIT, True)
    return cases


def measure(options: Options, workdir: Path) -> Cases:
    from bench.esxi_sshd import start_esxi_sshd

    names = [f"h{i:03d}" for i in range(HOSTS)]
    tier = start_esxi_sshd(workdir / "tier", topology_data(HOSTS), names)
    try:
        _install_pktcap(tier.root)
        count = str(tier.root / STREAM_BYTES_FILE)
        remote = "pktcap-uw --vmk vmk0 --dir 1 -o -"
        result = Cases()
        for i in range(options.repeat):
            for name, (hosts, split) in _cases().items():
                streaming, whole = _capture(tier.root, tier.inventory, names[:hosts], options.nbytes, split)
                result.add(name, streaming)
                result.add(f"{name} (whole command)", whole)
            Path(count).write_text(str(options.nbytes))
            for name, cipher in ((OPENSSH_SAME, SAME_CIPHER), (OPENSSH_DEFAULT, None)):
                out = workdir / f"openssh-{i}.pcap"
                result.add(name, run_openssh(tier.sshd, remote, options.nbytes, out, cipher))
                out.unlink(missing_ok=True)
        return result
    finally:
        tier.stop()


def rows_for(cases: Cases) -> list[Row]:
    rows = []
    for name in cases.runs:
        m = cases.median(name)
        rows.append(Row(BENCH, name, m.describe()) if m else Row.skipped(BENCH, name, cases.error(name)))
    one, same = cases.median(ONE), cases.median(OPENSSH_SAME)
    why = "a case failed"
    rate = one.mb_s / same.mb_s if one and same else None
    rows.append(Row.ratio(BENCH, "1 host MB/s / OpenSSH same cipher", rate, TARGET_SAME_MB_S, why))
    cost = one.cpu_per_gib / same.cpu_per_gib if one and same else None
    rows.append(
        Row.at_most(BENCH, "1 host CPU s/GiB / OpenSSH same cipher", cost, TARGET_CPU_VS_OPENSSH, why)
    )
    for hosts in MERGED:
        merged = cases.median(f"esxcap capture, {hosts} hosts merged")
        ratio = merged.cpu_per_gib / one.cpu_per_gib if merged and one else None
        case = f"CPU s/GiB {hosts} hosts merged / 1 host"
        rows.append(Row.at_most(BENCH, case, ratio, TARGET_MERGED_CPU, why))
    return rows


def run(options: Options) -> list[Row]:
    """The real command's rows of the benchmark table (`python -m bench --only command`)."""
    with tempfile.TemporaryDirectory(prefix="esxcap-bench-command-", dir=options.workdir) as scratch:
        try:
            cases = measure(options, Path(scratch))
        except SshdUnavailable as exc:
            return [Row.skipped(BENCH, "esxcap capture behind OpenSSH", str(exc))]
    return rows_for(cases)
