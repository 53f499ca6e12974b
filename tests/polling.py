"""Waiting in tests for something another process or thread will do."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout` seconds passed; its last answer as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())
