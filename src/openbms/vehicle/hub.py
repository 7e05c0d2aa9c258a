"""The seam between the BMS runtime and the vehicle interface.

The runtime pushes its latest values (VSS units: SoC in percent) with `publish`, from
any thread, and decides what an actuation request does through the handler it installs
with `set_actuator_handler`. A set is a request: the `SetResult` says what the BMS
applied, and why when it refused or clamped. The handler makes its decision durable by
calling `commit` (the audit row and the state it leaves, in one transaction) before its
change takes effect, and undoes it if `commit` raises: nothing is applied that is not
recorded. Nothing here knows about sockets or tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import vss


@dataclass(frozen=True)
class Requester:
    """Who asks for an actuation: the app, its grant, and the request id (for the runtime's own logs)."""

    app: str
    grant_id: str
    request_id: str


@dataclass(frozen=True)
class SetResult:
    accepted: bool
    applied: object = None
    reason: str = ""


Commit = Callable[[SetResult, dict | None], None]  # (decision, the handler's state to keep) → durable, or raises
ActuatorHandler = Callable[[str, object, Requester, Commit], SetResult]
Listener = Callable[[dict[str, tuple[object, float]]], None]


STALE_AFTER_S = 10.0  # a BMS publishes every second; ten seconds of silence means it stopped


class SignalHub:
    """Latest value and timestamp of every catalogue signal; wakes asyncio listeners on each publish.

    The runtime's publishes are its heartbeat: after `stale_after_s` without one, every value is stale
    (`stale_since`), and the interface says so instead of serving the last values as live."""

    def __init__(self, clock: Callable[[], float] = time.time, stale_after_s: float = STALE_AFTER_S):
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self._clock, self.stale_after_s = clock, stale_after_s
        self._lock = threading.Lock()
        self._heard_at: float | None = None
        self._values: dict[str, tuple[object, float]] = {}
        self._intervals: dict[str, float] = {}  # per signal, the mean time between its publishes (moving average)
        self._listeners: dict[int, tuple[asyncio.AbstractEventLoop, Listener]] = {}
        self._handler: ActuatorHandler | None = None
        self._keys = itertools.count()

    def publish(self, values: dict[str, object], time_s: float | None = None) -> None:
        """Validate and store new values, then notify listeners on their own event loops (thread-safe)."""
        ts = self._clock() if time_s is None else float(time_s)
        checked = {path: (vss.coerce(path, value), ts) for path, value in values.items()}
        with self._lock:
            for path, (_, t) in checked.items():
                last = self._values.get(path)
                if last is not None and t > last[1]:
                    mean = self._intervals.get(path, t - last[1])
                    self._intervals[path] = mean + 0.1 * (t - last[1] - mean)
            self._values.update(checked)
            self._heard_at = self._clock()
            listeners = list(self._listeners.values())
        for loop, listener in listeners:
            if not loop.is_closed():
                loop.call_soon_threadsafe(listener, checked)

    def stale_since(self) -> float | None:
        """When the runtime last published, if that is over `stale_after_s` ago; None while it publishes
        (and before its first publish, when there is nothing to call stale)."""
        with self._lock:
            heard = self._heard_at
        return heard if heard is not None and self._clock() - heard > self.stale_after_s else None

    def read(self, path: str) -> tuple[object, float | None]:
        """(value, timestamp) of a leaf; (None, None) before the runtime first published it."""
        if not vss.node(path).is_leaf:
            raise vss.InvalidValue(f"{path} is a branch; read its signals")
        with self._lock:
            return self._values.get(path, (None, None))

    def sample_rates_hz(self, paths: Iterable[str]) -> dict[str, float | None]:
        """How often each signal is published (VISS samplerate), from the mean interval between its publishes;
        None before its second."""
        with self._lock:
            return {path: 1.0 / self._intervals[path] if path in self._intervals else None for path in paths}

    def read_many(self, paths: Iterable[str]) -> dict[str, tuple[object, float | None]]:
        with self._lock:
            return {path: self._values.get(path, (None, None)) for path in paths}

    def set_actuator_handler(self, fn: ActuatorHandler) -> None:
        """Install the runtime's decision; it is called from a worker thread, one set at a time.
        A handler that keeps state calls `commit(result, state)` before it returns and undoes its change
        if that raises; one that keeps none may return without calling it (the hub commits for it)."""
        self._handler = fn

    def request_set(self, path: str, value: object, requester: Requester, commit: Commit) -> SetResult:
        """Ask the runtime to apply a value; once committed, an accepted result's applied value is published."""
        if vss.node(path).type != "actuator":
            raise vss.InvalidValue(f"{path} is a {vss.node(path).type}, not an actuator: it cannot be set")
        value = vss.coerce(path, value)
        committed = []

        def once(result: SetResult, state: dict | None) -> None:
            commit(result, state)
            committed.append(result)

        if self._handler is None:
            result = SetResult(False, None, "the BMS runtime accepts no actuation requests right now")
        else:
            result = self._handler(path, value, requester, once)
        if not committed:
            once(result, None)
        if result.accepted and result.applied is not None:
            self.publish({path: result.applied})
        return result

    def add_listener(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> int:
        """Call `listener({path: (value, ts)})` on `loop` after every publish; returns the key to remove it."""
        key = next(self._keys)
        with self._lock:
            self._listeners[key] = (loop, listener)
        return key

    def remove_listener(self, key: int) -> None:
        with self._lock:
            self._listeners.pop(key, None)
