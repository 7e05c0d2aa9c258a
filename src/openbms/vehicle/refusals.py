"""Refused requests into the audit log, so that a flood of them cannot fill the disk.

Every request that tries to change something and is refused is audited with its reason. A hostile or
broken client can send thousands a second; one row each would grow the database without bound and
take the write lock from the BMS's own commits. So, per client (the grant its token names, else its
address) and per window of `window_s` from its first refusal: the first of each distinct refusal (the
same request, value and reason) is a row at once, its repeats only count on that row; past
`kinds_per_window` distinct ones, the rest of the window counts on one overflow row. A client writes at
most `kinds_per_window + 1` rows a window, however it varies its requests.

Counts reach the database when `flush` runs (the server does every second): a refusal changed nothing,
so a count a crash loses costs no command, only how often the door was tried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .store import AuditRecord, StorageError, Store

log = logging.getLogger(__name__)
_OVERFLOW = ("(overflow)",)


@dataclass
class _Row:
    row_id: int
    count: int = 1
    stored: int = 1  # the count the database has
    last_s: float = 0.0


@dataclass
class _Window:
    since_s: float
    rows: dict[tuple, _Row] = field(default_factory=dict)


class RefusalLog:
    def __init__(self, store: Store, clock: Callable[[], float], window_s: float = 60.0, kinds_per_window: int = 100):
        self.store, self.clock, self.window_s, self.kinds_per_window = store, clock, window_s, kinds_per_window
        self._windows: dict[str, _Window] = {}
        self._ended: list[_Row] = []  # rows of windows that ended before their counts were written
        self._lock = threading.Lock()

    def record(self, client: str, record: AuditRecord) -> None:
        """Audit one refusal of `client`'s (blocking when it is a new row). A database that cannot take the row
        is logged, not raised: the request is refused either way."""
        now = self.clock()
        kind: tuple = (record.path, record.request_id, repr(record.requested), record.reason)
        with self._lock:
            window = self._windows.get(client)
            if window is None or now - window.since_s >= self.window_s:
                self._ended += [] if window is None else window.rows.values()
                window = self._windows[client] = _Window(now)
            if kind not in window.rows and len(window.rows) >= self.kinds_per_window:
                kind, record = _OVERFLOW, self._overflow(client, record)
            row = window.rows.get(kind)
            if row is not None:
                row.count, row.last_s = row.count + 1, now
                return
            try:
                window.rows[kind] = _Row(self.store.add_refusal(record), last_s=now)
            except StorageError as exc:
                log.error("refused request to %s not audited: %s", record.path, exc)

    def flush(self) -> None:
        """Write the counts that grew since the last flush (one transaction); forget windows that are over."""
        now = self.clock()
        with self._lock:
            rows = self._ended + [row for window in self._windows.values() for row in window.rows.values()]
            counts = {row.row_id: (row.count, row.last_s) for row in rows if row.count != row.stored}
            if counts:
                try:
                    self.store.count_refusals(counts)
                except StorageError as exc:
                    log.error("the audit's counts of repeated refusals not written: %s", exc)
                    return
                for row in rows:
                    row.stored = row.count
            self._ended = []
            self._windows = {c: w for c, w in self._windows.items() if now - w.since_s < self.window_s}

    def _overflow(self, client: str, first: AuditRecord) -> AuditRecord:
        return replace(
            first,
            request_id="",
            requested=None,
            reason=f"more than {self.kinds_per_window} different refusals of {client} within {self.window_s:g} s: "
            f"the rest of them are counted here; the first was to {first.path or '(no path)'}: {first.reason}",
        )
