"""Running the real `esxcap` CLI in a subprocess, isolated from the user's SSH setup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """No ssh-agent, no ~/.ssh/config, a private HOME; wide terminal so tables do not fold."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "ESXCAP_"))}
    env.update(HOME=str(home), ESXCAP_SSH_CONFIG="", COLUMNS="200", NO_COLOR="1", PYTHONUTF8="1")
    env.update(extra)
    return env


def _ignore_child_signals() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def esxcap(
    *args: str,
    env: dict[str, str],
    timeout: float = 120,
    cwd: Path | None = None,
    ignore_sigchld: bool = False,
) -> CliResult:
    """Run the CLI; `ignore_sigchld` starts it the way a parent that ignores SIGCHLD would."""
    proc = subprocess.run(
        [sys.executable, "-m", "esxcap", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        preexec_fn=_ignore_child_signals if ignore_sigchld else None,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
