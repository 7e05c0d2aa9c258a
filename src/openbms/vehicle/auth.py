"""Owner consent as signed access tokens: who may read or actuate which signals, until when.

The owner grants an app a set of scopes; the grant is stored and the app gets a JWT
signed with EdDSA (Ed25519), whose `jti` is the grant id and whose `aud` is this
vehicle's id, so a token for one car is useless on another. Every request re-checks the
grant in the store, so a revocation takes effect on the next request.

Scopes (space-separated in the `scope` claim):
  read:<path>      read and subscribe to `path`, or every signal below it if it is a branch
  actuate:<path>   request sets of `path` (or its actuators below); also reads the same
                   path, because an app must see what the BMS actually applied
  owner            the owner's own credential: every read and actuate, plus the owner
                   endpoints (grants, audit, history); issued by `openbms token --owner`
  health           read-only access to the battery's health and usage record and nothing else
                   (`vss.HEALTH_LEAVES`): what EU 2023/1542 Art. 14 lets an owner give a buyer,
                   a second-life assessor or anyone acting for them
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import vss
from .store import AuditRecord, Grant, Store

OWNER_SCOPE = "owner"
HEALTH_SCOPE = "health"
MAX_TTL_S = 10 * 365 * 24 * 3600.0
_SCOPE_VERBS = ("read", "actuate")
_KEY_NAME = "token-signing-key-ed25519"
_ALGORITHM = "EdDSA"
ISSUER = "openbms"  # the `iss` of every token this vehicle signs, and the only one it accepts


class AuthError(Exception):
    """A token that does not authorize the request; carries the VISS error number and reason."""

    def __init__(self, number: int, reason: str, message: str):
        super().__init__(message)
        self.number, self.reason, self.message = number, reason, message


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Check each scope names a verb and a catalogue path; ValueError says which one is wrong."""
    checked = []
    for scope in scopes:
        if scope in (OWNER_SCOPE, HEALTH_SCOPE):
            checked.append(scope)
            continue
        verb, _, path = scope.partition(":")
        if verb not in _SCOPE_VERBS or not path:
            raise ValueError(f"scope {scope!r} must be 'read:<path>', 'actuate:<path>', 'health' or 'owner'")
        try:
            vss.node(vss.normalize_path(path))
        except (vss.UnknownPath, vss.InvalidValue) as exc:
            raise ValueError(f"scope {scope!r}: {exc}") from None
        checked.append(f"{verb}:{vss.normalize_path(path)}")
    if not checked:
        raise ValueError("a grant needs at least one scope")
    return tuple(dict.fromkeys(checked))


@dataclass(frozen=True)
class Access:
    """What a verified token allows."""

    grant_id: str
    app: str
    scopes: tuple[str, ...]
    expires_at: float

    @property
    def is_owner(self) -> bool:
        return OWNER_SCOPE in self.scopes

    def can_read(self, path: str) -> bool:
        return (
            self.is_owner
            or (HEALTH_SCOPE in self.scopes and path in vss.HEALTH_LEAVES)
            or any(vss.covers(scope.partition(":")[2], path) for scope in self.scopes if ":" in scope)
        )

    def can_actuate(self, path: str) -> bool:
        return self.is_owner or any(
            scope.startswith("actuate:") and vss.covers(scope[8:], path) for scope in self.scopes
        )


COMMAND_LINE = Access("", "owner (command line)", (OWNER_SCOPE,), float("inf"))  # who `openbms grant` etc. audit as


class Authority:
    """Issues grants and tokens for one vehicle and verifies tokens against the store."""

    def __init__(self, store: Store, vehicle_id: str, clock: Callable[[], float] = time.time):
        if not vehicle_id:
            raise ValueError("a vehicle id (VIN-like) is required: tokens are bound to it")
        self.store, self.vehicle_id, self._clock = store, vehicle_id, clock
        pem = store.secret(_KEY_NAME, _new_private_key_pem)
        self._private_key = serialization.load_pem_private_key(pem.encode(), password=None)
        self._public_key = self._private_key.public_key()
        self._decode = lru_cache(maxsize=4096)(self._decode_signed)

    def grant(self, app: str, scopes: Iterable[str], ttl_s: float, by: Access | None = None) -> Grant:
        """Record the owner's consent (audited with it, when given `by` whose credential); `token(grant)` gives
        the app its credential."""
        grant = self.new_grant(app, scopes, ttl_s)
        self.store.add_grant(
            grant,
            None
            if by is None
            else self._record(
                by,
                f"grant-{grant.id}",
                "owner:grants",
                f"{grant.app}: {' '.join(grant.scopes)} for {ttl_s:g} s",
                grant.id,
                f"granted {grant.app} {' '.join(grant.scopes)} until {int(grant.expires_at)}",
            ),
        )
        return grant

    def new_grant(self, app: str, scopes: Iterable[str], ttl_s: float) -> Grant:
        """A grant checked but not yet stored (OAuth stores a consent's grant with its code and audit row)."""
        if not app or not app.strip():
            raise ValueError("the app name must not be empty")
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl must be between 1 s and {MAX_TTL_S:g} s (10 years), got {ttl_s}")
        now = int(self._clock())
        # hex: an id never starts with '-', which `openbms revoke ID` would take for an option (1 in 64 did)
        return Grant(secrets.token_hex(12), app.strip(), parse_scopes(scopes), now, now + int(ttl_s))

    def token(self, grant: Grant, scopes: Iterable[str] | None = None, ttl_s: float | None = None) -> str:
        """The signed token of a grant (Ed25519 is deterministic: the same grant gives the same token).

        An OAuth access token is one of these for part of a grant's scopes and a short while (`ttl_s`
        from now, never past the grant's expiry); revoking the grant ends it like any other.
        """
        now = int(self._clock())
        expires_at = grant.expires_at if ttl_s is None else min(grant.expires_at, now + ttl_s)
        claims = {
            "iss": ISSUER,
            "aud": self.vehicle_id,
            "sub": grant.app,
            "scope": " ".join(grant.scopes if scopes is None else scopes),
            "iat": int(grant.issued_at) if ttl_s is None else now,
            "exp": int(expires_at),
            "jti": grant.id,
        }
        return jwt.encode(claims, self._private_key, algorithm=_ALGORITHM)

    def grants(self) -> list[Grant]:
        return self.store.grants()

    def revoke(self, grant_id: str, by: Access | None = None) -> None:
        """End a grant (audited with it, when given `by` whose credential)."""
        record = (
            None
            if by is None
            else self._record(
                by, f"revoke-{grant_id}", f"owner:grants/{grant_id}", "revoke", grant_id, f"revoked grant {grant_id}"
            )
        )
        if not self.store.revoke_grant(grant_id, self._clock(), record):
            raise ValueError(f"no grant with id {grant_id!r}")

    def _record(
        self, by: Access, request_id: str, path: str, requested: object, applied: object, reason: str
    ) -> AuditRecord:
        return AuditRecord(self._clock(), by.app, by.grant_id, request_id, path, requested, applied, True, reason)

    def verify(self, token: object) -> Access:
        """The access a token gives now, or AuthError: 401 missing, invalid (bad signature, another vehicle,
        revoked or unknown grant, unknown scope path) or expired."""
        if token is None or token == "":
            raise AuthError(
                401,
                "missing_token",
                "Access token is missing: pass it as 'authorization' (HTTP: an 'Authorization: Bearer' header)",
            )
        if not isinstance(token, str):
            raise AuthError(401, "invalid_token", "Access token is invalid: it must be a string")
        claims = self._decode(token)
        if claims["aud"] != self.vehicle_id:
            raise AuthError(
                401,
                "invalid_token",
                f"Access token is invalid: it was issued for vehicle "
                f"{claims['aud']!r}, not this one ({self.vehicle_id!r})",
            )
        if self._clock() >= claims["exp"]:
            raise AuthError(401, "expired_token", "Access token has expired: ask the owner for a new grant")
        grant = self.store.grant(claims["jti"])
        if grant is None:
            raise AuthError(401, "invalid_token", "Access token is invalid: its grant is unknown to this vehicle")
        if grant.revoked_at is not None:
            raise AuthError(401, "invalid_token", f"Access token is invalid: the owner revoked grant {grant.id}")
        try:
            scopes = parse_scopes(claims["scope"].split())
        except ValueError as exc:
            raise AuthError(
                401, "invalid_token", f"Access token is invalid: its scope is not valid here: {exc}"
            ) from None
        return Access(grant.id, claims["sub"], scopes, float(claims["exp"]))

    def claimed(self, token: object) -> tuple[str, str] | None:
        """(app, grant id) a token names if its signature holds, whatever its expiry or grant say (for the
        audit of a refused request); None for anything this vehicle did not sign."""
        try:
            claims = self._decode(token) if isinstance(token, str) and token else None
        except AuthError:
            return None
        return None if claims is None else (claims["sub"], claims["jti"])

    def _decode_signed(self, token: str) -> dict:
        """Signature and claim shape only (cached per token); expiry and revocation are checked per request."""
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "require": ["iss", "aud", "sub", "scope", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, "invalid_token", f"Access token is invalid: {exc}") from None
        if not all(isinstance(claims[k], str) for k in ("aud", "sub", "scope", "jti")):
            raise AuthError(
                401, "invalid_token", "Access token is invalid: its aud, sub, scope and jti must be strings"
            )
        return claims


def _new_private_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
