"""What every connection passes before the application sees it, and the time limits on slow peers.

`Guard` (ASGI middleware, both ports): the `Host` must name this server (an IP address,
`localhost`, or a `--server-name`), so a page on another site cannot reach it by DNS rebinding;
a browser's WebSocket `Origin` must be the dashboard's own (the same scheme, host and port) or
an `--allow-origin`; the path and query have a length limit (each refusal a VISS error object);
every HTTP answer carries the security headers (a CSP allowing only the server's own scripts, styles and connections, no
framing, no sniffing, and `Cache-Control: no-store` on JSON, which carries tokens).

`http_protocol` closes a connection whose request head is not complete in `header_timeout_s`
(slowloris: uvicorn's own idle timer restarts at every byte); `ws_protocol` aborts a WebSocket
whose peer has not read for `stall_s` once the send buffer is full, so a client that never
reads cannot hold memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import VissError, bad_request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


@dataclass(frozen=True)
class Edge:
    """Who may reach the server, and how long a slow peer may take."""

    server_names: tuple[str, ...] = ()  # host names besides IP addresses and localhost
    allowed_origins: tuple[str, ...] = ()  # browser origins besides the dashboard's own, e.g. https://app.example
    max_path_bytes: int = 1024
    max_query_bytes: int = 16_384
    header_timeout_s: float = 10.0  # a request head must be complete within this
    stall_s: float = 10.0  # a WebSocket peer that reads nothing for this long is dropped

    def validate(self) -> Edge:
        for name in ("max_path_bytes", "max_query_bytes", "header_timeout_s", "stall_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Edge.{name} must be positive, got {getattr(self, name)}")
        for origin in self.allowed_origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"an allowed origin is scheme://host[:port] with nothing after, got {origin!r}")
        return self


def peer(connection: HTTPConnection) -> str:
    """The address a request or WebSocket came from (whose refusals the audit counts together)."""
    return connection.client.host if connection.client else "?"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read once (kept in the request's state, so the audit of a refusal can quote it after a handler
    read it) and no further than one byte past `max_bytes`: a longer one is refused by its size."""
    body = getattr(request.state, "body", None)
    if body is None:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                break
        request.state.body = body
    return body


EdgeRefusal = Callable[[Request, VissError], Awaitable[object]]


class Guard:
    """`refused(request, error)`, when given, hears of each HTTP request refused here (to audit those that try
    to change something) before it is answered."""

    def __init__(self, app: ASGIApp, edge: Edge, refused: EdgeRefusal | None = None):
        self.app, self.edge, self.refused = app, edge.validate(), refused
        self._names = {"localhost", *(n.lower() for n in edge.server_names)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._refusal(scope, headers)
        if problem is not None:
            if self.refused is not None and scope["type"] == "http":
                await self.refused(Request(scope, receive), problem)
            await _refuse(scope, send, problem)
        elif scope["type"] == "http":
            await self.app(scope, receive, _with_headers(send, scope.get("scheme") == "https"))
        else:
            await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> VissError | None:
        host = headers.get("host", "")
        if not self._serves(host):
            return bad_request(f"this server does not answer to the host {host[:100]!r}; name it with --server-name")
        path, query = scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")
        if len(path) > self.edge.max_path_bytes or len(query) > self.edge.max_query_bytes:
            return bad_request(
                f"the path has {len(path)} bytes and the query {len(query)}; at most "
                f"{self.edge.max_path_bytes} and {self.edge.max_query_bytes} are accepted"
            )
        origin = headers.get("origin")
        if scope["type"] == "websocket" and origin is not None and not self._allows(origin, scope, host):
            return VissError(
                "forbidden_request",
                f"WebSocket connections from pages at {origin[:100]!r} are not "
                "allowed; the owner can allow one with --allow-origin",
            )
        return None

    def _serves(self, host: str) -> bool:
        name = host.rpartition("]")[0].lstrip("[") if host.startswith("[") else host.partition(":")[0]
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name.lower().rstrip(".") in self._names

    def _allows(self, origin: str, scope: Scope, host: str) -> bool:
        own = f"{'https' if scope.get('scheme') in ('https', 'wss') else 'http'}://{host}"
        return origin.lower() == own.lower() or origin in self.edge.allowed_origins


def _with_headers(send: Send, secure: bool) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            headers += [h for h in _HEADERS if h[0] not in names]
            if b"cache-control" not in names:
                json_body = any(n.lower() == b"content-type" and v.startswith(b"application/json") for n, v in headers)
                headers.append((b"cache-control", b"no-store" if json_body else b"no-cache"))
            if secure:
                headers.append((b"strict-transport-security", b"max-age=31536000"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _refuse(scope: Scope, send: Send, error: VissError) -> None:
    status, body = error.number, json.dumps({"error": error.as_dict()}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *_HEADERS,
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a deadline on each request head."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeadDeadline(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            waiting_for = self.cycle  # a new request head replaces it
            self._head_timer = self.loop.call_later(header_timeout_s, self._expire, waiting_for)

        def _expire(self, waiting_for) -> None:
            if self.transport.get_protocol() is self and self.cycle is waiting_for and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time: a slow or idle peer

    return HeadDeadline


def ws_protocol(stall_s: float) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol (websockets, sans-I/O) dropping a peer that stops reading."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class StallLimit(WebSocketsSansIOProtocol):
        _stall_timer: asyncio.TimerHandle | None = None

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stall_timer is None:
                self._stall_timer = self.loop.call_later(stall_s, self.transport.abort)

        def resume_writing(self) -> None:
            self._cancel()
            super().resume_writing()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _cancel(self) -> None:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None

    return StallLimit
