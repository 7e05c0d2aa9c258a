"""Protections that keep one misbehaving client from hurting the others."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 16_384  # larger requests get a 413 error object; the connection stays open
    max_frame_bytes: int = 1_048_576  # larger frames close that connection (1009) before they are buffered
    max_subscriptions: int = 64  # per connection
    requests_per_s: float = 50.0  # token bucket per access token (or per connection without one)
    burst: float = 100.0
    send_queue: int = 1_000  # notifications waiting for a slow client before it is disconnected
    send_queue_bytes: int = 4_194_304  # ... or this many bytes of them
    refusal_window_s: float = 60.0  # the audit counts a client's repeated refusals per window (`refusals.py`)
    refusal_kinds: int = 100  # ... and at most this many different ones get a row each, the rest one row

    def validate(self) -> Limits:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value}")
        if self.max_message_bytes > self.max_frame_bytes:
            raise ValueError("Limits.max_message_bytes cannot exceed max_frame_bytes")
        return self


class RateLimiter:
    """Token buckets by key: `rate` requests per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.rate, self.burst, self._clock, self._max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max_keys:  # forget full buckets: they behave like new ones
            self._buckets = {
                k: v for k, v in self._buckets.items() if min(self.burst, v[0] + (now - v[1]) * self.rate) < self.burst
            }
        return allowed
