"""Waiting on what a test needs, not on the clock: a loaded machine (or a first numba compile) may take
minutes where a quiet one takes milliseconds, so the bound only ends a test that hangs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
PATIENCE_S = 300.0


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = PATIENCE_S, poll_s: float = 0.05) -> T:
    """The first truthy value of `condition()`; AssertionError naming `what` if none comes within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} (waited {timeout_s:g} s)"
        time.sleep(poll_s)
    return value
