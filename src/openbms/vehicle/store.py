"""Everything the vehicle interface and the BMS must keep across restarts, in one SQL database.

SQLite (`sqlite:///out/openbms.db`) by default; any SQLAlchemy URL works because only
portable ORM queries are used (downsampling happens in Python, not in dialect SQL).
Tables: owner grants, the audit log of actuation requests, state history for the
dashboard's charts, the BMS's non-volatile state (key → JSON), and named secrets
(the token signing key), so `openbms token` and `openbms serve` on one database agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

DEFAULT_URL = "sqlite:///out/openbms.db"


class _Base(DeclarativeBase):
    pass


class _GrantRow(_Base):
    __tablename__ = "grants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class _AuditRow(_Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[float] = mapped_column(Float, index=True)
    app: Mapped[str] = mapped_column(String(200))
    grant_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(256))
    requested: Mapped[str] = mapped_column(Text)
    applied: Mapped[str] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_audit_grant_request", "grant_id", "request_id"),)


class _SampleRow(_Base):
    __tablename__ = "state_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(256))
    number: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_state_history_path_time", "path", "time"),)


class _NvRow(_Base):
    __tablename__ = "nv_state"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class _SecretRow(_Base):
    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Grant:
    """An owner's consent: app `app` may use `scopes` until `expires_at` unless revoked."""

    id: str
    app: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float
    revoked_at: float | None = None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def as_dict(self) -> dict:
        return {**asdict(self), "scopes": list(self.scopes)}


@dataclass(frozen=True)
class AuditRecord:
    time: float
    app: str
    grant_id: str
    request_id: str
    path: str
    requested: object
    applied: object
    accepted: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


class Store:
    """One database for grants, audit, history, non-volatile BMS state and secrets."""

    def __init__(self, url: str = DEFAULT_URL):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(f"{url!r} is not a database URL (e.g. sqlite:///out/openbms.db or "
                             "postgresql://user@host/openbms)") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        try:
            self.engine = create_engine(url)
        except Exception as exc:  # an unknown dialect or a driver that is not installed
            raise ValueError(f"cannot open database {url!r}: {exc}") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_wal)
        _Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # grants
    def add_grant(self, grant: Grant) -> None:
        with self._session() as s, s.begin():
            s.add(_GrantRow(id=grant.id, app=grant.app, scopes=" ".join(grant.scopes), issued_at=grant.issued_at,
                            expires_at=grant.expires_at, revoked_at=grant.revoked_at))

    def grant(self, grant_id: str) -> Grant | None:
        with self._session() as s:
            row = s.get(_GrantRow, grant_id)
            return _grant(row) if row else None

    def grants(self) -> list[Grant]:
        with self._session() as s:
            return [_grant(row) for row in s.scalars(select(_GrantRow).order_by(_GrantRow.issued_at))]

    def revoked_among(self, grant_ids: Iterable[str]) -> set[str]:
        """Which of these grants are revoked (one query for every live subscription's grant)."""
        ids = list(grant_ids)
        if not ids:
            return set()
        with self._session() as s:
            return set(s.scalars(select(_GrantRow.id).where(_GrantRow.id.in_(ids), _GrantRow.revoked_at.is_not(None))))

    def revoke_grant(self, grant_id: str, time_s: float) -> bool:
        """Mark a grant revoked; False if there is no such grant. Revoking twice keeps the first time."""
        with self._session() as s, s.begin():
            row = s.get(_GrantRow, grant_id)
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = time_s
            return True

    # audit
    def record_set(self, record: AuditRecord) -> None:
        """Append one actuation request and its outcome; returns only once committed."""
        with self._session() as s, s.begin():
            s.add(_AuditRow(time=record.time, app=record.app, grant_id=record.grant_id, request_id=record.request_id,
                            path=record.path, requested=json.dumps(record.requested),
                            applied=json.dumps(record.applied),
                            accepted=record.accepted, reason=record.reason))

    def seen_request(self, grant_id: str, request_id: str) -> bool:
        """Whether this grant already sent a set with this request id (replay protection across restarts)."""
        with self._session() as s:
            query = select(_AuditRow.id).where(_AuditRow.grant_id == grant_id, _AuditRow.request_id == request_id)
            return s.scalars(query.limit(1)).first() is not None

    def audit(self, limit: int = 100, grant_id: str | None = None) -> list[AuditRecord]:
        """The newest records first."""
        with self._session() as s:
            query = select(_AuditRow).order_by(_AuditRow.id.desc()).limit(limit)
            if grant_id is not None:
                query = query.where(_AuditRow.grant_id == grant_id)
            return [AuditRecord(r.time, r.app, r.grant_id, r.request_id, r.path, json.loads(r.requested),
                                json.loads(r.applied), r.accepted, r.reason) for r in s.scalars(query)]

    # state history
    def append_history(self, samples: Iterable[tuple[float, str, object]]) -> None:
        rows = [_SampleRow(time=t, path=path, value=json.dumps(value), number=_number(value))
                for t, path, value in samples]
        if rows:
            with self._session() as s, s.begin():
                s.add_all(rows)

    def history(self, path: str, start: float, end: float, max_points: int = 500) -> list[tuple[float, object]]:
        """Samples of one signal in [start, end]; numbers are averaged into at most `max_points` equal time
        buckets (stamped at each bucket's mean time), other values keep the last of each bucket. The buckets
        span the samples found, not the window asked for: 17 minutes of a young history in a 7-day window
        come back as up to `max_points` points, not as one."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        with self._session() as s:
            rows = s.execute(select(_SampleRow.time, _SampleRow.number, _SampleRow.value)
                             .where(_SampleRow.path == path, _SampleRow.time >= start, _SampleRow.time <= end)
                             .order_by(_SampleRow.time)).all()
        first, last = (rows[0][0], rows[-1][0]) if rows else (start, end)
        width = (last - first) / max_points if last > first else 1.0
        buckets: dict[int, list] = {}
        for t, number, value in rows:
            buckets.setdefault(min(int((t - first) / width), max_points - 1), []).append((t, number, value))
        points = []
        for members in buckets.values():
            mean_t = sum(m[0] for m in members) / len(members)
            numbers = [m[1] for m in members if m[1] is not None]
            if len(numbers) == len(members):
                points.append((mean_t, sum(numbers) / len(numbers)))
            else:
                points.append((mean_t, json.loads(members[-1][2])))
        return points

    def samples(self, paths: list[str], start: float, end: float, limit: int) -> dict[str, list[tuple[float, object]]]:
        """The values of these signals recorded in [start, end], as written (no averaging), oldest first;
        at most `limit` rows over all of them (the oldest), so a caller can tell when a period holds more."""
        table = _SampleRow.__table__.c  # Core rows: a long history is thousands of them
        with self.engine.connect() as connection:
            rows = connection.execute(select(table.path, table.time, table.value)
                                      .where(table.path.in_(paths), table.time >= start, table.time <= end)
                                      .order_by(table.time).limit(limit)).all()
        found: dict[str, list[tuple[float, object]]] = {}
        for path, t, value in rows:
            found.setdefault(path, []).append((t, json.loads(value)))
        return found

    # non-volatile BMS state
    def save_nv(self, key: str, value: dict) -> None:
        blob = json.dumps(value)
        with self._session() as s, s.begin():
            row = s.get(_NvRow, key)
            if row is None:
                s.add(_NvRow(key=key, value=blob, updated_at=time.time()))
            else:
                row.value, row.updated_at = blob, time.time()

    def load_nv(self, key: str) -> dict | None:
        with self._session() as s:
            row = s.get(_NvRow, key)
            return json.loads(row.value) if row else None

    # secrets
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The stored secret `name`, created with `make()` the first time (first writer wins a race)."""
        with self._session() as s:
            row = s.get(_SecretRow, name)
            if row is not None:
                return row.value
        try:
            with self._session() as s, s.begin():
                s.add(_SecretRow(name=name, value=make(), created_at=time.time()))
        except IntegrityError:
            pass
        with self._session() as s:
            return s.get(_SecretRow, name).value


def _grant(row: _GrantRow) -> Grant:
    return Grant(row.id, row.app, tuple(row.scopes.split()), row.issued_at, row.expires_at, row.revoked_at)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _sqlite_wal(dbapi_connection, _record) -> None:
    """WAL lets `openbms revoke` write while the server reads; the server sees it on its next query."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
