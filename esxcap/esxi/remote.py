"""The one place where argv lists become remote command lines, and batches of them become one script.

Nothing else in esxcap builds a shell string: every value a user typed reaches the host through
`command_line`, quoted once with POSIX single quotes (what BusyBox ash on ESXi expects).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass


def command_line(argv: Sequence[str]) -> str:
    """Quote argv for the remote POSIX shell."""
    if not argv:
        raise ValueError("empty argv")
    return shlex.join(argv)


@dataclass(frozen=True)
class Batch:
    """Several commands run in one exec round trip, each followed by a marker line with its exit status.

    The marker holds a random token, so no command output can fake a section boundary.
    """

    commands: tuple[tuple[str, ...], ...]
    token: str

    def argv(self) -> list[str]:
        """`sh -c SCRIPT`: each command with stderr folded into stdout, then `echo MARKER $?`."""
        lines = [
            f"{command_line(cmd)} 2>&1; echo {command_line([self.marker(i)])} $?"
            for i, cmd in enumerate(self.commands)
        ]
        return ["sh", "-c", "\n".join(lines)]

    def marker(self, index: int) -> str:
        return f"ESXCAP-{self.token}-{index}"

    def split(self, output: str) -> list[tuple[str, int | None]]:
        """Per command: its output text and exit status (None when its marker never came)."""
        results: list[tuple[str, int | None]] = []
        rest = output
        for i in range(len(self.commands)):
            head, sep, tail = rest.partition(self.marker(i) + " ")
            if not sep:
                results.append((rest, None))
                rest = ""
                continue
            status_text, _, rest = tail.partition("\n")
            results.append((head, int(status_text) if status_text.strip().isdigit() else None))
        return results
