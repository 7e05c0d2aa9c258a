"""Waiting on what a test needs, not on the clock: a loaded machine (or a first numba compile) may take
minutes where a quiet one takes milliseconds, so the bound only ends a test that hangs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")
PATIENCE_S = 300.0
# HTTP for tests: httpx's own functions give up after 5 s, which a set's commit (an fsync) can take on a loaded
# machine; this client waits as long as `wait_for` does.
http = httpx.Client(timeout=PATIENCE_S)


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = PATIENCE_S, poll_s: float = 0.05) -> T:
    """The first truthy value of `condition()`; AssertionError naming `what` if none comes within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} (waited {timeout_s:g} s)"
        time.sleep(poll_s)
    return value
