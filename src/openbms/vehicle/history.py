"""State history for the dashboard's charts: the latest scalar values, written once per period.

The runtime may publish far faster than a chart needs, and cell-voltage arrays would
swamp the database, so only scalar signals are kept, at most one sample per signal and
period, in one transaction off the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from . import vss
from .hub import SignalHub
from .store import Store

log = logging.getLogger(__name__)


class HistoryRecorder:
    def __init__(self, hub: SignalHub, store: Store, period_s: float = 1.0):
        if not period_s > 0:
            raise ValueError(f"the history period must be positive, got {period_s}")
        self.hub, self.store, self.period_s = hub, store, period_s
        self._pending: dict[str, tuple[object, float]] = {}
        self._listener_key: int | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._listener_key = self.hub.add_listener(self._on_publish, asyncio.get_running_loop())
        self._task = asyncio.create_task(self._write_forever())

    async def stop(self) -> None:
        if self._listener_key is not None:
            self.hub.remove_listener(self._listener_key)
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def flush(self) -> None:
        samples, self._pending = [(ts, path, value) for path, (value, ts) in self._pending.items()], {}
        if samples:
            await asyncio.to_thread(self.store.append_history, samples)

    def _on_publish(self, values: dict[str, tuple[object, float]]) -> None:
        self._pending.update(
            (path, point) for path, point in values.items() if not vss.node(path).datatype.endswith("[]")
        )

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.flush()
            except Exception:  # keep recording after a database hiccup; the samples of that period are lost
                log.exception("writing state history failed")
