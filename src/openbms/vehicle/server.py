"""The VISS v2 server: WebSocket and HTTP transports, the owner's endpoints, and how to run them.

Two listening ports in one process: `viss_port` speaks VISS v2 over WebSocket (subprotocol
`VISSv2`, at `/`, where kuksa-client connects), `port` serves HTTP (VISS reads and sets
at `/Vehicle/...`, the owner's endpoints at `/owner/...`, the same WebSocket at `/viss`
for a browser dashboard, and an optional static directory at `/`). With a certificate
and key both are TLS (wss/https).

Every read and set needs a token; the catalogue's static metadata (a VSS `static-metadata`
get) does not, since it describes the vehicle model, not this vehicle's data, nor do the server
capabilities and the access-control mode (`dynamic-metadata` server_capabilities and validate), as
VISS requires. Every refusal, on any URL, is a VISS error object with the server's time.
Owner endpoints take a Bearer token carrying the `owner` scope (`openbms token --owner`):
  GET /owner/grants · POST /owner/grants {app, scopes, ttl_s} → {grant, token} ·
  DELETE /owner/grants/{id} · GET /owner/audit?limit=&grant= ·
  GET /owner/history?path=&start=&end=&points=
OAuth 2.0 (apps asking the owner on the consent page): see `oauth.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import viss, vss
from .auth import Access, Authority, parse_scopes
from .errors import UNKNOWN_SUBSCRIPTION, VissError, bad_request, revoked_grant
from .guard import Edge, Guard, http_protocol, peer, read_body, ws_protocol
from .history import HistoryRecorder
from .hub import SignalHub
from .limits import Limits, RateLimiter
from .oauth import OAuthEndpoints
from .refusals import RefusalLog
from .service import VehicleService, stale_error
from .store import StorageError, Store
from .subscriptions import Fanout

SUBPROTOCOL = "VISSv2"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # requests that never change anything, so their refusals are not audited
_UNREAD = object()  # `refused` without a value: the body, as text, stands for it
log = logging.getLogger(__name__)


class VehicleInterface:
    """The transports around one hub, store and vehicle; `start`/`stop` its background tasks on the serving loop."""

    def __init__(
        self,
        hub: SignalHub,
        store: Store,
        vehicle_id: str,
        *,
        limits: Limits | None = None,
        edge: Edge | None = None,
        static_dir: str | Path | None = None,
        history_period_s: float = 1.0,
    ):
        self.limits = (limits or Limits()).validate()
        self.edge = (edge or Edge()).validate()
        self.authority = Authority(store, vehicle_id)
        refusals = RefusalLog(store, time.time, self.limits.refusal_window_s, self.limits.refusal_kinds)
        self.service = VehicleService(hub, store, self.authority, refusals=refusals)
        self.fanout = Fanout(hub, self.service)
        self.history = HistoryRecorder(hub, store, history_period_s)
        self.rate = RateLimiter(self.limits.requests_per_s, self.limits.burst)
        self.oauth = OAuthEndpoints(self.authority, self._owner, self.refused, refusals)
        if static_dir is not None and not Path(static_dir).is_dir():
            raise FileNotFoundError(f"static directory {static_dir} does not exist")
        self.static_dir = static_dir
        self._counting: asyncio.Task | None = None

    async def start(self) -> None:
        self.fanout.start()
        self.history.start()
        self._counting = asyncio.create_task(self._count_refusals())

    async def stop(self) -> None:
        await self.fanout.stop()
        await self.history.stop()
        if self._counting is not None:
            self._counting.cancel()
        await asyncio.to_thread(self.service.refusals.flush)

    async def _count_refusals(self) -> None:
        """The audit's counts of repeated refusals, written every second."""
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.service.refusals.flush)

    def viss_app(self) -> Guard:
        return self._app([WebSocketRoute("/", self._websocket)])

    def http_app(self) -> Guard:
        routes = [
            WebSocketRoute("/viss", self._websocket),
            Route("/Vehicle", self._http_signal, methods=["GET", "POST"]),
            Route("/Vehicle/{rest:path}", self._http_signal, methods=["GET", "POST"]),
            Route("/owner/grants", self._owner_grants, methods=["GET", "POST"]),
            Route("/owner/grants/{grant_id}", self._owner_revoke, methods=["DELETE"]),
            Route("/owner/audit", self._owner_audit),
            Route("/owner/history", self._owner_history),
            *self.oauth.routes(),
        ]
        if self.static_dir is not None:
            routes.append(Mount("/", StaticFiles(directory=self.static_dir, html=True)))
        return self._app(routes)

    def _app(self, routes: list) -> Guard:
        """The routes behind the guard, outermost, so that even a 500 answer carries the security headers."""
        return Guard(
            Starlette(
                routes=routes,
                exception_handlers={
                    HTTPException: self._http_exception,
                    StorageError: _storage_error,
                    Exception: _internal_error,
                },
            ),
            self.edge,
            self.refused,
        )

    async def _http_exception(self, request: HttpRequest, exc: Exception) -> JSONResponse:
        """Routing errors (no such resource, a method it does not take) as VISS error objects too."""
        status = getattr(exc, "status_code", 400)
        where = f"{request.method} {request.url.path}"
        if status == 404:
            error = VissError(
                "unavailable_data",
                f"The requested data was not found: nothing is served at {where}; "
                "signals are under /Vehicle/..., the owner's endpoints under /owner/",
            )
        else:
            error = bad_request(
                f"{where} is not served here (HTTP {status}): read with GET and set with POST under /Vehicle/..."
            )
        return await self.refused(request, error)

    # WebSocket
    async def _websocket(self, ws: WebSocket) -> None:
        if SUBPROTOCOL not in ws.scope.get("subprotocols", []):
            await ws.close(code=1002, reason=f"offer the WebSocket subprotocol {SUBPROTOCOL}")
            return
        await ws.accept(subprotocol=SUBPROTOCOL)
        await Connection(ws, self).run()

    # HTTP transport
    async def _http_signal(self, request: HttpRequest) -> JSONResponse:
        now = self.service.clock()
        token = _bearer(request)
        try:
            path = vss.request_path(request.url.path)
        except vss.InvalidValue as exc:
            return await self.refused(request, bad_request(str(exc)))
        if request.method == "POST":
            return await self._http_set(request, path, token)
        try:  # GET and HEAD only read
            self.check_rate(token or f"ip:{peer(request)}")
            filters = viss.parse_filters(_json_query(request, "filter", self.limits), "get")
            return JSONResponse({**await self.get(token, path, filters), "ts": viss.timestamp(now)})
        except VissError as exc:
            return _http_error(exc)

    async def _http_set(self, request: HttpRequest, path: str, token: str | None) -> JSONResponse:
        body: dict | None = None
        try:
            self.check_rate(token or f"ip:{peer(request)}")
            body = await _json_body(request, self.limits)
            request_id = viss.request_id_of(body)
            if request_id is None or "value" not in body:
                raise bad_request('POST {"value": ..., "requestId": "<unique per grant>"} to set a signal')
            if request.query_params.get("filter") is not None:
                raise bad_request("a set takes no filter")
            access = self.service.authorize(token)
            outcome = await asyncio.to_thread(self.service.request_set, access, path, body["value"], request_id)
            return JSONResponse(_set_members(outcome, request_id))
        except VissError as exc:
            if body is None:  # no JSON object came: the body itself, as bounded text
                return await self.refused(request, exc, path)
            return await self.refused(request, exc, path, body.get("value"), viss.request_id_of(body))

    async def refused(
        self,
        request: HttpRequest,
        error: VissError,
        path: str | None = None,
        value: object = _UNREAD,
        request_id: str | None = None,
    ) -> JSONResponse:
        """The answer to a refused HTTP request. One that tries to change something (any method but GET, HEAD
        and OPTIONS, on any URL) is audited first, with its value or, where none could be read, its body as
        bounded text; `path` defaults to the method and URL path."""
        if request.method not in SAFE_METHODS and not error.audited:
            if value is _UNREAD:
                limit = self.limits.max_message_bytes
                value = viss.excerpt(await read_body(request, limit), read_at_most=limit)
            await asyncio.to_thread(
                self.service.audit_refusal,
                _bearer(request),
                f"{request.method} {request.url.path}" if path is None else path,
                value,
                request_id,
                error,
                peer(request),
            )
        return _http_error(error)

    async def get(self, token: object, path: str, filters: viss.Filters) -> dict:
        """A get on either transport; a history is a database query, so it runs off the event loop."""
        if filters.history_s is None:
            return self.service.get(token, path, filters)
        return await asyncio.to_thread(self.service.get, token, path, filters)

    # owner endpoints
    async def _owner(self, request: HttpRequest) -> Access:
        access = self.service.authorize(_bearer(request))
        if not access.is_owner:
            raise VissError("forbidden_request", "the owner endpoints need a token with the 'owner' scope")
        return access

    async def _owner_grants(self, request: HttpRequest) -> JSONResponse:
        try:
            owner = await self._owner(request)
            if request.method == "GET":
                now = self.service.clock()
                return JSONResponse([{**g.as_dict(), "status": g.status(now)} for g in self.authority.grants()])
            body = await _json_body(request, self.limits)
            try:
                grant = self.authority.grant(
                    str(body.get("app", "")),
                    parse_scopes(body.get("scopes") or []),
                    float(body.get("ttl_s", 0)),
                    by=owner,
                )
            except (TypeError, ValueError) as exc:
                error = bad_request(f'POST {{"app", "scopes": [...], "ttl_s"}}: {exc}')
                await asyncio.to_thread(
                    self.service.record_refusal, owner.app, owner.grant_id, "", "owner:grants", body, error
                )
                raise error from None
            return JSONResponse({"grant": grant.as_dict(), "token": self.authority.token(grant)}, status_code=201)
        except VissError as exc:
            return await self.refused(request, exc)

    async def _owner_revoke(self, request: HttpRequest) -> JSONResponse:
        grant_id = request.path_params["grant_id"]
        try:
            owner = await self._owner(request)
            try:
                self.authority.revoke(grant_id, by=owner)
            except ValueError as exc:
                error = VissError("unavailable_data", str(exc))
                await asyncio.to_thread(
                    self.service.record_refusal,
                    owner.app,
                    owner.grant_id,
                    "",
                    f"owner:grants/{grant_id}",
                    "revoke",
                    error,
                )
                raise error from None
            self.fanout.end_grant(grant_id, revoked_grant(grant_id))
            return JSONResponse({"revoked": grant_id})
        except VissError as exc:
            return await self.refused(request, exc)

    async def _owner_audit(self, request: HttpRequest) -> JSONResponse:
        try:
            await self._owner(request)
            limit = _int_query(request, "limit", 100)
            records = self.service.store.audit(limit, request.query_params.get("grant"))
            return JSONResponse([r.as_dict() for r in records])
        except VissError as exc:
            return _http_error(exc)

    async def _owner_history(self, request: HttpRequest) -> JSONResponse:
        try:
            access = await self._owner(request)
            path = request.query_params.get("path", "")
            now = self.service.clock()
            if self.service.select(access, path, viss.Filters()) != [path]:
                raise bad_request(f"history is kept per signal; {path} is a branch")
            start, end = _float_query(request, "start", now - 3600), _float_query(request, "end", now)
            points = await asyncio.to_thread(
                self.service.store.history, path, start, end, _int_query(request, "points", 500)
            )
            return JSONResponse({"path": path, "points": [[t, v] for t, v in points]})
        except VissError as exc:
            return _http_error(exc)

    def check_rate(self, key: str) -> None:
        if not self.rate.allow(key):
            raise VissError(
                "too_many_requests",
                f"at most {self.limits.requests_per_s:g} requests/s (bursts of {self.limits.burst:g}) per token",
            )


class Connection:
    """One WebSocket client: its requests in order, its subscriptions, and a send queue so a slow client only
    delays itself. A client that falls `Limits.send_queue` messages or `Limits.send_queue_bytes` behind is
    disconnected; one that stops reading altogether is dropped by the transport (`guard.ws_protocol`)."""

    def __init__(self, ws: WebSocket, interface: VehicleInterface):
        self.ws, self.interface, self.service = ws, interface, interface.service
        self.token: str | None = None  # from an `authorize` request (kuksa dialect), used when a request has none
        self.subscriptions: set[str] = set()
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(interface.limits.send_queue)
        self.queued_bytes = 0
        self.closing = False

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self.handle(message.get("text") if message.get("text") is not None else message.get("bytes", b""))
        except WebSocketDisconnect:
            pass
        finally:
            self._end_subscriptions()
            writer.cancel()

    def send(self, body: dict | str) -> None:
        if self.closing:
            return
        text = body if isinstance(body, str) else json.dumps(body)
        if self.outbox.full() or self.queued_bytes + len(text) > self.interface.limits.send_queue_bytes:
            self._end_subscriptions()
            self.closing = True
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.outbox.put_nowait(None)  # the writer closes the connection
            return
        self.queued_bytes += len(text)
        self.outbox.put_nowait(text)

    def _end_subscriptions(self) -> None:
        for sub_id in self.subscriptions:
            self.interface.fanout.remove(sub_id)
        self.subscriptions.clear()

    async def _write(self) -> None:
        while (text := await self.outbox.get()) is not None:
            self.queued_bytes -= len(text)
            await self.ws.send_text(text)
        await self.ws.close(code=1013, reason="the client reads notifications too slowly")

    async def handle(self, frame: str | bytes) -> None:
        now = self.service.clock()
        msg: dict = {}
        try:
            msg = viss.decode(frame, self.interface.limits.max_message_bytes)
            token = msg.get("authorization", msg.get("tokens")) or self.token
            self.interface.check_rate(token if isinstance(token, str) else f"connection:{id(self)}")
            reply = await self.dispatch(viss.parse_request(msg), now)
        except VissError as exc:
            if viss.may_change(msg, frame):
                await asyncio.to_thread(self._audit_refusal, msg, frame, exc)
            sub_id = msg.get("subscriptionId") if msg.get("action") == "unsubscribe" else None
            reply = viss.error_response(
                msg.get("action"),
                viss.request_id_of(msg),
                exc,
                now,
                str(sub_id) if isinstance(sub_id, (str, int)) else None,
            )
        if reply is not None:
            self.send(reply)

    def _audit_refusal(self, msg: dict, frame: str | bytes, error: VissError) -> None:
        """A refused set, or what may have been one: audited with its value, or, where there is none to read
        (not JSON, not an object, no action), as the frame's bounded text. Blocking."""
        value = (
            msg.get("targetValue" if msg.get("attribute") == "targetValue" else "value")
            if msg.get("action") == "set"
            else viss.excerpt(frame)
        )
        self.service.audit_refusal(
            msg.get("authorization", msg.get("tokens")) or self.token,
            msg.get("path"),
            value,
            viss.request_id_of(msg),
            error,
            peer(self.ws),
        )

    async def dispatch(self, request: viss.Request, now: float) -> dict | None:
        if request.action == "unsubscribe":
            if request.subscription_id not in self.subscriptions:
                raise VissError(
                    "unavailable_data",
                    f"{UNKNOWN_SUBSCRIPTION[:-1]}: this connection has no subscription {request.subscription_id!r}",
                )
            self.interface.fanout.remove(request.subscription_id)
            self.subscriptions.discard(request.subscription_id)
            return viss.response(request, now)
        if request.action == "get":
            return viss.response(
                request, now, **await self.interface.get(request.token or self.token, request.path, request.filters)
            )
        access = self.service.authorize(request.token or self.token)
        if request.action == "authorize":
            self.token = request.token
            return viss.response(request, now, TTL=int(access.expires_at))
        if request.action == "set":
            outcome = await asyncio.to_thread(
                self.service.request_set, access, request.path, request.value, request.request_id
            )
            return viss.response(request, now, **_set_members(outcome, None))
        return self._subscribe(request, access, now)

    def _subscribe(self, request: viss.Request, access: Access, now: float) -> None:
        limit = self.interface.limits.max_subscriptions
        if len(self.subscriptions) >= limit:
            raise VissError("too_many_requests", f"at most {limit} subscriptions per connection; unsubscribe first")
        leaves = self.service.subscription_leaves(access, request.path, request.filters)
        sub = self.interface.fanout.add(access, leaves, self.send, request.filters)
        self.subscriptions.add(sub.id)
        self.send(viss.response(request, now, subscriptionId=sub.id))
        stale_since = self.service.hub.stale_since()
        if stale_since is not None:  # it resumes with the BMS; until then, no stale values
            self.send(
                {
                    "action": "subscription",
                    "subscriptionId": sub.id,
                    "error": stale_error(stale_since).as_dict(),
                    "ts": viss.timestamp(now),
                }
            )
        elif sub.period_s is None:  # event subscriptions start from the current values
            current = self.service.hub.read_many(leaves)
            sub.offer([(p, v, ts) for p, (v, ts) in current.items() if ts is not None], now)


def _set_members(outcome, request_id: str | None) -> dict:
    """What the BMS applied (it may differ from the request), and why."""
    members = {"data": viss.data_points([(outcome.path, outcome.applied, outcome.time_s)])}
    if outcome.reason:
        members["reason"] = outcome.reason
    if request_id is not None:
        members["requestId"] = request_id
    return members


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


async def _storage_error(request: HttpRequest, exc: Exception) -> JSONResponse:
    """A write the database refused (an owner's grant or revocation): nothing was changed."""
    return _http_error(
        VissError("service_unavailable", f"the vehicle's storage refused the write ({exc}); nothing was changed")
    )


async def _internal_error(request: HttpRequest, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback here, answered without one (HTTP 500 has no VISS reason)."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {
            "error": {
                "number": 500,
                "reason": "internal_error",
                "message": "the server failed on this request; it is logged",
            }
        },
        status_code=500,
    )


def _http_error(exc: VissError) -> JSONResponse:
    """A VISS error object with the server's time, the HTTP status being its number."""
    headers = (
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'}
        if exc.number == 401
        else None
    )
    return JSONResponse(
        {"error": exc.as_dict(), "ts": viss.timestamp(time.time())}, status_code=exc.number, headers=headers
    )


async def _json_body(request: HttpRequest, limits: Limits) -> dict:
    max_bytes = limits.max_message_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise bad_request(f"the body has {declared} bytes; at most {max_bytes} are accepted")
    return viss.decode(await read_body(request, max_bytes), max_bytes)


def _json_query(request: HttpRequest, name: str, limits: Limits) -> object:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    return viss.parse_json(raw, limits.max_message_bytes, what=f"query parameter {name!r}")


def _int_query(request: HttpRequest, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request(f"query parameter {name!r} must be a positive whole number, got {raw!r}")
    return int(raw)


def _float_query(request: HttpRequest, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be a number (Unix seconds), got {raw!r}") from None


class VehicleServer:
    """Both transports of one `VehicleInterface` under uvicorn, on one event loop."""

    def __init__(
        self,
        hub: SignalHub,
        store: Store,
        *,
        host: str,
        port: int,
        viss_port: int,
        vehicle_id: str,
        cert: str | None = None,
        key: str | None = None,
        static_dir: str | Path | None = None,
        limits: Limits | None = None,
        edge: Edge | None = None,
        history_period_s: float = 1.0,
    ):
        if (cert is None) != (key is None):
            raise ValueError("TLS needs both a certificate and its key")
        self.interface = VehicleInterface(
            hub, store, vehicle_id, limits=limits, edge=edge, static_dir=static_dir, history_period_s=history_period_s
        )
        edge = self.interface.edge
        common = {
            "host": host,
            "ssl_certfile": cert,
            "ssl_keyfile": key,
            "lifespan": "off",
            "access_log": False,
            "log_level": "warning",
            "http": http_protocol(edge.header_timeout_s),
            "ws": ws_protocol(edge.stall_s),
            "ws_per_message_deflate": False,
            "ws_max_size": self.interface.limits.max_frame_bytes,
        }
        self.servers = [
            uvicorn.Server(uvicorn.Config(self.interface.http_app(), port=port, **common)),
            uvicorn.Server(uvicorn.Config(self.interface.viss_app(), port=viss_port, **common)),
        ]
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, sockets: tuple[socket.socket, socket.socket] | None = None) -> None:
        """Serve until `stop()` (or a signal stops either transport)."""
        self._loop = asyncio.get_running_loop()
        await self.interface.start()
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock] if sockets else None))
            for server, sock in zip(self.servers, sockets or (None, None))
        ]
        try:
            while not all(s.started for s in self.servers) and not any(t.done() for t in tasks):
                await asyncio.sleep(0.01)
            self.ready.set()
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._request_exit()
            await asyncio.gather(*tasks)
        finally:
            await self.interface.stop()

    def stop(self) -> None:
        """Thread-safe."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_exit)

    def _request_exit(self) -> None:
        for server in self.servers:
            server.should_exit = True


async def serve(
    hub: SignalHub,
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    viss_port: int = 8090,
    vehicle_id: str,
    cert: str | None = None,
    key: str | None = None,
    static_dir: str | Path | None = None,
    limits: Limits | None = None,
    edge: Edge | None = None,
) -> None:
    """Serve HTTP on `port` and VISS v2 WebSocket on `viss_port` until cancelled or signalled."""
    await VehicleServer(
        hub,
        store,
        host=host,
        port=port,
        viss_port=viss_port,
        vehicle_id=vehicle_id,
        cert=cert,
        key=key,
        static_dir=static_dir,
        limits=limits,
        edge=edge,
    ).run()


@dataclass(frozen=True)
class RunningServer:
    http_url: str
    viss_url: str
    server: VehicleServer

    @property
    def authority(self) -> Authority:
        return self.server.interface.authority

    @property
    def hub(self) -> SignalHub:
        return self.server.interface.service.hub

    @property
    def store(self) -> Store:
        return self.server.interface.service.store


@contextmanager
def running_server(
    hub: SignalHub, store: Store, *, vehicle_id: str = "OPENBMS0000000001", host: str = "127.0.0.1", **options
) -> Iterator[RunningServer]:
    """Serve on free ports in a background thread (for tests, benchmarks and notebooks)."""
    sockets = tuple(_bound_socket(host) for _ in range(2))
    server = VehicleServer(hub, store, host=host, port=0, viss_port=0, vehicle_id=vehicle_id, **options)
    thread = threading.Thread(target=run_fast, args=(server.run(sockets),), name="openbms-vehicle", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(10):
            raise RuntimeError("the vehicle interface did not start within 10 s")
        secure = options.get("cert") is not None
        http_port, viss_port = (s.getsockname()[1] for s in sockets)
        yield RunningServer(
            f"{'https' if secure else 'http'}://{host}:{http_port}",
            f"{'wss' if secure else 'ws'}://{host}:{viss_port}",
            server,
        )
    finally:
        server.stop()
        thread.join(10)
        for sock in sockets:
            sock.close()


def run_fast(coroutine: Coroutine) -> object:
    """`asyncio.run` on uvloop where it is installed (it roughly halves the p99 notification latency
    in bench/interface_load.py)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _bound_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock
