"""OAuth 2.0 on the vehicle: any brand's app asks, the owner consents on the car's own page, the app gets a token.

Authlib does the protocol (RFC 6749 authorization code, RFC 7636 PKCE, RFC 7009 revocation, refresh
rotation); this module binds it to Starlette and to the vehicle's grants. A consent is a grant
(`Authority.grant`), so the dashboard's app list, revocation and audit cover OAuth apps as they
cover tokens made by hand; an access token is that grant's usual scoped, vehicle-bound JWT,
for an hour; the refresh token lives as long as the grant and is replaced at each use.

Rules beyond the RFCs' minimum (OAuth 2.1 and RFC 9700): PKCE with S256 for every client, exact
redirect URIs, one-time codes (a replayed code or refresh token revokes the grant it came from),
and no app may ask for the owner's own scope. Every refusal is audited with the RFC's error.

Endpoints: GET /.well-known/oauth-authorization-server (RFC 8414) · GET /oauth/authorize (the consent
page) · GET/POST /oauth/consent (what the page shows and the owner's decision, owner token) ·
POST /oauth/token · POST /oauth/revoke · GET/POST /owner/clients (register an app).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload
from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.datastructures import MultiDict
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import viss, vss
from .guard import peer, read_body
from .auth import HEALTH_SCOPE, OWNER_SCOPE, Access, AuthError, Authority, parse_scopes
from .oauth_store import AuthorizationCode, Client, Issued, OAuthStore, registration
from .refusals import RefusalLog
from .store import AuditRecord, Grant, StorageError

ACCESS_TTL_S = 3600
MAX_FORM_BYTES = 16384
CODE_TTL_S = 600  # RFC 6749 §4.1.2: a code expires shortly after it is issued
TTL_CHOICES_S = (24 * 3600, 30 * 24 * 3600, 90 * 24 * 3600, 365 * 24 * 3600)
DEFAULT_TTL_S = 90 * 24 * 3600
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
CONSENT_PAGE = Path(__file__).resolve().parent.parent / "web" / "consent.html"
_PLAIN_WORDS = {
    HEALTH_SCOPE: "See the battery's health record, and nothing else: state of health, certified energy, throughput "
    "and cycles, time at each temperature and charge level, deep discharges and overheating",
    f"read:{vss.ROOT}": "See the battery's state: charge, range, health, temperatures and charging",
    f"actuate:{vss.ROOT}.Charging.ChargeLimit": "Change the charge limit",
    f"actuate:{vss.ROOT}.Charging.StartStopCharging": "Start and stop charging",
    f"actuate:{vss.ROOT}.BatteryConditioning.RequestedMode": "Warm or cool the battery before a drive or a fast charge",
}


def plain_words(scope: str) -> str:
    """What a scope lets an app do, as the owner reads it on the consent page."""
    if scope in _PLAIN_WORDS:
        return _PLAIN_WORDS[scope]
    verb, _, path = scope.partition(":")
    node = vss.node(path)
    what = f"{path.removeprefix(vss.ROOT + '.')} ({node.description.rstrip('.')})"
    return f"See {what}" if verb == "read" else f"Control {what}"


@dataclass(frozen=True)
class Answer:
    """An Authlib response before it becomes Starlette's."""

    status: int
    body: object
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "location"), None)

    def response(self) -> Response:
        if isinstance(self.body, dict):
            return JSONResponse(self.body, self.status, headers=dict(self.headers))
        return Response(self.body or b"", self.status, headers=dict(self.headers))


class _Payload(OAuth2Payload):
    def __init__(self, params: MultiDict):
        self._params = params

    @property
    def data(self) -> dict:
        return dict(self._params)

    @property
    def datalist(self) -> dict:
        return {key: self._params.getlist(key) for key in self._params}


class _Request(OAuth2Request):
    """Authlib's view of a Starlette request whose query or form has already been read."""

    def __init__(self, method: str, uri: str, headers, params: MultiDict, peer: str):
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(params)
        self._params = params
        self.peer = peer  # the address it came from: whose refusals these are

    @property
    def args(self) -> dict:
        return dict(self._params)

    @property
    def form(self) -> dict:
        return dict(self._params)


class _S256(CodeChallenge):
    """PKCE for every client, S256 only (a plain challenge proves nothing once the request is seen)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "PKCE is required: send code_challenge with code_challenge_method=S256", redirect_uri=redirect_uri
            )
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code, request):
        """The consent is stored here, with its code and audit row in one transaction."""
        grant: Grant = request.user
        data = request.payload.data
        self.server.oauth.consent(
            grant,
            code,
            AuthorizationCode(
                "",
                request.client.client_id,
                grant.id,
                request.payload.redirect_uri or "",
                " ".join(grant.scopes),
                data["code_challenge"],
                data["code_challenge_method"],
                self.server.clock() + CODE_TTL_S,
                None,
            ),
            self.server.record(request, grant.id, True, f"the owner consented to {' '.join(grant.scopes)}"),
        )

    def query_authorization_code(self, code, client):
        item = self.server.oauth.code(code)
        if item is None or item.client_id != client.client_id:
            return None
        if item.used_at is not None:  # RFC 6749 §4.1.2: a reused code revokes what it gave
            self.server.revoke(item.grant_id, self.request, "its authorization code was used twice")
            raise InvalidGrantError("this authorization code was already used; the access it gave is now revoked")
        if self.server.clock() >= item.expires_at:
            raise InvalidGrantError(f"the authorization code expired ({CODE_TTL_S // 60} minutes after consent)")
        return item

    def delete_authorization_code(self, authorization_code):
        """Already spent: `save_token` marks the code used in the transaction that issues its tokens."""

    def authenticate_user(self, authorization_code):
        return self.server.live_grant(authorization_code.grant_id)


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh token works once

    def authenticate_refresh_token(self, refresh_token):
        item = self.server.oauth.refresh(refresh_token)
        if item is None or not item.check_client(self.request.client):
            return None
        if item.is_revoked():  # RFC 9700 §4.14.2: a spent refresh token used again means it leaked
            self.server.revoke(item.grant_id, self.request, "a spent refresh token was used again")
            raise InvalidGrantError("this refresh token was already used; the grant it belongs to is now revoked")
        if self.server.clock() >= item.expires_at:
            raise InvalidGrantError("the refresh token has expired; ask the owner again")
        self.server.live_grant(item.grant_id)
        return item

    def authenticate_user(self, refresh_token):
        return self.server.live_grant(refresh_token.grant_id)

    def revoke_old_credential(self, refresh_token):
        """Already spent: `save_token` rotates it in the transaction that issues its successor."""


@dataclass(frozen=True)
class _Revocable:
    grant_id: str
    client_id: str | None

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id


class _Revocation(RevocationEndpoint):
    """RFC 7009: revoking either token of a consent revokes the consent (its grant), as the owner would."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        found = self.server.oauth.refresh(token_string)
        if found is not None:
            return _Revocable(found.grant_id, found.client_id)
        try:
            grant_id = self.server.authority.verify(token_string).grant_id
        except AuthError:
            return None  # RFC 7009 §2.2: an invalid token needs no revoking
        return _Revocable(grant_id, self.server.oauth.client_of_grant(grant_id))

    def revoke_token(self, token, request):
        self.server.revoke(token.grant_id, request, "the app ended its consent (RFC 7009)")


class VehicleAuthorizationServer(AuthorizationServer):
    """Authlib's server on the vehicle's grants, clients and audit log."""

    def __init__(self, authority: Authority, oauth: OAuthStore, refusals: RefusalLog):
        super().__init__()
        self.authority, self.oauth, self.refusals = authority, oauth, refusals
        self.clock = time.time  # the one clock of codes and refresh tokens (a test may move it)
        self.lock = threading.Lock()  # one token or consent decision at a time: a code is spent exactly once
        self.register_token_generator("default", self._tokens)
        self.register_grant(_CodeGrant, [_S256()])
        self.register_grant(_RefreshGrant)
        self.register_endpoint(_Revocation)

    # what Authlib asks of a framework
    def query_client(self, client_id):
        return self.oauth.client(client_id) if isinstance(client_id, str) else None

    def save_token(self, token, request):
        """The refresh token, the code or refresh token it spends, and the audit row: one transaction, before
        any token leaves (a database that refuses it refuses the request)."""
        grant: Grant = request.user
        self.oauth.issue(
            Issued(
                token.get("refresh_token"),
                request.client.client_id,
                grant,
                spent_code=request.authorization_code,
                rotated=request.refresh_token,
            ),
            self.record(request, grant.id, True, f"issued an access token for {token['scope']}"),
        )

    def create_oauth2_request(self, request):
        return request

    def create_json_request(self, request):
        raise NotImplementedError("no endpoint here takes JSON")

    def handle_response(self, status, body, headers):
        return Answer(status, body, list(headers))

    def handle_error_response(self, request, error):
        reason = f"{error.error}: {error.description or ''}".rstrip(": ")
        self.refusals.record(f"peer:{request.peer}", self.record(request, "", False, reason))
        return super().handle_error_response(request, error)

    def send_signal(self, name, *args, **kwargs):
        """Authlib's hook after a revocation; the revocation itself was audited with it in `revoke`."""

    def validate_requested_scope(self, scope):
        if not scope:
            raise InvalidScopeError("ask for at least one scope, e.g. read:Vehicle.Powertrain.TractionBattery")
        if OWNER_SCOPE in scope.split():
            raise InvalidScopeError("an app cannot ask for the owner's own access")
        try:
            parse_scopes(scope.split())
        except ValueError as exc:
            raise InvalidScopeError(str(exc)) from None

    # the vehicle's side
    def _tokens(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        grant: Grant = user
        scopes = parse_scopes(scope.split())
        token = {
            "token_type": "Bearer",
            "access_token": self.authority.token(grant, scopes, ACCESS_TTL_S),
            "expires_in": int(min(ACCESS_TTL_S, grant.expires_at - self.clock())),
            "scope": " ".join(scopes),
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    def live_grant(self, grant_id: str) -> Grant:
        grant = self.authority.store.grant(grant_id)
        if grant is None or grant.status(self.clock()) != "active":
            raise InvalidGrantError(
                f"the owner's consent (grant {grant_id}) is "
                f"{'unknown' if grant is None else grant.status(self.clock())}"
            )
        return grant

    def revoke(self, grant_id: str, request: OAuth2Request, why: str) -> None:
        """Revoke a consent with its audit row, in one transaction (its live subscriptions end at the fanout's
        next check, within a second); an unknown grant is left alone."""
        record = self.record(request, grant_id, True, f"revoked grant {grant_id}: {why}")
        self.authority.store.revoke_grant(grant_id, self.clock(), record)

    def record(self, request: OAuth2Request, grant_id: str, accepted: bool, reason: str) -> AuditRecord:
        """The audit row of an OAuth request, without its secrets."""
        client_id = request.payload.client_id or extract_basic_authorization(request.headers)[0]
        client = request.client or self.query_client(client_id)
        app = client.name if client is not None else f"unknown client {str(client_id)[:64]!r}"
        grant_id = grant_id or (request.user.id if isinstance(request.user, Grant) else "")
        return AuditRecord(
            time.time(),
            app,
            grant_id,
            f"oauth-{secrets.token_hex(8)}" if accepted else "",  # a refusal repeated is one row with a count
            f"oauth:{urlsplit(request.uri).path}",
            _described(request),
            " ".join(request.user.scopes) if isinstance(request.user, Grant) else None,
            accepted,
            reason,
        )


def _described(request: OAuth2Request) -> str:
    """The request as the audit log shows it, without its secrets."""
    shown = ("response_type", "grant_type", "scope", "redirect_uri", "token_type_hint")
    return " ".join(f"{key}={value}" for key, value in request.payload.data.items() if key in shown) or request.method


Owner = Callable[[HttpRequest], Awaitable[Access]]
Refused = Callable[[HttpRequest, viss.VissError], Awaitable[Response]]


class OAuthEndpoints:
    """The Starlette routes of the authorization server; `owner` checks the owner's token (raising VissError),
    `refused` answers (and audits) a refused owner request as the owner endpoints do."""

    def __init__(self, authority: Authority, owner: Owner, refused: Refused, refusals: RefusalLog):
        self.oauth = OAuthStore(authority.store)
        self.server = VehicleAuthorizationServer(authority, self.oauth, refusals)
        self.owner, self.refused = owner, refused

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/oauth-authorization-server", self.metadata),
            Route("/oauth/authorize", self.consent_page),
            Route("/oauth/consent", self.consent, methods=["GET", "POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
            Route("/owner/clients", self.clients, methods=["GET", "POST"]),
        ]

    async def metadata(self, request: HttpRequest) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
                "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
                "scopes_supported": [
                    f"read:{vss.ROOT}",
                    HEALTH_SCOPE,
                    *(f"actuate:{p}" for p in vss.LEAVES if vss.node(p).type == "actuator"),
                ],
            }
        )

    async def consent_page(self, request: HttpRequest) -> FileResponse:
        # never inside another site's frame: a consent click must be the owner's own (clickjacking)
        return FileResponse(
            CONSENT_PAGE,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'",
            },
        )

    async def consent(self, request: HttpRequest) -> Response:
        """GET: what the app asks for, in plain words. POST {query, scopes, ttl_s, allow}: the owner's decision,
        answered with where to send the browser (the app's redirect URI with a code, or with the error)."""
        try:
            await self.owner(request)
        except viss.VissError as exc:  # answered as the owner endpoints answer it
            return await self.refused(request, exc)
        if request.method == "GET":
            query = request.url.query
            return self._decision(await asyncio.to_thread(self._describe, self._authorize_request(request, query)))
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return JSONResponse(
                {"error": "invalid_request", "error_description": 'POST {"query", "scopes", "ttl_s", "allow"}'}, 400
            )
        return self._decision(
            await asyncio.to_thread(self._decide, self._authorize_request(request, body["query"]), body)
        )

    async def token(self, request: HttpRequest) -> Response:
        return await self._endpoint(request, self.server.create_token_response)

    async def revoke(self, request: HttpRequest) -> Response:
        return await self._endpoint(request, lambda r: self.server.create_endpoint_response("revocation", r))

    async def clients(self, request: HttpRequest) -> Response:
        try:
            owner = await self.owner(request)
        except viss.VissError as exc:
            return await self.refused(request, exc)
        if request.method == "GET":
            return JSONResponse([c.as_dict() for c in self.oauth.clients()])
        body = await _json(request)

        try:
            if not isinstance(body, dict):
                raise TypeError("expected a JSON object")
            client, secret = await asyncio.to_thread(
                self.oauth.register,
                str(body.get("name", "")),
                body.get("redirect_uris"),
                bool(body.get("public", False)),
                registration(owner),
            )
        except (TypeError, ValueError) as exc:  # an owner endpoint: answered as the others are, with a VISS error
            return await self.refused(
                request, viss.bad_request(f'POST {{"name", "redirect_uris": [...], "public"}}: {exc}')
            )
        return JSONResponse({**client.as_dict(), "client_secret": secret}, 201)

    async def _endpoint(self, request: HttpRequest, call) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return await self._unreadable(
                request, 400, "send the parameters as application/x-www-form-urlencoded (RFC 6749 §4.1.3)"
            )
        body = await _bounded_body(request)
        if body is None:
            return await self._unreadable(request, 413, f"at most {MAX_FORM_BYTES} bytes of parameters")
        try:
            params = MultiDict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            return await self._unreadable(request, 400, "the body is not a form")
        oauth_request = _Request("POST", str(request.url), request.headers, params, peer(request))
        try:
            answer: Answer = await asyncio.to_thread(self._locked, call, oauth_request)
        except StorageError as exc:  # nothing was issued or revoked: the change and its audit row go together
            return JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": f"the vehicle's storage refused the write ({exc}); nothing was changed",
                },
                503,
            )
        return answer.response()

    async def _unreadable(self, request: HttpRequest, status: int, description: str) -> Response:
        """A token or revocation request that cannot be read: audited (as bounded text) like any refused attempt."""
        record = AuditRecord(
            time.time(),
            "(unknown client)",
            "",
            "",
            f"oauth:{request.url.path}",
            viss.excerpt(await read_body(request, MAX_FORM_BYTES), read_at_most=MAX_FORM_BYTES),
            None,
            False,
            f"invalid_request: {description}",
        )
        await asyncio.to_thread(self.server.refusals.record, f"peer:{peer(request)}", record)
        return JSONResponse({"error": "invalid_request", "error_description": description}, status)

    def _locked(self, call, *args):
        with self.server.lock:
            return call(*args)

    def _authorize_request(self, request: HttpRequest, query: str) -> _Request:
        uri = str(request.url.replace(path="/oauth/authorize", query=query))
        return _Request("GET", uri, request.headers, MultiDict(parse_qsl(query, keep_blank_values=True)), peer(request))

    def _describe(self, request: _Request) -> Answer:
        try:
            grant = self.server.get_consent_grant(request)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)
        scopes = request.scope.split()
        return Answer(
            200,
            {
                "client": {"name": request.client.name, "client_id": request.client.client_id},
                "redirect_host": urlsplit(grant.redirect_uri).netloc,
                "scopes": [{"scope": s, "text": plain_words(s)} for s in scopes],
                "ttl_choices_s": list(TTL_CHOICES_S),
                "ttl_s": DEFAULT_TTL_S,
            },
            [],
        )

    def _decide(self, request: _Request, body: dict) -> Answer:
        with self.server.lock:
            try:
                grant = self.server.get_consent_grant(request)
            except OAuth2Error as error:
                return self.server.handle_error_response(request, error)
            user = None
            if body.get("allow") is True:
                try:
                    user = self._consent(request, body)
                except OAuth2Error as error:
                    error.redirect_uri, error.state = grant.redirect_uri, request.payload.state
                    return self.server.handle_error_response(request, error)
            if user is not None:
                request.user = user  # stored with its code and audit row (`save_authorization_code`)
            return self.server.create_authorization_response(request, grant_user=user, grant=grant)

    def _consent(self, request: _Request, body: dict) -> Grant | None:
        """The grant the owner approved: the ticked scopes (never more than asked), for the chosen time."""
        approved = body.get("scopes")
        if not isinstance(approved, list) or not all(isinstance(s, str) for s in approved):
            raise InvalidRequestError('"scopes" must be the list of scopes the owner ticked')
        beyond = set(approved) - set(request.scope.split())
        if beyond:
            raise InvalidScopeError(f"the app did not ask for {', '.join(sorted(beyond))}")
        if not approved:
            raise AccessDeniedError("the owner ticked nothing")
        ttl_s = body.get("ttl_s", DEFAULT_TTL_S)
        if ttl_s not in TTL_CHOICES_S:
            raise InvalidRequestError(f"ttl_s must be one of {', '.join(map(str, TTL_CHOICES_S))}")
        return self.server.authority.new_grant(request.client.name, approved, ttl_s)

    @staticmethod
    def _decision(answer: Answer) -> JSONResponse:
        """The consent page's JSON: a description, or where the browser goes now (a code or an error)."""
        if answer.location is not None:
            params = dict(parse_qsl(urlsplit(answer.location).query))
            return JSONResponse(
                {"redirect": answer.location, **{k: params[k] for k in ("error", "error_description") if k in params}}
            )
        return JSONResponse(answer.body, answer.status)


async def _json(request: HttpRequest) -> object:
    """The JSON body, or None where there is none or it is not JSON (the callers say what was expected)."""
    body = await _bounded_body(request)
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _bounded_body(request: HttpRequest) -> bytes | None:
    """The body, read no further than MAX_FORM_BYTES (None: longer than that)."""
    body = await read_body(request, MAX_FORM_BYTES)
    return None if len(body) > MAX_FORM_BYTES else body
