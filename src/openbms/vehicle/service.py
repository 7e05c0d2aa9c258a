"""What a request may do, whatever transport carried it: authorize, read, and request a set.

Both the WebSocket and the HTTP transport call these methods, so the rules (scope,
replay, audit-before-acknowledge) live in one place. Errors are `VissError`s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import vss
from .auth import Access, AuthError, Authority
from .hub import Requester, SignalHub
from .store import AuditRecord, Store
from .viss import Filters, VissError, bad_request


@dataclass(frozen=True)
class SetOutcome:
    path: str
    applied: object
    time_s: float
    reason: str


class VehicleService:
    def __init__(self, hub: SignalHub, store: Store, authority: Authority, clock: Callable[[], float] = time.time):
        self.hub, self.store, self.authority, self.clock = hub, store, authority, clock
        self._set_lock = threading.Lock()  # replay check, decision and audit of one set happen together

    def authorize(self, token: object) -> Access:
        try:
            return self.authority.verify(token)
        except AuthError as exc:
            raise VissError(exc.number, exc.reason, exc.message) from None

    def select(self, access: Access, path: str, filters: Filters) -> list[str]:
        """The leaves a read or subscription covers, each of which the token must be allowed to read."""
        try:
            leaves = vss.select(path, list(filters.paths) if filters.paths else None)
        except vss.UnknownPath as exc:
            raise VissError(404, "invalid_path", str(exc)) from None
        except vss.InvalidValue as exc:
            raise bad_request(str(exc)) from None
        for leaf in leaves:
            if not access.can_read(leaf):
                raise VissError(403, "user_forbidden", f"grant {access.grant_id} ({access.app}) may not read {leaf}")
        return leaves

    def read(self, access: Access, path: str, filters: Filters) -> list[tuple[str, object, float]]:
        """(path, value, ts) of every covered leaf that has a value; 404 unavailable_data if none has."""
        leaves = self.select(access, path, filters)
        values = self.hub.read_many(leaves)
        found = [(leaf, value, ts) for leaf, (value, ts) in values.items() if ts is not None]
        if not found:
            raise VissError(404, "unavailable_data", f"the BMS has not published {path} yet")
        return found

    def metadata(self, path: str) -> dict:
        """The catalogue's static metadata of a subtree: public, as the VSS specification is."""
        try:
            return vss.metadata(path)
        except vss.UnknownPath as exc:
            raise VissError(404, "invalid_path", str(exc)) from None

    def request_set(self, access: Access, path: str, value: object, request_id: str) -> SetOutcome:
        """Ask the BMS to apply a value; the request and its outcome are audited before this returns.

        Blocking (a database write): call it from a worker thread in async code.
        """
        with self._set_lock:
            try:
                outcome = self._decide(access, path, value, request_id)
            except VissError as exc:
                if exc.reason != "duplicate_request":
                    self._audit(access, path, value, request_id, None, False, exc.message)
                raise
            self._audit(access, path, value, request_id, outcome.applied, True, outcome.reason)
            return outcome

    def _decide(self, access: Access, path: str, value: object, request_id: str) -> SetOutcome:
        if self.store.seen_request(access.grant_id, request_id):
            raise VissError(409, "duplicate_request", f"requestId {request_id!r} was already used by grant "
                                                      f"{access.grant_id}: a replayed command is refused")
        try:
            node = vss.node(path)
        except vss.UnknownPath as exc:
            raise VissError(404, "invalid_path", str(exc)) from None
        if node.type != "actuator":
            raise VissError(401, "read_only", f"{path} is a {node.type}; only actuators can be set")
        if not access.can_actuate(path):
            raise VissError(403, "user_forbidden", f"grant {access.grant_id} ({access.app}) may not actuate {path}")
        try:
            result = self.hub.request_set(path, value, Requester(access.app, access.grant_id, request_id))
        except vss.InvalidValue as exc:
            raise bad_request(str(exc)) from None
        if not result.accepted:
            raise VissError(409, "refused_by_bms", result.reason or "the BMS refused the request")
        return SetOutcome(path, result.applied, self.clock(), result.reason)

    def _audit(self, access: Access, path: str, requested: object, request_id: str, applied: object,
               accepted: bool, reason: str) -> None:
        self.store.record_set(AuditRecord(self.clock(), access.app, access.grant_id, request_id, path,
                                          _jsonable(requested), _jsonable(applied), accepted, reason))


def _jsonable(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, list, type(None))) else repr(value)
