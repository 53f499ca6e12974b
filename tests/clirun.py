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
    """No ssh-agent, no ~/.ssh/config, a private HOME and cache (what `doctor` remembers); wide terminal
    so tables do not fold."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "ESXCAP_"))}
    env.update(HOME=str(home), ESXCAP_SSH_CONFIG="", COLUMNS="200", NO_COLOR="1", PYTHONUTF8="1")
    env.update(XDG_CACHE_HOME=str(home / ".cache"))
    env.update(extra)
    return env


def _ignore_child_signals() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


ASYNCIO_LEAKS = ("Task was destroyed but it is pending", "Task exception was never retrieved")
"""What asyncio prints when a task was left behind unawaited: never acceptable in any command's output."""

CONSOLE_SCRIPT = Path(sys.executable).with_name("esxcap")
"""The `esxcap` command the install put beside this interpreter, as an admin runs it."""


def esxcap(
    *args: str,
    env: dict[str, str],
    timeout: float = 120,
    cwd: Path | None = None,
    ignore_sigchld: bool = False,
    console_script: bool = False,
    stdin: int = subprocess.DEVNULL,
    stdout: int = subprocess.PIPE,
) -> CliResult:
    """Run the CLI (as `python -m esxcap`, or the installed console script); `ignore_sigchld` starts it
    the way a parent that ignores SIGCHLD would; `stdin`/`stdout` a descriptor of the caller's (a pty, a
    pipe), else stdin is empty and stdout is kept."""
    command = [str(CONSOLE_SCRIPT)] if console_script else [sys.executable, "-m", "esxcap"]
    proc = subprocess.run(
        [*command, *args],
        check=False,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=stdin,
        preexec_fn=_ignore_child_signals if ignore_sigchld else None,
    )
    leaked = [line for line in proc.stderr.splitlines() if line.startswith(ASYNCIO_LEAKS)]
    assert not leaked, f"esxcap {' '.join(args)} left asyncio work behind: {leaked}"
    return CliResult(proc.returncode, proc.stdout or "", proc.stderr)
