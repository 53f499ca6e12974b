"""What a simulated host's system utilities print: `busybox`, `vdf -h` and
`esxcli system settings advanced list -o PATH` (the shell timeouts), for `esxcap doctor`.

All layouts are INFERRED from public descriptions (REFERENCE §4.3, §9): BusyBox 1.29.3 on 8.0.3, `/tmp`
a RAM disk with about 240 MB free, the advanced options as `esxcli` record blocks.
"""

from __future__ import annotations

from esxcap.sim.shell import Output
from esxcap.sim.topology import Host

BUSYBOX_VERSION = "1.29.3"
TMP_RAMDISK_MB = (256, 16)
"""(size, used) of the `tmp` RAM disk."""

ADVANCED_OPTIONS = {
    "/UserVars/ESXiShellTimeOut": (
        "shell_timeout_s",
        "Time before automatically disabling local and remote shell access (in seconds, 0 disables).",
    ),
    "/UserVars/ESXiShellInteractiveTimeOut": (
        "shell_interactive_timeout_s",
        "Idle time before an interactive shell is automatically logged out (in seconds, 0 disables).",
    ),
}


def busybox(host: Host, args: list[str]) -> Output:
    """`busybox` alone: the banner line, then its usage (abridged)."""
    banner = f"BusyBox v{BUSYBOX_VERSION} (2019-09-04 10:42:17 PDT) multi-call binary.\n"
    if args:
        return Output.text(stderr=f"{args[0]}: applet not found\n", status=127)
    return Output.text(banner + "BusyBox is copyrighted by many authors between 1998-2015.\n")


def vdf(host: Host, args: list[str]) -> Output:
    """`vdf -h`: the RAM disks (the VMFS part of the real output is left out)."""
    if args != ["-h"]:
        return Output.text(stderr="vdf: only -h is simulated\n", status=1)
    size, used = TMP_RAMDISK_MB
    rows = [("root", 32, 4), ("etc", 28, 1), ("opt", 32, 1), ("var", 48, 2), ("tmp", size, used)]
    lines = ["Ramdisk                   Size      Used Available Use% Mounted on"]
    for name, total, taken in rows:
        free = total - taken
        lines.append(f"{name:<20}{total:>9}M{taken:>9}M{free:>9}M {taken * 100 // total:>3}% --")
    return Output.text("\n".join(lines) + "\n")


def advanced_list(host: Host, options: list[str]) -> Output:
    """`esxcli system settings advanced list -o PATH` for the shell timeouts."""
    if len(options) != 2 or options[0] not in ("-o", "--option"):
        return Output.text("Error: only -o PATH is simulated\n", status=1)  # INFERRED wording
    known = ADVANCED_OPTIONS.get(options[1])
    if known is None:
        return Output.text(f"Error: Unable to find option {options[1].rsplit('/', 1)[-1]}\n", status=1)
    field, description = known
    value = int(getattr(host, field))
    block = [
        ("Path", options[1]),
        ("Type", "integer"),
        ("Int Value", str(value)),
        ("Default Int Value", "0"),
        ("Min Value", "0"),
        ("Max Value", "86400"),
        ("String Value", ""),
        ("Default String Value", ""),
        ("Valid Characters", ""),
        ("Description", description),
    ]
    return Output.text("".join(f"   {key}: {text}\n" for key, text in block))
