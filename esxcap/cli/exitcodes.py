"""esxcap's exit codes, and the one function that turns an outcome into one.

0 all ok (also when the reader of stdout went away, `| head`), 3 partial (some hosts or streams failed),
1 all failed, 2 the command cannot be done as asked (a bad option or value, an inventory error, or a VM,
MAC, IP or file named that is not what it should be or nowhere to be found), 4 the disk filled up (the
capture stopped; its files are complete), 5 cancelled (a confirmation answered no; nothing was done),
130 interrupted. Light on purpose: the entry point imports it before anything else.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ALL_FAILED = 1
    USAGE = 2
    PARTIAL = 3
    DISK_FULL = 4
    CANCELLED = 5
    INTERRUPTED = 130


def outcome_code(failed: int, total: int, interrupted: bool = False, disk_full: bool = False) -> ExitCode:
    """The exit code of a job over `total` units (hosts, streams, uploads) of which `failed` failed
    (`disk_full`: the output's disk filled up and stopped it)."""
    if interrupted:
        return ExitCode.INTERRUPTED
    if disk_full:
        return ExitCode.DISK_FULL
    if not failed:
        return ExitCode.OK
    return ExitCode.ALL_FAILED if failed >= total else ExitCode.PARTIAL
