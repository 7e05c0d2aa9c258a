"""Subscriptions: which connection hears about which signals, when, and until its grant ends.

One hub listener fans every publish out to the subscriptions indexed by signal; a
timebased subscription has its own timer instead. A watcher ends subscriptions whose
grant expired or was revoked (also by another process on the same database) with a
VISS error notification, so a revocation reaches live streams within a second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from .auth import Access
from .hub import SignalHub
from .service import VehicleService
from .viss import ChangeFilter, VissError, data_points, timestamp

log = logging.getLogger(__name__)
Send = Callable[[dict | str], None]  # a message, or one already serialised


@dataclass(eq=False)
class Subscription:
    id: str
    access: Access
    leaves: tuple[str, ...]
    send: Send
    period_s: float | None = None
    change: ChangeFilter | None = None
    last_sent: dict[str, object] = field(default_factory=dict)
    timer: asyncio.Task | None = None

    def notify(self, values: list[tuple[str, object, float]], now: float, shared: dict | None = None) -> None:
        """Send the values that pass the filter; `shared` caches their JSON across the subscriptions of one
        publish, so a thousand subscribers to one signal cost one serialisation, not a thousand."""
        if self.change is not None:
            values = [v for v in values if self.change.passes(self.last_sent.get(v[0]), v[1])]
        if not values:
            return
        self.last_sent.update((path, value) for path, value, _ in values)
        key = tuple((path, ts) for path, _, ts in values)
        shared = {} if shared is None else shared
        if key not in shared:
            shared[key] = json.dumps(data_points(values))
        self.send(f'{{"action": "subscription", "subscriptionId": "{self.id}", "data": {shared[key]}, '
                  f'"ts": "{timestamp(now)}"}}')


class Fanout:
    """All live subscriptions of one server."""

    def __init__(self, hub: SignalHub, service: VehicleService, watch_period_s: float = 1.0):
        self.hub, self.service, self.watch_period_s = hub, service, watch_period_s
        self._subscriptions: dict[str, Subscription] = {}
        self._by_leaf: dict[str, set[Subscription]] = {}
        self._ids = itertools.count(1)
        self._listener_key: int | None = None
        self._watcher: asyncio.Task | None = None

    def start(self) -> None:
        self._listener_key = self.hub.add_listener(self._on_publish, asyncio.get_running_loop())
        self._watcher = asyncio.create_task(self._watch_grants())

    async def stop(self) -> None:
        if self._listener_key is not None:
            self.hub.remove_listener(self._listener_key)
        for task in [self._watcher, *(s.timer for s in self._subscriptions.values())]:
            if task is not None:
                task.cancel()
        self._subscriptions.clear()
        self._by_leaf.clear()

    def add(self, access: Access, leaves: list[str], send: Send, period_s: float | None,
            change: ChangeFilter | None) -> Subscription:
        sub = Subscription(str(next(self._ids)), access, tuple(leaves), send, period_s, change)
        self._subscriptions[sub.id] = sub
        if period_s is None:
            for leaf in leaves:
                self._by_leaf.setdefault(leaf, set()).add(sub)
        else:
            sub.timer = asyncio.create_task(self._tick(sub))
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
            sub.send({"action": "subscription", "subscriptionId": sub.id, "error": error.as_dict(),
                      "ts": timestamp(self.service.clock())})

    def _on_publish(self, values: dict[str, tuple[object, float]]) -> None:
        now = self.service.clock()
        touched: dict[Subscription, list] = {}
        for path, (value, ts) in values.items():
            for sub in self._by_leaf.get(path, ()):
                touched.setdefault(sub, []).append((path, value, ts))
        shared: dict = {}
        for sub, points in touched.items():
            sub.notify(points, now, shared)

    async def _tick(self, sub: Subscription) -> None:
        while True:
            values = self.hub.read_many(sub.leaves)
            sub.notify([(p, v, ts) for p, (v, ts) in values.items() if ts is not None], self.service.clock())
            await asyncio.sleep(sub.period_s)

    async def _watch_grants(self) -> None:
        while True:
            await asyncio.sleep(self.watch_period_s)
            try:
                await self._end_dead_grants()
            except Exception:  # a database hiccup must not stop the watcher
                log.exception("checking subscription grants failed")

    async def _end_dead_grants(self) -> None:
        grants = {s.access.grant_id: s.access for s in self._subscriptions.values()}
        if not grants:
            return
        now = self.service.clock()
        for grant_id, access in grants.items():
            if now >= access.expires_at:
                self.end_grant(grant_id, VissError(401, "token_expired", "the access token has expired"))
        revoked = await asyncio.to_thread(self.service.store.revoked_among, grants)
        for grant_id in revoked:
            self.end_grant(grant_id, VissError(401, "token_invalid", f"the owner revoked grant {grant_id}"))
