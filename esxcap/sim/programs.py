"""The programs a simulated host runs: argv -> output and exit status, for `esxcli`, `vmware`,
`net-stats`, `uname`, `hostname`, `date`, `busybox` and `vdf` (pure but for `date`, which reads the
clock; text from `esxcap.sim.render` and `esxcap.sim.host_tools`).

Error texts marked INFERRED were not seen verbatim; the `Argument type mismatch` text is verbatim
(REFERENCE §3.0). Unknown programs are the shell's business (`not found`, exit 127).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from esxcap.sim import host_tools, render
from esxcap.sim.shell import Output, Programs
from esxcap.sim.topology import Host

STRAY_LINE = "Warning: hostd is busy, the answer may be incomplete\n"  # INFERRED (a stray-line fault)

EsxcliCommand = Callable[[Host, list[str]], Output]


def _no_options(text: Callable[[Host], str]) -> EsxcliCommand:
    def run(host: Host, options: list[str]) -> Output:
        if options:
            return _esxcli_error(f"Invalid option {options[0]}")  # INFERRED wording
        return Output.text(text(host))

    return run


def _esxcli_error(message: str) -> Output:
    return Output.text(f"Error: {message}\n", status=1)


def _vm_port_list(host: Host, options: list[str]) -> Output:
    """`-w ID`, `-wID`, `--world-id ID` or `--world-id=ID`."""
    value: str | None = None
    rest = list(options)
    while rest:
        opt = rest.pop(0)
        if opt in ("-w", "--world-id"):
            if not rest:
                return _esxcli_error(f"Missing argument for option {opt}")  # INFERRED wording
            value = rest.pop(0)
        elif opt.startswith("--world-id="):
            value = opt.split("=", 1)[1]
        elif opt.startswith("-w") and not opt.startswith("--"):
            value = opt[2:]
        else:
            return _esxcli_error(f"Invalid option {opt}")  # INFERRED wording
    if value is None:
        return _esxcli_error("Missing required parameter -w|--world-id")  # INFERRED wording
    if not value.isdigit():
        return _esxcli_error(
            f"While processing '-w'. Argument type mismatch. Expecting integer value. Got '{value}'"
        )
    vm = host.vm_by_world(int(value))
    if vm is None or vm.name in host.faults.vms_gone:
        return _esxcli_error(f"Unable to find a running VM with world ID {value}")  # INFERRED wording
    return Output.text(render.vm_port_list(host, vm))


ESXCLI: dict[tuple[str, ...], EsxcliCommand] = {
    ("system", "version", "get"): _no_options(render.system_version_get),
    ("network", "vm", "list"): _no_options(render.vm_list),
    ("network", "vm", "port", "list"): _vm_port_list,
    ("network", "nic", "list"): _no_options(render.nic_list),
    ("network", "ip", "interface", "list"): _no_options(render.ip_interface_list),
    ("network", "ip", "interface", "ipv4", "get"): _no_options(render.ipv4_get),
    ("network", "vswitch", "standard", "list"): _no_options(render.vswitch_standard_list),
    ("network", "vswitch", "standard", "portgroup", "list"): _no_options(render.portgroup_list),
    ("network", "vswitch", "dvs", "vmware", "list"): _no_options(render.dvs_list),
    ("system", "settings", "advanced", "list"): host_tools.advanced_list,
}


def esxcli(host: Host, args: Sequence[str]) -> Output:
    """Global options come first, then the namespace words, then the command's options."""
    words = list(args)
    if words and words[0].startswith("-"):
        return _esxcli_error(f"Option {words[0]} is not available on this host")  # INFERRED wording
    split = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    path, options = tuple(words[:split]), words[split:]
    command = ESXCLI.get(path)
    if command is None:
        return _esxcli_error(f"Unknown command or namespace {' '.join(path)}")  # INFERRED wording
    return command(host, options)


def vmware(host: Host, args: Sequence[str]) -> Output:
    if not args or any(not re.fullmatch(r"-[vl]+", a) for a in args):
        return Output.text(stderr="Usage: vmware [-v] [-l]\n", status=1)  # INFERRED usage text
    letters = set("".join(a[1:] for a in args))
    if letters == {"v", "l"}:
        return Output.text(render.vmware_vl(host))
    return Output.text(render.vmware_v(host) if letters == {"v"} else render.vmware_l(host))


def net_stats(host: Host, args: Sequence[str]) -> Output:
    if list(args) != ["-l"]:
        return Output.text(stderr="net-stats: only -l is available on this host\n", status=1)  # INFERRED
    return Output.text(render.net_stats_l(host))


def uname(host: Host, args: Sequence[str]) -> Output:
    flag = args[0] if args else "-s"
    if len(args) > 1 or flag not in ("-a", "-s", "-n", "-r"):
        return Output.text(stderr=f"uname: invalid option -- '{flag.lstrip('-')}'\n", status=1)
    return Output.text(render.uname(host, flag))


def hostname(host: Host, args: Sequence[str]) -> Output:
    if args:
        return Output.text(stderr="hostname: setting the host name is not allowed here\n", status=1)
    return Output.text(host.name + "\n")


def host_clock_ns(host: Host) -> int:
    """The host's clock: true time + its clock_skew_ms."""
    return time.time_ns() + host.clock_skew_ms * 1_000_000


def date(host: Host, args: Sequence[str]) -> Output:
    """BusyBox `date` on the host's clock (true time + clock_skew_ms): `date` or `date +FORMAT`, where
    FORMAT may use %s and %N (nanoseconds) besides strftime's conversions; without the host's
    `date_nanoseconds` (BusyBox's FEATURE_DATE_NANO, off by default) `%N` is printed as is."""
    if len(args) > 1 or (args and not args[0].startswith("+")):
        return Output.text(stderr="date: setting the date is not allowed here\n", status=1)  # INFERRED
    now_ns = host_clock_ns(host)
    fmt = args[0][1:] if args else "%a %b %e %H:%M:%S UTC %Y"
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    fmt = fmt.replace("%s", str(seconds))
    fmt = fmt.replace("%N", f"{nanos:09d}" if host.faults.date_nanoseconds else "%%N")
    return Output.text(time.strftime(fmt, time.gmtime(seconds)) + "\n")


EVENTS_KEPT = 1000


@dataclass
class CallCount:
    """How many `esxcli` calls a host has run (the server delays each exec by its calls' latency), and
    how many execs were waiting on them at once: now and at most. `events` is what happened in order:
    `esxcli answered` when an exec's esxcli calls are done, `pktcap-uw started` when a capture starts
    (the last EVENTS_KEPT)."""

    esxcli: int = 0
    waiting: int = 0
    peak_waiting: int = 0
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))


PROGRAMS: dict[str, Callable[[Host, Sequence[str]], Output]] = {
    "esxcli": esxcli,
    "vmware": vmware,
    "net-stats": net_stats,
    "uname": uname,
    "hostname": hostname,
    "date": date,
    "busybox": lambda host, args: host_tools.busybox(host, list(args)),
    "vdf": lambda host, args: host_tools.vdf(host, list(args)),
}


def host_programs(host: Host, calls: CallCount | None = None) -> Programs:
    """The `Programs` callable for one host's shell; `calls` (when given) counts its esxcli calls."""
    counted = calls or CallCount()

    def run(argv: Sequence[str]) -> Output | None:
        if argv[0] == "esxcli":
            counted.esxcli += 1
        program = PROGRAMS.get(argv[0])
        if program is None:
            return None
        output = program(host, argv[1:])
        if " ".join(argv) in host.faults.stray_lines:
            output = Output(((2, STRAY_LINE.encode()), *output.chunks), output.status)
        return output

    return run
