"""`esxcap doctor`: a self-check of one host that settles what esxcap cannot know from here.

Each check is a small function of a `Probe` (the open connection and what earlier checks learned) that
returns findings; CHECKS runs them in order, and a check that fails becomes a finding, never a crash.
Captures are short and counted (`-c`, a 64-byte snap length, on the first vmknic) and stopped by their
own PID, so a check costs the host no traffic and leaves nothing behind. The results are remembered per
ESXi build (`esxcap.ssh.doctor_cache`) for captures to use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from esxcap.errors import EsxcapError, UsageError
from esxcap.esxi import parsers, selfcheck
from esxcap.esxi.capabilities import Capabilities, parse_available_points
from esxcap.esxi.lifecycle import GRACE_SECONDS, new_marker, reported_exit, reported_pid, wrapper_argv
from esxcap.esxi.models import EsxiVersion
from esxcap.esxi.pktcap import CaptureSpec, Selector, build_argv
from esxcap.inventory import HostConfig
from esxcap.ssh.transport import Connection, RemoteProcess

Status = Literal["ok", "warn", "fail", "info"]
PROBE_COUNT = 1000
PROBE_SNAPLEN = 64
PROBE_DEADLINE_S = 60
SIGNAL_WAIT_S = 3.0
START_WAIT_S = 10.0
LATENCY_SAMPLES = 2
LOW_TMP_MB = 50.0
CHECK_TIMEOUT_S = 45.0
VMKNIC_PORT_TYPE = 3


@dataclass(frozen=True)
class Finding:
    """One thing the check settled: a key, a verdict, one line for people, and the measured values."""

    key: str
    status: Status
    summary: str
    data: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class HostReport:
    """Everything `doctor` found on one host."""

    host: str
    version: EsxiVersion | None
    findings: tuple[Finding, ...]

    def as_dict(self) -> dict[str, object]:
        version = self.version
        return {
            "host": self.host,
            "esxi": None if version is None else {"version": version.version, "build": version.build},
            "findings": [
                {"check": f.key, "status": f.status, "summary": f.summary, "data": f.data}
                for f in self.findings
            ],
        }


@dataclass
class Probe:
    """The host being checked and what the checks so far learned about it."""

    host: HostConfig
    conn: Connection
    version: EsxiVersion | None = None
    caps: Capabilities | None = None
    vmknic: str = "vmk0"

    async def text(self, argv: list[str], timeout: float | None = None) -> tuple[int | None, str]:
        result = await self.conn.run(argv, timeout=timeout or self.host.command_timeout)
        return result.exit_status, (result.stdout + result.stderr).decode("utf-8", "replace")


async def check_ssh(probe: Probe) -> list[Finding]:
    algorithms = probe.conn.algorithms
    summary = f"{algorithms.get('cipher')}, host key {algorithms.get('host_key')}"
    return [Finding("ssh", "info", f"{summary}, server {algorithms.get('server_version')}", dict(algorithms))]


async def check_version(probe: Probe) -> list[Finding]:
    _, text = await probe.text(["vmware", "-vl"])
    probe.version = parsers.parse_vmware_vl(text)
    probe.caps = Capabilities.for_version(probe.version.version_tuple)
    _, netstats = await probe.text(["net-stats", "-l"])
    vmknics = [p.client_name for p in parsers.parse_net_stats(netstats) if p.type == VMKNIC_PORT_TYPE]
    probe.vmknic = vmknics[0] if vmknics else probe.vmknic
    v = probe.version
    return [Finding("version", "info", f"{v.product} {v.version} build {v.build}", {"build": v.build})]


async def check_account(probe: Probe) -> list[Finding]:
    user = probe.host.username
    lockdown = "logged in, so lockdown mode is off or this account is one of its exception users"
    if user == "root":
        return [Finding("account", "ok", f"root; {lockdown}", {"user": user})]
    hint = "other accounts need the Administrator role to run esxcli and pktcap-uw"
    return [Finding("account", "warn", f"{user}: {hint}; {lockdown}", {"user": user})]


async def check_shell_timeouts(probe: Probe) -> list[Finding]:
    values: dict[str, int | None] = {}
    for path in (selfcheck.SHELL_TIMEOUT, selfcheck.SHELL_INTERACTIVE_TIMEOUT):
        status, text = await probe.text(["esxcli", "system", "settings", "advanced", "list", "-o", path])
        values[path] = selfcheck.advanced_int(text) if status == 0 else None
    idle, service = values[selfcheck.SHELL_INTERACTIVE_TIMEOUT], values[selfcheck.SHELL_TIMEOUT]
    data: dict[str, object] = {"interactive_timeout_s": idle, "service_timeout_s": service}
    if idle is None or service is None:
        return [Finding("shell_timeouts", "info", "the shell timeouts could not be read", data)]
    notes = []
    if service:
        notes.append(f"the SSH service stops {service} s after it was started (open sessions stay)")
    if idle:
        return [Finding("shell_timeouts", "warn", f"idle sessions are closed after {idle} s", data)]
    return [Finding("shell_timeouts", "ok", "; ".join(notes) or "no shell timeouts", data)]


async def check_esxcli_latency(probe: Probe) -> list[Finding]:
    samples = []
    for _ in range(LATENCY_SAMPLES):
        start = time.perf_counter()
        await probe.text(["esxcli", "system", "version", "get"])
        samples.append(round((time.perf_counter() - start) * 1000))
    worst = max(samples)
    status: Status = "warn" if worst > 2000 else "info"
    return [Finding("esxcli_latency", status, f"{worst} ms per esxcli call", {"samples_ms": samples})]


async def check_busybox(probe: Probe) -> list[Finding]:
    _, text = await probe.text(["busybox"])
    version = selfcheck.busybox_version(text)
    status: Status = "info" if version else "warn"
    return [Finding("busybox", status, f"BusyBox {version or 'version unknown'}", {"version": version})]


async def check_tmp_space(probe: Probe) -> list[Finding]:
    _, text = await probe.text(["vdf", "-h"])
    free = selfcheck.ramdisk_free_mb(text)
    if free is None:
        return [
            Finding("tmp_space", "info", "free space on /tmp unknown (vdf -h unreadable)", {"free_mb": None})
        ]
    status: Status = "warn" if free < LOW_TMP_MB else "ok"
    return [Finding("tmp_space", status, f"{free:.0f} MiB free on the /tmp RAM disk", {"free_mb": free})]


async def check_clock(probe: Probe) -> list[Finding]:
    _, text = await probe.text(["date", "+%s.%N"])
    precision = selfcheck.date_precision(text)
    data: dict[str, object] = {"date_reply": text.strip()[:40], "precision": precision}
    if precision == "nanoseconds":
        return [Finding("clock", "ok", "date +%N works: clock offsets to the round trip", data)]
    return [Finding("clock", "warn", "date prints no %N: clock offsets are whole seconds (±0.5 s)", data)]


async def check_capture_points(probe: Probe) -> list[Finding]:
    status, text = await probe.text(["pktcap-uw", "-A"])
    try:
        points = parse_available_points(text) if status == 0 else ()
    except EsxcapError as error:
        return [Finding("capture_points", "warn", f"pktcap-uw -A unreadable: {error.message}", {})]
    if not points:
        return [
            Finding("capture_points", "warn", "pktcap-uw -A listed nothing; the version table is used", {})
        ]
    if probe.caps is not None:
        probe.caps = probe.caps.with_points(points)
    return [
        Finding("capture_points", "ok", f"pktcap-uw -A lists {len(points)} points", {"points": list(points)})
    ]


@dataclass
class _Stopped:
    """One short capture stopped by a signal to its PID."""

    first_bytes: bytes = b""
    ended: bool = False
    seconds: float | None = None
    exit_status: int | None = None
    trailer: tuple[int, int] | None = None
    term_after_int: bool = False


async def _drain(proc: RemoteProcess, into: _Stopped) -> None:
    while chunk := await proc.read():
        if len(into.first_bytes) < 24:
            into.first_bytes += chunk[: 24 - len(into.first_bytes)]


async def _stop_by_signal(probe: Probe, signal: str) -> _Stopped:
    """A counted capture under the wrapper, sent `kill -SIGNAL` once it runs; TERM if INT did nothing."""
    assert probe.caps is not None
    spec = CaptureSpec(Selector("vmk", probe.vmknic), count=PROBE_COUNT, snaplen=PROBE_SNAPLEN)
    argv = build_argv(spec, probe.caps, probe.host.name)
    proc = await probe.conn.start(wrapper_argv(new_marker(), PROBE_DEADLINE_S, argv))
    result = _Stopped()
    reader = asyncio.create_task(_drain(proc, result))
    try:
        async with asyncio.timeout(START_WAIT_S):
            while (pid := reported_pid(proc.stderr())) is None:
                await proc.stderr_changed()
        start = time.perf_counter()
        await probe.text(["kill", f"-{signal}", str(pid)])
        status = await proc.wait(SIGNAL_WAIT_S)
        if status is None and signal == "INT":
            result.term_after_int = True
            await probe.text(["kill", "-TERM", str(pid)])
            status = await proc.wait(SIGNAL_WAIT_S)
        result.ended = status is not None and not result.term_after_int
        result.seconds = time.perf_counter() - start if result.ended else None
    finally:
        proc.close_stdin()
        status = await proc.wait(3 * GRACE_SECONDS + 5)
        await asyncio.wait_for(reader, 5)
    result.exit_status = reported_exit(proc.stderr())
    result.trailer = selfcheck.trailer_counts(proc.stderr())
    return result


async def check_signals(probe: Probe) -> list[Finding]:
    """-o - starts with the pcap magic; INT and TERM sent to pktcap-uw under the wrapper."""
    if probe.caps is None:
        return [Finding("stream", "fail", "skipped: the ESXi version is unknown", {})]
    try:
        by_int = await _stop_by_signal(probe, "INT")
    except UsageError as error:
        return [Finding("stream", "fail", f"no streamed capture here: {error.message}", {})]
    pcap = selfcheck.pcap_start(by_int.first_bytes)
    stream = (
        Finding("stream", "ok", f"-o - starts with the {pcap} header", {"format": pcap})
        if pcap
        else Finding(
            "stream", "fail", f"-o - began with {by_int.first_bytes[:16]!r}, not pcap", {"format": None}
        )
    )
    trailer = {"trailer": by_int.trailer, "exit_status": by_int.exit_status}
    if by_int.ended:
        said = "with its trailer" if by_int.trailer else "but wrote no trailer"
        sigint = Finding(
            "sigint", "ok" if by_int.trailer else "warn",
            f"INT stops pktcap-uw under the wrapper in {by_int.seconds:.1f} s, {said}",
            {"stops": True, "seconds": round(by_int.seconds or 0, 2), **trailer},
        )  # fmt: skip
        by_term = await _stop_by_signal(probe, "TERM")
    else:
        sigint = Finding(
            "sigint", "warn",
            f"INT does not stop pktcap-uw under the wrapper ({SIGNAL_WAIT_S:.0f} s): each stop waits the "
            f"{GRACE_SECONDS} s grace, ends with TERM and loses the trailer (drop count)",
            {"stops": False, **trailer},
        )  # fmt: skip
        by_term = by_int
    if by_term.ended or by_term.term_after_int:
        kept = "writes its trailer" if by_term.trailer else "no trailer"
        term = Finding("sigterm", "info", f"TERM ends pktcap-uw at once ({kept})", {"stops": True})
    else:
        term = Finding(
            "sigterm", "warn", "TERM did not end pktcap-uw; the wrapper used KILL", {"stops": False}
        )
    return [stream, sigint, term]


Check = Callable[[Probe], Awaitable[list[Finding]]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("ssh", check_ssh),
    ("version", check_version),
    ("account", check_account),
    ("shell_timeouts", check_shell_timeouts),
    ("esxcli_latency", check_esxcli_latency),
    ("busybox", check_busybox),
    ("tmp_space", check_tmp_space),
    ("clock", check_clock),
    ("capture_points", check_capture_points),
    ("stream", check_signals),
)


async def run_doctor(host: HostConfig, conn: Connection) -> HostReport:
    """Every check on one host, in order; a check that fails is reported and the next one runs, unless
    the host stopped answering (then the rest are reported skipped: the whole stays under two minutes)."""
    probe = Probe(host, conn)
    findings: list[Finding] = []
    answering = True
    for key, check in CHECKS:
        if not answering:
            findings.append(Finding(key, "fail", "skipped: the host stopped answering", {}))
            continue
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                findings += await check(probe)
        except EsxcapError as error:
            findings.append(Finding(key, "fail", f"could not check: {error.message}", {}))
        except TimeoutError:
            answering = False
            findings.append(Finding(key, "fail", f"no answer within {CHECK_TIMEOUT_S:.0f} s", {}))
    return HostReport(host.name, probe.version, tuple(findings))
