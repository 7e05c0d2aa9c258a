"""What the OAuth authorization server keeps: registered apps, authorization codes and refresh tokens.

The tables live in the vehicle's one database (the `Store`'s engine) beside the grants they point
to: a consent is a grant, so a code and a refresh token each name the grant the owner approved,
and revoking that grant ends both. Secrets (client secrets, codes, refresh tokens) are kept only
as SHA-256 digests, so a copy of the database gives no working credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import Float, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .auth import Access
from .store import AuditRecord, Grant, Store, grant_row

PUBLIC = "none"  # RFC 8414's name for a client without a secret (a phone app): PKCE is its proof
CONFIDENTIAL = "client_secret_basic"


class _Base(DeclarativeBase):
    pass


class _ClientRow(_Base):
    __tablename__ = "oauth_clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    redirect_uris: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class _CodeRow(_Base):
    __tablename__ = "oauth_codes"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class _RefreshRow(_Base):
    __tablename__ = "oauth_refresh_tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    rotated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


def registration(by: Access) -> Callable[[Client], AuditRecord]:
    """The audit row of an app the owner registers (`by`: in the dashboard, or at the command line)."""

    def record(client: Client) -> AuditRecord:
        return AuditRecord(
            time.time(),
            by.app,
            by.grant_id,
            f"app-{client.client_id}",
            "owner:clients",
            f"{client.name}: {' '.join(client.redirect_uris)}",
            client.client_id,
            True,
            f"registered the app {client.name} ({client.auth_method})",
        )

    return record


def check_redirect_uri(uri: object) -> str:
    """An absolute URI without fragment (RFC 6749 §3.1.2): https, http on this machine only (RFC 8252 §7.3),
    or an app's own scheme (a reversed domain, RFC 8252 §7.1); ValueError says which rule it breaks."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"redirect URI {uri!r} must be a non-empty string")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ValueError(f"redirect URI {uri!r} must not have a fragment")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return uri
    if "." in parts.scheme and parts.scheme not in ("http", "https"):
        return uri
    raise ValueError(
        f"redirect URI {uri!r} must be https://..., http://localhost or 127.0.0.1 (an app on this "
        "machine), or an app's own scheme such as com.example.app:/callback"
    )


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """A registered app (Authlib's ClientMixin): its name is what the owner sees on the consent page."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    secret_digest: str | None
    created_at: float

    @property
    def auth_method(self) -> str:
        return PUBLIC if self.secret_digest is None else CONFIDENTIAL

    def as_dict(self) -> dict:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "token_endpoint_auth_method": self.auth_method,
            "created_at": self.created_at,
        }

    # Authlib's ClientMixin
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        return scope or None  # the server's validate_requested_scope has checked each one against the catalogue

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (RFC 9700 §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_digest is not None and hmac.compare_digest(digest(client_secret), self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.auth_method == CONFIDENTIAL:
            return method in ("client_secret_basic", "client_secret_post")
        return method == PUBLIC

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True)
class AuthorizationCode:
    """A one-time code (Authlib's AuthorizationCodeMixin), bound to its client, redirect URI and PKCE challenge."""

    digest: str
    client_id: str
    grant_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    used_at: float | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class Issued:
    """What one token response changes: a refresh token for a grant, for the code or refresh token it spends."""

    refresh_token: str | None
    client_id: str
    grant: Grant
    spent_code: AuthorizationCode | None = None
    rotated: RefreshToken | None = None


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token (Authlib's TokenMixin); each use rotates it: the old one is spent."""

    digest: str
    client_id: str
    grant_id: str
    scope: str
    issued_at: float
    expires_at: float
    rotated_at: float | None

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.issued_at)

    def is_revoked(self) -> bool:
        return self.rotated_at is not None


class OAuthStore:
    """The OAuth tables on the vehicle's database."""

    def __init__(self, store: Store):
        self.store, self.engine = store, store.engine
        _Base.metadata.create_all(self.engine)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # clients
    def register(
        self,
        name: str,
        redirect_uris: object,
        public: bool = False,
        audit: Callable[[Client], AuditRecord] | None = None,
    ) -> tuple[Client, str | None]:
        """A new client and its secret (None for a public client); the secret is shown once, never stored. With
        `audit`, the row it makes of the client is written in the same transaction."""
        if not name or not name.strip():
            raise ValueError("the app needs a name: the owner sees it on the consent page")
        if not isinstance(redirect_uris, list) or not redirect_uris:
            raise ValueError("give at least one redirect URI (where the owner's browser returns with the code)")
        redirect_uris = [check_redirect_uri(uri) for uri in redirect_uris]
        name = name.strip()
        secret = None if public else secrets.token_urlsafe(32)
        client = Client(
            secrets.token_hex(12), name, tuple(redirect_uris), None if secret is None else digest(secret), time.time()
        )
        with self.store.audited("the app", None if audit is None else audit(client)) as s:
            s.add(
                _ClientRow(
                    client_id=client.client_id,
                    name=client.name,
                    secret_digest=client.secret_digest,
                    redirect_uris=" ".join(client.redirect_uris),
                    created_at=client.created_at,
                )
            )
        return client, secret

    def client(self, client_id: str) -> Client | None:
        with self._session() as s:
            row = s.get(_ClientRow, client_id)
            return None if row is None else _client(row)

    def clients(self) -> list[Client]:
        with self._session() as s:
            return [_client(row) for row in s.scalars(select(_ClientRow).order_by(_ClientRow.created_at))]

    # authorization codes
    def consent(self, grant: Grant, code: str, item: AuthorizationCode, record: AuditRecord) -> None:
        """The owner's consent: its grant, the code that hands it to the app, and the audit row, in one
        transaction (`StorageError`: none of them)."""
        with self.store.audited("the consent", record) as s:
            s.add(grant_row(grant))
            s.add(_CodeRow(**{**item.__dict__, "digest": digest(code)}))

    def code(self, code: str) -> AuthorizationCode | None:
        with self._session() as s:
            row = s.get(_CodeRow, digest(code))
            return None if row is None else AuthorizationCode(**_columns(row, AuthorizationCode))

    # refresh tokens
    def issue(self, issued: Issued, record: AuditRecord) -> None:
        """Tokens issued: the new refresh token (if any), the code or refresh token spent for them, and the audit
        row, in one transaction (`StorageError`: none of them, and no token leaves)."""
        now = time.time()
        with self.store.audited("the tokens", record) as s:
            if issued.refresh_token is not None:
                s.add(
                    _RefreshRow(
                        digest=digest(issued.refresh_token),
                        client_id=issued.client_id,
                        grant_id=issued.grant.id,
                        scope=" ".join(issued.grant.scopes),
                        issued_at=now,
                        expires_at=issued.grant.expires_at,
                    )
                )
            if issued.spent_code is not None:  # the row stays, so a second use is recognised as a replay
                code_row = s.get(_CodeRow, issued.spent_code.digest)
                if code_row is not None:
                    code_row.used_at = now
            if issued.rotated is not None:
                refresh_row = s.get(_RefreshRow, issued.rotated.digest)
                if refresh_row is not None:
                    refresh_row.rotated_at = now

    def refresh(self, token: str) -> RefreshToken | None:
        with self._session() as s:
            row = s.get(_RefreshRow, digest(token))
            return None if row is None else RefreshToken(**_columns(row, RefreshToken))

    def client_of_grant(self, grant_id: str) -> str | None:
        """The client a grant was given to through OAuth (None: a grant the owner made by hand)."""
        with self._session() as s:
            return s.scalars(select(_CodeRow.client_id).where(_CodeRow.grant_id == grant_id).limit(1)).first()


def _client(row: _ClientRow) -> Client:
    return Client(row.client_id, row.name, tuple(row.redirect_uris.split()), row.secret_digest, row.created_at)


def _columns(row, cls) -> dict:
    return {name: getattr(row, name) for name in cls.__dataclass_fields__}
