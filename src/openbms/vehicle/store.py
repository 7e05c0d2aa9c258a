"""Everything the vehicle interface and the BMS must keep across restarts, in one SQL database.

SQLite (`sqlite:///out/openbms.db`) by default; any SQLAlchemy URL works because only
portable ORM queries are used (downsampling happens in Python, not in dialect SQL).
Tables: owner grants, the audit log of actuation requests, state history for the
dashboard's charts, the BMS's non-volatile state (key → JSON), and named secrets
(the token signing key), so `openbms token` and `openbms serve` on one database agree.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
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
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # repeats of one refusal
    last_time: Mapped[float | None] = mapped_column(Float, nullable=True)  # ... the last of them
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
    count: int = 1  # a refusal repeated within a window is one row (`refusals.RefusalLog`)
    last_time: float | None = None  # the last repeat's time

    def as_dict(self) -> dict:
        return asdict(self)


class Store:
    """One database for grants, audit, history, non-volatile BMS state and secrets."""

    def __init__(self, url: str = DEFAULT_URL):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(
                f"{url!r} is not a database URL (e.g. sqlite:///out/openbms.db or postgresql://user@host/openbms)"
            ) from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        try:
            self.engine = create_engine(url)
        except Exception as exc:  # an unknown dialect or a driver that is not installed
            raise ValueError(f"cannot open database {url!r}: {exc}") from None
        if parsed.get_backend_name() == "sqlite":
            _check_mapped_files(parsed.database)
            event.listen(self.engine, "connect", _sqlite_wal)
        try:
            _Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open database {url!r}: {_cause(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def _writing(self, what: str) -> Iterator[Session]:
        """One transaction; `StorageError` naming `what` and the database's own words if it is refused."""
        try:
            with self._session() as s, s.begin():
                yield s
        except SQLAlchemyError as exc:
            raise StorageError(f"{what} cannot be written to {self.url}: {_cause(exc)}") from exc

    @contextmanager
    def audited(self, what: str, record: AuditRecord | None) -> Iterator[Session]:
        """One transaction holding a change (the caller adds its rows to the session) and its audit row: both
        are committed, or, with `StorageError`, neither, so nothing changes without its audit. (None: a change
        with no one to audit, as the command line's, on the database's own machine.)"""
        with self._writing(what) as s:
            if record is not None:
                _add_audit(s, record)
            yield s

    # grants
    def add_grant(self, grant: Grant, record: AuditRecord | None = None) -> None:
        """Store a grant, and with it (one transaction) the audit row of whoever granted it."""
        with self.audited("the grant", record) as s:
            s.add(grant_row(grant))

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

    def revoke_grant(self, grant_id: str, time_s: float, record: AuditRecord | None = None) -> bool:
        """Mark a grant revoked, with the audit row of whoever revoked it; False (and nothing written) if there
        is no such grant. Revoking twice keeps the first time."""
        if self.grant(grant_id) is None:  # grants are never deleted: it stays there
            return False
        with self.audited("the revocation", record) as s:
            row = s.get(_GrantRow, grant_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = time_s
        return True

    # audit
    def record_set(self, record: AuditRecord, nv: dict[str, dict] | None = None) -> None:
        """Append one actuation request and its outcome, and the BMS state it leaves (`nv`: key → value), in
        one transaction; returns only once committed, so an acknowledged command survives a crash with its
        audit row. Raises `StorageError` (nothing written) when the database cannot take it."""
        with self._writing("the audit log") as s:
            _add_audit(s, record)
            for key, value in (nv or {}).items():
                _upsert_nv(s, key, value)

    def add_refusal(self, record: AuditRecord) -> int:
        """Append one refused request; its row id, for `count_refusals`. Raises `StorageError`."""
        with self._writing("the audit log") as s:
            row = _add_audit(s, record)
            s.flush()
            return row.id

    def count_refusals(self, counts: dict[int, tuple[int, float]]) -> None:
        """Set each refusal row's count of repeats and the time of the last (row id → (count, time)), in one
        transaction. Raises `StorageError`."""
        with self._writing("the audit log's counts") as s:
            for row_id, (count, last_time) in counts.items():
                row = s.get(_AuditRow, row_id)
                if row is not None:
                    row.count, row.last_time = count, last_time

    def seen_request(self, grant_id: str, request_id: str) -> bool:
        """Whether this grant already had a set with this request id accepted (replay protection across
        restarts); a refused request may be sent again, since nothing of it took effect."""
        with self._session() as s:
            query = select(_AuditRow.id).where(
                _AuditRow.grant_id == grant_id, _AuditRow.request_id == request_id, _AuditRow.accepted.is_(True)
            )
            return s.scalars(query.limit(1)).first() is not None

    def audit(self, limit: int = 100, grant_id: str | None = None) -> list[AuditRecord]:
        """The newest records first."""
        with self._session() as s:
            query = select(_AuditRow).order_by(_AuditRow.id.desc()).limit(limit)
            if grant_id is not None:
                query = query.where(_AuditRow.grant_id == grant_id)
            return [
                AuditRecord(
                    r.time,
                    r.app,
                    r.grant_id,
                    r.request_id,
                    r.path,
                    _json_value(r.requested),
                    _json_value(r.applied),
                    bool(r.accepted),
                    str(r.reason),
                    r.count or 1,
                    r.last_time,
                )
                for r in s.scalars(query)
            ]

    # state history
    def append_history(self, samples: Iterable[tuple[float, str, object]]) -> None:
        rows = [
            _SampleRow(time=t, path=path, value=json.dumps(value), number=_number(value)) for t, path, value in samples
        ]
        if rows:
            with self._writing("the state history") as s:
                s.add_all(rows)

    def history(self, path: str, start: float, end: float, max_points: int = 500) -> list[tuple[float, object]]:
        """Samples of one signal in [start, end]; numbers are averaged into at most `max_points` equal time
        buckets (stamped at each bucket's mean time), other values keep the last of each bucket. The buckets
        span the samples found, not the window asked for: 17 minutes of a young history in a 7-day window
        come back as up to `max_points` points, not as one."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        with self._session() as s:
            rows = s.execute(
                select(_SampleRow.time, _SampleRow.number, _SampleRow.value)
                .where(_SampleRow.path == path, _SampleRow.time >= start, _SampleRow.time <= end)
                .order_by(_SampleRow.time)
            ).all()
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
            rows = connection.execute(
                select(table.path, table.time, table.value)
                .where(table.path.in_(paths), table.time >= start, table.time <= end)
                .order_by(table.time)
                .limit(limit)
            ).all()
        found: dict[str, list[tuple[float, object]]] = {}
        for path, t, value in rows:
            found.setdefault(path, []).append((t, json.loads(value)))
        return found

    # non-volatile BMS state
    def save_nv(self, key: str, value: dict) -> None:
        """Raises `StorageError` when the database cannot take it (the caller retries: nothing was written)."""
        with self._writing("the BMS state") as s:
            _upsert_nv(s, key, value)

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
            with self._writing(f"the secret {name}") as s:
                s.add(_SecretRow(name=name, value=make(), created_at=time.time()))
        except StorageError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        with self._session() as s:
            return s.get(_SecretRow, name).value


class StorageError(RuntimeError):
    """The database refused a write (read-only, full, locked, or its files unwritable); nothing was written."""


def json_text(value: object) -> str:
    """Any value as JSON text that every reader can parse back: non-finite numbers and non-JSON objects
    become their text, so a hostile request's value can never poison the audit view."""
    return json.dumps(_json_safe(value), allow_nan=False)


def _json_safe(value: object) -> object:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def _json_value(text: str) -> object:
    """A stored value back; rows written before values were made JSON-safe (NaN, or not JSON) come back as
    JSON-safe values or as their raw text, never as an error."""
    try:
        return _json_safe(json.loads(text))
    except (TypeError, ValueError, RecursionError):
        return str(text)


def _add_audit(s: Session, record: AuditRecord) -> _AuditRow:
    row = _AuditRow(
        time=record.time,
        app=record.app[:200],
        grant_id=record.grant_id[:64],
        request_id=record.request_id[:200],
        path=record.path[:256],
        requested=json_text(record.requested),
        applied=json_text(record.applied),
        accepted=record.accepted,
        reason=record.reason,
        count=record.count,
        last_time=record.last_time,
    )
    s.add(row)
    return row


def grant_row(grant: Grant) -> _Base:
    """A grant as the row `audited` adds to its transaction."""
    return _GrantRow(
        id=grant.id,
        app=grant.app,
        scopes=" ".join(grant.scopes),
        issued_at=grant.issued_at,
        expires_at=grant.expires_at,
        revoked_at=grant.revoked_at,
    )


def _add_missing_columns(engine) -> None:
    """A database made before the audit counted repeats gets the columns (every old row counts once)."""
    columns = {c["name"] for c in inspect(engine).get_columns("audit")}
    with engine.begin() as connection:
        if "count" not in columns:
            connection.execute(text("ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1"))
        if "last_time" not in columns:
            connection.execute(text("ALTER TABLE audit ADD COLUMN last_time FLOAT"))


def _upsert_nv(s: Session, key: str, value: dict) -> None:
    blob = json.dumps(value)
    row = s.get(_NvRow, key)
    if row is None:
        s.add(_NvRow(key=key, value=blob, updated_at=time.time()))
    else:
        row.value, row.updated_at = blob, time.time()


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's own words (e.g. 'attempt to write a readonly database'), without SQLAlchemy's SQL dump."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _grant(row: _GrantRow) -> Grant:
    return Grant(row.id, row.app, tuple(row.scopes.split()), row.issued_at, row.expires_at, row.revoked_at)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _check_mapped_files(database: str | None) -> None:
    """SQLite maps a WAL database's `-shm` file into memory: one it cannot write kills the process with SIGBUS
    at the first query. Refuse it here, saying which file and why, instead."""
    if database in (None, "", ":memory:"):
        return
    shm = Path(f"{database}-shm")
    try:
        os.close(os.open(shm, os.O_RDWR))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(
            f"{shm} cannot be opened for writing ({exc.strerror}): SQLite maps it into memory, so "
            "the database cannot be used; make it writable (chmod, chattr -i) or, with no other "
            "process on the database, remove it"
        ) from None


def _sqlite_wal(dbapi_connection, _record) -> None:
    """WAL lets `openbms revoke` write while the server reads; the server sees it on its next query."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns: an ack outlives power loss
    cursor.close()
