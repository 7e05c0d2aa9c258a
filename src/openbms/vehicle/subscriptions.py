"""Subscriptions: which connection hears about which signals, when, and until its grant ends.

One hub listener fans every publish out to the subscriptions indexed by signal, each of which
notifies, waits for its trigger (change, range: evaluated on its first signal, as VISS says) or
buffers for curve logging; a timebased subscription has its own timer instead. A watcher ends
subscriptions whose grant expired or was revoked (also by another process on the same database)
with a VISS error notification, so a revocation reaches live streams within a second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .auth import Access
from .errors import VissError, revoked_grant
from .filters import CurveLog, Filters, Trigger, essential_points
from .hub import SignalHub
from .service import VehicleService, stale_error
from .viss import data_points, series, timestamp

log = logging.getLogger(__name__)
Send = Callable[[dict | str], None]  # a message, or one already serialised
Values = list[tuple[str, object, float]]  # (path, value, ts)


@dataclass(eq=False)
class Subscription:
    id: str
    access: Access
    leaves: tuple[str, ...]
    send: Send
    period_s: float | None = None
    trigger: Trigger | None = None
    curvelog: CurveLog | None = None
    last_sent: dict[str, object] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, list[tuple[object, float]]] = field(default_factory=dict)
    timer: asyncio.Task | None = None

    def offer(self, values: Values, now: float, shared: dict | None = None) -> None:
        """New values of some of this subscription's signals: notify, wait for the trigger, or buffer them.
        Each published value is offered once (the current values that start an event subscription may also
        be in a publish already on its way)."""
        values = [v for v in values if v[2] > self.last_ts.get(v[0], -math.inf)]
        self.last_ts.update((path, ts) for path, _, ts in values)
        if not values:
            return
        if self.curvelog is not None:
            self._log(values, now, self.curvelog)
        elif self.trigger is None or self._fires(values, self.trigger):
            self.notify(values, now, shared)

    def notify(self, values: Values, now: float, shared: dict | None = None) -> None:
        """Send these values; `shared` caches their JSON across the subscriptions of one publish, so a
        thousand subscribers to one signal cost one serialisation, not a thousand."""
        if not values:
            return
        self.last_sent.update((path, value) for path, value, _ in values)
        key = tuple((path, ts) for path, _, ts in values)
        shared = {} if shared is None else shared
        if key not in shared:
            shared[key] = json.dumps(data_points(values))
        self.send(
            f'{{"action": "subscription", "subscriptionId": "{self.id}", "data": {shared[key]}, '
            f'"ts": "{timestamp(now)}"}}'
        )

    def _fires(self, values: Values, trigger: Trigger) -> bool:
        first = self.leaves[0]
        new = [value for path, value, _ in values if path == first]
        return bool(new) and trigger.fires(self.last_sent.get(first), new[0])

    def _log(self, values: Values, now: float, curvelog: CurveLog) -> None:
        """Buffer; when the first signal's buffer is full, send each signal's essential points as one series."""
        for path, value, ts in values:
            self.buffers.setdefault(path, []).append((value, ts))
        if len(self.buffers.get(self.leaves[0], ())) < curvelog.buffer_size:
            return
        curves = []
        for path in self.leaves:
            points = self.buffers.get(path)
            if points:  # numeric signals only (checked at subscribe)
                keep = essential_points(
                    [ts for _, ts in points],
                    [float(v) for v, _ in points],  # type: ignore[arg-type]
                    curvelog.max_error,
                )
                curves.append((path, [points[i] for i in keep]))
        self.buffers.clear()
        self.send({"action": "subscription", "subscriptionId": self.id, "data": series(curves), "ts": timestamp(now)})


class Fanout:
    """All live subscriptions of one server."""

    def __init__(self, hub: SignalHub, service: VehicleService, watch_period_s: float = 1.0):
        self.hub, self.service, self.watch_period_s = hub, service, watch_period_s
        self._subscriptions: dict[str, Subscription] = {}
        self._by_leaf: dict[str, set[Subscription]] = {}
        self._ids = itertools.count(1)
        self._listener_key: int | None = None
        self._watcher: asyncio.Task | None = None
        self._stale_since: float | None = None  # announced to every subscription; ticks pause meanwhile

    def __len__(self) -> int:
        return len(self._subscriptions)

    def start(self) -> None:
        self._listener_key = self.hub.add_listener(self._on_publish, asyncio.get_running_loop())
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._listener_key is not None:
            self.hub.remove_listener(self._listener_key)
        for task in [self._watcher, *(s.timer for s in self._subscriptions.values())]:
            if task is not None:
                task.cancel()
        self._subscriptions.clear()
        self._by_leaf.clear()

    def add(self, access: Access, leaves: list[str], send: Send, filters: Filters) -> Subscription:
        sub = Subscription(
            str(next(self._ids)), access, tuple(leaves), send, filters.period_s, filters.trigger, filters.curvelog
        )
        self._subscriptions[sub.id] = sub
        if sub.period_s is None:
            for leaf in leaves:
                self._by_leaf.setdefault(leaf, set()).add(sub)
        else:
            sub.timer = asyncio.create_task(self._tick(sub, sub.period_s))
        return sub

    def remove(self, subscription_id: str) -> None:
        sub = self._subscriptions.pop(subscription_id, None)
        if sub is None:
            return
        for leaf in sub.leaves:
            self._by_leaf.get(leaf, set()).discard(sub)
        if sub.timer is not None:
            sub.timer.cancel()

    def end_grant(self, grant_id: str, error: VissError) -> None:
        """Close every subscription of a grant with an error notification."""
        for sub in [s for s in self._subscriptions.values() if s.access.grant_id == grant_id]:
            self.remove(sub.id)
            sub.send(
                {
                    "action": "subscription",
                    "subscriptionId": sub.id,
                    "error": error.as_dict(),
                    "ts": timestamp(self.service.clock()),
                }
            )

    def _on_publish(self, values: dict[str, tuple[object, float]]) -> None:
        now = self.service.clock()
        touched: dict[Subscription, list] = {}
        for path, (value, ts) in values.items():
            for sub in self._by_leaf.get(path, ()):
                touched.setdefault(sub, []).append((path, value, ts))
        shared: dict = {}
        for sub, points in touched.items():
            sub.offer(points, now, shared)

    async def _tick(self, sub: Subscription, period_s: float) -> None:
        while True:
            if self._stale_since is None:
                values = self.hub.read_many(sub.leaves)
                sub.notify([(p, v, ts) for p, (v, ts) in values.items() if ts is not None], self.service.clock())
            await asyncio.sleep(period_s)

    async def _watch(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.watch_period_s)
            self._announce_staleness()
            try:
                await self._end_dead_grants()
                failing = False
            except Exception:  # a database hiccup must not stop the watcher; said once, not every second
                if not failing:
                    log.exception("checking subscription grants failed; retrying every %g s", self.watch_period_s)
                failing = True

    def _announce_staleness(self) -> None:
        """When the BMS falls silent, every subscription hears a 503 error event once; values resume with it."""
        since = self.hub.stale_since()
        if since is not None and self._stale_since is None:
            error = stale_error(since).as_dict()
            for sub in self._subscriptions.values():
                sub.send(
                    {
                        "action": "subscription",
                        "subscriptionId": sub.id,
                        "error": error,
                        "ts": timestamp(self.service.clock()),
                    }
                )
        self._stale_since = since

    async def _end_dead_grants(self) -> None:
        grants = {s.access.grant_id: s.access for s in self._subscriptions.values()}
        if not grants:
            return
        now = self.service.clock()
        for grant_id, access in grants.items():
            if now >= access.expires_at:
                self.end_grant(
                    grant_id, VissError("expired_token", "Access token has expired: ask the owner for a new grant")
                )
        revoked = await asyncio.to_thread(self.service.store.revoked_among, grants)
        for grant_id in revoked:
            self.end_grant(grant_id, revoked_grant(grant_id))
