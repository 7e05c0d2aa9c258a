"""Another brand's app for this car, written as an app maker would: OAuth 2.0 to ask the owner, VISS v2 to talk.

It knows nothing of openbms beyond the standards: it reads the vehicle's OAuth metadata (RFC 8414), sends
the owner to the car's consent page with Authlib's OAuth client (authorization code + PKCE), then reads the
state of charge and range over VISS v2 (HTTP), keeps a VISS WebSocket subscription to the state of charge
open, and sets the charge limit. One owner, kept in memory: an example, not a product.

    openbms app register "Other Brand App" --redirect-uri http://127.0.0.1:5000/callback
    python examples/other_brand_app.py --vehicle http://127.0.0.1:8000 --client-id ID --client-secret SECRET
    # open http://127.0.0.1:5000 and press "Connect my car"
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import uvicorn
import websockets
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

BATTERY = "Vehicle.Powertrain.TractionBattery"
SOC, RANGE, LIMIT = f"{BATTERY}.StateOfCharge.Current", f"{BATTERY}.Range", f"{BATTERY}.Charging.ChargeLimit"
SCOPE = f"read:{BATTERY} actuate:{LIMIT}"


@dataclass
class Config:
    vehicle: str  # the car's HTTP address, e.g. http://127.0.0.1:8000
    client_id: str
    client_secret: str | None
    redirect_uri: str
    viss: str | None = None  # the car's VISS WebSocket; by default <vehicle>/viss


@dataclass
class Connection:
    """What the app keeps for its one owner: the OAuth client and its tokens, the live subscription's news."""

    oauth: AsyncOAuth2Client
    metadata: dict
    verifier: str = ""
    state: str = ""
    soc_live: str = ""
    subscription: str = "not subscribed"
    message: str = ""
    task: asyncio.Task | None = field(default=None, repr=False)


def make_app(config: Config) -> Starlette:
    conn: dict[str, Connection] = {}

    async def connection() -> Connection:
        if "car" not in conn:
            async with httpx.AsyncClient() as http:
                metadata = (await http.get(f"{config.vehicle}/.well-known/oauth-authorization-server")).json()
            oauth = AsyncOAuth2Client(
                config.client_id,
                config.client_secret,
                scope=SCOPE,
                redirect_uri=config.redirect_uri,
                code_challenge_method="S256",
                token_endpoint=metadata["token_endpoint"],
                token_endpoint_auth_method="client_secret_basic" if config.client_secret else "none",
            )
            conn["car"] = Connection(oauth, metadata)
        return conn["car"]

    async def home(request: Request) -> HTMLResponse:
        car = await connection()
        if not car.oauth.token:
            return _page(car, '<p><a id="connect" href="/connect">Connect my car</a></p>')
        (soc, refused), (rng, _) = await _read(car, config, SOC), await _read(car, config, RANGE)
        return _page(
            car,
            f"""
<p id="read-problem">{html.escape(refused)}</p>
<p>State of charge: <strong id="soc">{html.escape(soc)}</strong> %</p>
<p>Range: <strong id="range">{html.escape(rng)}</strong></p>
<p>Live state of charge: <strong id="soc-live">{html.escape(car.soc_live)}</strong>
   (<span id="subscription">{html.escape(car.subscription)}</span>)</p>
<form method="post" action="/limit"><label for="limit">Charge limit (%)</label>
  <input id="limit" name="limit" type="number" min="0" max="100" value="80"> <button id="set-limit">Set</button></form>
<form method="post" action="/refresh"><button id="refresh">Refresh access</button></form>""",
        )

    async def connect(request: Request) -> RedirectResponse:
        car = await connection()
        car.verifier = generate_token(48)
        url, car.state = car.oauth.create_authorization_url(
            car.metadata["authorization_endpoint"], code_verifier=car.verifier
        )
        return RedirectResponse(url, 303)

    async def callback(request: Request) -> RedirectResponse:
        car = await connection()
        if request.query_params.get("error"):
            car.message = (
                f"The car said no: {request.query_params.get('error_description', request.query_params['error'])}"
            )
        elif request.query_params.get("state") != car.state:
            car.message = "That answer was not for this app's request (state mismatch); try again."
        else:
            await car.oauth.fetch_token(
                car.metadata["token_endpoint"],
                authorization_response=str(request.url),
                code_verifier=car.verifier,
                state=car.state,
            )
            car.message = f"Connected. The owner allowed: {car.oauth.token['scope']}"
            car.task = asyncio.create_task(_subscribe(car, config))
        return RedirectResponse("/", 303)

    async def set_limit(request: Request) -> RedirectResponse:
        car = await connection()
        value = parse_qs((await request.body()).decode()).get("limit", [""])[0]
        answer = await car.oauth.post(
            f"{config.vehicle}/{LIMIT.replace('.', '/')}", json={"value": value, "requestId": uuid.uuid4().hex}
        )
        if answer.status_code == 200:
            reply = answer.json()
            car.message = f"Charge limit set to {reply['data']['dp']['value']} %" + (
                f" ({reply['reason']})" if reply.get("reason") else ""
            )
        else:
            car.message = f"Charge limit not set: {_error(answer)}"
        return RedirectResponse("/", 303)

    async def refresh(request: Request) -> RedirectResponse:
        car = await connection()
        try:
            await car.oauth.refresh_token(car.metadata["token_endpoint"])
            car.message = "Access refreshed."
        except OAuthError as exc:  # the token endpoint's OAuth error
            car.message = f"Refresh refused: {exc}"
        return RedirectResponse("/", 303)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/connect", connect),
            Route("/callback", callback),
            Route("/limit", set_limit, methods=["POST"]),
            Route("/refresh", refresh, methods=["POST"]),
        ]
    )


async def _read(car: Connection, config: Config, path: str) -> tuple[str, str]:
    """A VISS v2 HTTP get: (the value, "") or ("—", what the car said instead)."""
    answer = await car.oauth.get(f"{config.vehicle}/{path.replace('.', '/')}")
    if answer.status_code != 200:
        return "—", f"The car refused a read: {_error(answer)}"
    return answer.json()["data"]["dp"]["value"], ""


async def _subscribe(car: Connection, config: Config) -> None:
    """A VISS v2 WebSocket subscription to the state of charge, until the car ends it."""
    url = config.viss or config.vehicle.replace("http", "ws", 1) + "/viss"
    async with websockets.connect(url, subprotocols=["VISSv2"]) as ws:
        await ws.send(
            json.dumps(
                {
                    "action": "subscribe",
                    "path": SOC,
                    "requestId": uuid.uuid4().hex,
                    "authorization": car.oauth.token["access_token"],
                    "filter": {"type": "timebased", "parameter": {"period": "200"}},
                }
            )
        )
        try:
            async for frame in ws:
                message = json.loads(frame)
                if "error" in message:
                    car.subscription = f"ended: {message['error']['message']}"
                    return
                if message.get("action") == "subscription":
                    car.subscription = "live"
                    car.soc_live = message["data"]["dp"]["value"]
        except websockets.ConnectionClosed as exc:
            car.subscription = f"ended: the car closed the connection ({exc.rcvd.code if exc.rcvd else 'no code'})"


def _error(answer: httpx.Response) -> str:
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError):
        return f"HTTP {answer.status_code}"
    return error["message"] if isinstance(error, dict) else error


def _page(car: Connection, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Other Brand App</title>
</head><body><h1>Other Brand App</h1><p id="message" role="status">{html.escape(car.message)}</p>{body}</body></html>""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicle", default="http://127.0.0.1:8000", help="the car's HTTP address")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", help="omit for an app registered with --public")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    redirect = f"http://127.0.0.1:{args.port}/callback"
    uvicorn.run(
        make_app(Config(args.vehicle, args.client_id, args.client_secret, redirect)), host="127.0.0.1", port=args.port
    )


if __name__ == "__main__":
    main()
