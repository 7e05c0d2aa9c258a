"""What a request may do, whatever transport carried it: authorize, get, and request a set.

Both the WebSocket and the HTTP transport call these methods, so the rules (scope, replay,
audit before apply and before acknowledge, what each get filter answers) live in one place. Errors are `VissError`s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import vss
from .auth import Access, AuthError, Authority
from .errors import READ_ONLY, VissError, bad_request, unknown_path
from .filters import TYPES, Filters
from .hub import Requester, SetResult, SignalHub
from .refusals import RefusalLog
from .store import AuditRecord, StorageError, Store
from .viss import data_points, series, timestamp

log = logging.getLogger(__name__)
MAX_HISTORY_POINTS = 20_000  # per history request, over all its signals
# server capabilities (VISS v2 Core, appendix "Server Capabilities"); access_ctrl: the token's scope is a
# set of signals (read:/actuate: paths), issued by the owner rather than by an access-grant/token server
CAPABILITIES = {
    "filter": [t.replace("-", "_") for t in TYPES],
    "access_ctrl": ["signalset_claim"],
    "transport_protocol": ["https", "wss"],
}


@dataclass(frozen=True)
class SetOutcome:
    path: str
    applied: object
    time_s: float
    reason: str


class VehicleService:
    def __init__(
        self,
        hub: SignalHub,
        store: Store,
        authority: Authority,
        clock: Callable[[], float] = time.time,
        refusals: RefusalLog | None = None,
    ):
        self.hub, self.store, self.authority, self.clock = hub, store, authority, clock
        self.refusals = refusals or RefusalLog(store, clock)
        self._set_lock = threading.Lock()  # replay check, decision and audit of one set happen together

    def authorize(self, token: object) -> Access:
        try:
            return self.authority.verify(token)
        except AuthError as exc:
            raise VissError(exc.reason, exc.message) from None

    def select(self, access: Access | None, path: str, filters: Filters) -> list[str]:
        """The leaves a request covers, each of which the token (if the request needs one) may read."""
        leaves = _leaves(path, filters)
        refused = [leaf for leaf in leaves if access is not None and not access.can_read(leaf)]
        if access is not None and refused:
            raise VissError("forbidden_request", f"grant {access.grant_id} ({access.app}) may not read {refused[0]}")
        return leaves

    def subscription_leaves(self, access: Access, path: str, filters: Filters) -> list[str]:
        """The leaves a subscription covers, checked against its filter: a change or range trigger is
        evaluated on the first leaf (VISS), curve logging on every one."""
        leaves = self.select(access, path, filters)
        if filters.trigger is not None:
            filters.trigger.check(leaves[0], vss.node(leaves[0]).datatype or "")
        if filters.curvelog is not None:
            for leaf in leaves:
                filters.curvelog.check(leaf, vss.node(leaf).datatype or "")
        return leaves

    def get(self, token: object, path: str, filters: Filters) -> dict:
        """The members of a get's answer: `data` (latest values, history, availability, access control
        mode) or `metadata` (static metadata, server capabilities). Blocking for a history (a database
        query): call it from a worker thread in async code then."""
        if filters.static_metadata is not None:
            return {"metadata": self.metadata(path, filters)}
        if filters.dynamic_metadata == "server_capabilities":
            if path != "Vehicle" or filters.paths:
                raise bad_request(
                    f"server capabilities are asked of the path Vehicle without a paths filter, not of {path}"
                )
            return {"metadata": CAPABILITIES}
        if filters.dynamic_metadata == "validate":  # every read and every set needs a token here
            return {"data": data_points([(leaf, "read-write", self.clock()) for leaf in _leaves(path, filters)])}
        access = self.authorize(token)
        if filters.dynamic_metadata == "availability":
            return {"data": data_points(self.availability(access, path, filters))}
        if filters.dynamic_metadata == "samplerate":
            return {"data": data_points(self.sample_rates(access, path, filters))}
        if filters.history_s is not None:
            return {"data": series(self.history(access, path, filters, filters.history_s))}
        return {"data": data_points(self.read(access, path, filters))}

    def read(self, access: Access, path: str, filters: Filters) -> list[tuple[str, object, float]]:
        """(path, value, ts) of every covered leaf that has a value; unavailable_data if none has."""
        leaves = self.select(access, path, filters)
        self.check_live()
        values = self.hub.read_many(leaves)
        found = [(leaf, value, ts) for leaf, (value, ts) in values.items() if ts is not None]
        if not found:
            raise VissError(
                "unavailable_data", f"The requested data was not found: the BMS has not published {path} yet"
            )
        return found

    def check_live(self) -> None:
        """service_unavailable (VISS's 503: the server cannot provide the data now) while the BMS is silent."""
        since = self.hub.stale_since()
        if since is not None:
            raise stale_error(since)

    def availability(self, access: Access, path: str, filters: Filters) -> list[tuple[str, str, float]]:
        """Each leaf "available" while the BMS keeps publishing it, else "unavailable" (never published, or
        silent for the hub's stale_after_s), stamped with its latest value's time."""
        now = self.clock()
        values = self.hub.read_many(self.select(access, path, filters))
        return [
            (
                leaf,
                "available" if ts is not None and now - ts <= self.hub.stale_after_s else "unavailable",
                now if ts is None else ts,
            )
            for leaf, (_, ts) in values.items()
        ]

    def sample_rates(self, access: Access, path: str, filters: Filters) -> list[tuple[str, float, float]]:
        """Each covered leaf's capture rate in Hz, as the BMS publishes it; unavailable_data if none is known."""
        now = self.clock()
        rates = self.hub.sample_rates_hz(self.select(access, path, filters))
        found = [(leaf, round(rate, 3), now) for leaf, rate in rates.items() if rate is not None]
        if not found:
            raise VissError(
                "unavailable_data", f"The requested data was not found: {path} has not been published twice yet"
            )
        return found

    def history(
        self, access: Access, path: str, filters: Filters, period_s: float
    ) -> list[tuple[str, list[tuple[object, float]]]]:
        """The recorded values of each covered leaf over `period_s` back from now, oldest first, the current
        value excluded; unavailable_data when none was recorded."""
        leaves = self.select(access, path, filters)
        now = self.clock()
        recorded = self.store.samples(leaves, now - period_s, now, MAX_HISTORY_POINTS + 1)
        if sum(len(points) for points in recorded.values()) > MAX_HISTORY_POINTS:
            raise bad_request(
                f"the period holds more than {MAX_HISTORY_POINTS} recorded values of {path}: ask for "
                "a shorter period or fewer signals (a paths filter)"
            )
        current = self.hub.read_many(leaves)
        found = []
        for leaf in leaves:
            latest = current[leaf][1]
            points = [(value, t) for t, value in recorded.get(leaf, []) if latest is None or t < latest]
            if points:
                found.append((leaf, points))
        if not found:
            raise VissError(
                "unavailable_data",
                f"The requested data was not found: no history of {path} was recorded in that period",
            )
        return found

    def metadata(self, path: str, filters: Filters) -> dict:
        """The catalogue's static metadata of a subtree (the selected keys, the leaves of a paths filter):
        public, as the VSS specification is."""
        only = _leaves(path, filters) if filters.paths else None
        try:
            return vss.metadata(path, filters.static_metadata or None, only)
        except vss.UnknownPath as exc:
            raise unknown_path(str(exc)) from None

    def request_set(self, access: Access, path: str, value: object, request_id: str) -> SetOutcome:
        """Ask the BMS to apply a value. Every outcome is audited; an accepted one is committed (audit row and
        the BMS state it leaves, in one transaction) before it takes effect and before this returns, and is
        refused (503, not applied) when the database cannot take it.

        Blocking (a database write): call it from a worker thread in async code.
        """
        requester = Requester(access.app, access.grant_id, request_id)

        def commit(result: SetResult, state: dict | None) -> None:
            self.store.record_set(
                self._record(
                    access.app, access.grant_id, request_id, path, value, result.applied, result.accepted, result.reason
                ),
                state,
            )

        with self._set_lock:
            try:
                self._check(access, path, request_id)
                result = self.hub.request_set(path, value, requester, commit)
            except vss.InvalidValue as exc:
                raise self.record_refusal(
                    access.app, access.grant_id, request_id, path, value, VissError("invalid_data", str(exc))
                ) from None
            except VissError as exc:
                raise self.record_refusal(access.app, access.grant_id, request_id, path, value, exc) from None
            except StorageError as exc:
                log.error("set of %s refused: %s", path, exc)
                raise _audited(VissError("service_unavailable", f"not applied: {exc}")) from None
        if not result.accepted:
            raise _audited(VissError("forbidden_request", f"the BMS refused: {result.reason or 'no reason given'}"))
        return SetOutcome(path, result.applied, self.clock(), result.reason)

    def audit_refusal(
        self, token: object, path: object, value: object, request_id: str | None, error: VissError, peer: str
    ) -> None:
        """Record a request to change something refused before it reached `request_set` (no valid token,
        rate-limited, malformed), under the grant its token names when its signature holds, else under the
        peer's address. Blocking."""
        if error.audited:
            return
        app, grant_id = self.authority.claimed(token) or ("(no valid token)", "")
        self.record_refusal(app, grant_id, request_id or "", path, value, error, client=grant_id or f"peer:{peer}")

    def _check(self, access: Access, path: str, request_id: str) -> None:
        if self.store.seen_request(access.grant_id, request_id):
            raise VissError(
                "forbidden_request",
                f"requestId {request_id!r} was already used by grant {access.grant_id}: a replayed command is refused",
            )
        try:
            node = vss.node(path)
        except vss.UnknownPath as exc:
            raise unknown_path(str(exc)) from None
        if node.type != "actuator":
            raise VissError("invalid_data", f"{READ_ONLY[:-1]}: {path} is a {node.type}; only actuators can be set")
        if not access.can_actuate(path):
            raise VissError("forbidden_request", f"grant {access.grant_id} ({access.app}) may not actuate {path}")

    def record_refusal(
        self,
        app: str,
        grant_id: str,
        request_id: str,
        path: object,
        value: object,
        error: VissError,
        client: str | None = None,
    ) -> VissError:
        """Audit a refusal (the request is refused whether or not the audit can be written; a flood of them is
        counted, not written row by row: `RefusalLog`) and mark it so. `client`: whose refusals these are,
        the grant by default."""
        record = self._record(app, grant_id, request_id, path, value, None, False, error.message)
        self.refusals.record(client or grant_id, record)
        return _audited(error)

    def _record(
        self,
        app: str,
        grant_id: str,
        request_id: str,
        path: object,
        requested: object,
        applied: object,
        accepted: bool,
        reason: str,
    ) -> AuditRecord:
        return AuditRecord(
            self.clock(),
            app,
            grant_id,
            request_id,
            "" if path is None else str(path),
            requested,
            applied,
            accepted,
            reason,
        )


def stale_error(since: float) -> VissError:
    return VissError(
        "service_unavailable",
        f"no data from the BMS since {timestamp(since)}: its last values are stale, so none are served",
    )


def _audited(error: VissError) -> VissError:
    error.audited = True
    return error


def _leaves(path: str, filters: Filters) -> list[str]:
    try:
        return vss.select(path, list(filters.paths) if filters.paths else None)
    except vss.UnknownPath as exc:
        raise unknown_path(str(exc)) from None
    except vss.InvalidValue as exc:
        raise bad_request(str(exc)) from None
