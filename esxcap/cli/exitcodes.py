"""esxcap's exit codes, and the one function that turns an outcome into one.

0 all ok, 3 partial (some hosts or streams failed), 1 all failed, 2 usage or configuration error,
130 interrupted. Light on purpose: the entry point imports it before anything else.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ALL_FAILED = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130


def outcome_code(failed: int, total: int, interrupted: bool = False) -> ExitCode:
    """The exit code of a job over `total` units (hosts, streams, uploads) of which `failed` failed."""
    if interrupted:
        return ExitCode.INTERRUPTED
    if not failed:
        return ExitCode.OK
    return ExitCode.ALL_FAILED if failed >= total else ExitCode.PARTIAL
