"""Vehicle interface under load: many VISS v2 subscribers plus a get/set mix, against a bare echo server.

The server process runs the vehicle interface (`openbms.vehicle.server`) with the tests'
demo vehicle publishing every second; a separate load process (so it does not starve the
server) opens `--subscribers` WebSocket connections, each subscribed to the SoC, and
`--request-clients` connections that send gets and sets (4:1) at `--request-rate` in total.
Measured over `--duration` seconds once every subscriber is connected:
- notification latency: receive time minus the data point's timestamp (stamped at publish,
  millisecond resolution), and notifications received per second;
- request latency: request sent to its response received, and requests answered per second.
The baseline is a bare `websockets` server measured the same way in the same run: it
broadcasts a message of the same shape at the same rate and echoes every request.

Run: `.venv/bin/python bench/interface_load.py` (about 2 minutes). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import websockets
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_vehicle_demo import LIMIT, SOC, DemoVehicle  # noqa: E402 (the tests' demo vehicle)

from openbms.vehicle.hub import SignalHub  # noqa: E402
from openbms.vehicle.server import run_fast, running_server  # noqa: E402
from openbms.vehicle.store import Store  # noqa: E402
from openbms.vehicle.viss import timestamp  # noqa: E402

SUBSCRIBERS_PER_TOKEN = 20  # stays inside the per-token rate limit while 1 000 subscribers connect


# --- servers (in this process) -------------------------------------------------------------------


@contextmanager
def openbms_server(publish_period_s: float, tokens_needed: int):
    hub = SignalHub()
    demo = DemoVehicle(hub)
    demo.publish()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        with running_server(hub, store) as server:
            scopes = [f"read:{SOC}", f"actuate:{LIMIT}"]
            tokens = [
                server.authority.token(server.authority.grant(f"bench-{i}", scopes, 3600)) for i in range(tokens_needed)
            ]
            stop = demo.run_in_thread(publish_period_s)
            yield server.viss_url, tokens
            stop.set()
        store.close()


@contextmanager
def echo_server(publish_period_s: float, tokens_needed: int):
    """A bare websockets server: a broadcast of the same shape at the same rate, and an echo."""
    subscribers: set = set()
    ready, loop_holder = threading.Event(), {}

    async def handler(ws):
        async for message in ws:
            request = json.loads(message)
            if request.get("action") == "subscribe":
                subscribers.add(ws)
                await ws.send(
                    json.dumps(
                        {
                            "action": "subscribe",
                            "requestId": request["requestId"],
                            "subscriptionId": "1",
                            "ts": timestamp(time.time()),
                        }
                    )
                )
            else:
                await ws.send(message)
        subscribers.discard(ws)

    async def publish_forever():
        tick = time.monotonic()
        while True:
            tick += publish_period_s  # a fixed rate, as the demo vehicle's thread keeps
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            now = time.time()
            websockets.broadcast(
                subscribers,
                json.dumps(
                    {
                        "action": "subscription",
                        "subscriptionId": "1",
                        "data": {"path": SOC, "dp": {"value": "80.0", "ts": timestamp(now)}},
                        "ts": timestamp(now),
                    }
                ),
            )

    async def main():
        async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=["VISSv2"], compression=None) as server:
            loop_holder["loop"], loop_holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
            loop_holder["port"] = server.sockets[0].getsockname()[1]
            publisher = asyncio.create_task(publish_forever())
            ready.set()
            await loop_holder["stop"].wait()
            publisher.cancel()

    thread = threading.Thread(target=run_fast, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield f"ws://127.0.0.1:{loop_holder['port']}", ["-"] * tokens_needed
    loop_holder["loop"].call_soon_threadsafe(loop_holder["stop"].set)
    thread.join(10)


# --- load generator (in its own process) -----------------------------------------------------------


def run_load(url: str, tokens: list[str], args: argparse.Namespace, connected, results) -> None:
    results.put(run_fast(_load(url, tokens, args, connected)))


async def _load(url: str, tokens: list[str], args, connected) -> dict:
    measuring = asyncio.Event()
    done = asyncio.Event()
    sockets: list = []
    request_ms: list[float] = []
    errors: list[str] = []

    received: list[tuple[float, str | bytes]] = []  # parsed after the run, to keep the receive loop light

    async def subscriber(i: int) -> None:
        try:
            async with websockets.connect(
                url, subprotocols=["VISSv2"], compression=None, open_timeout=60, ping_interval=None
            ) as ws:
                sockets.append(ws)
                await ws.send(
                    json.dumps(
                        {
                            "action": "subscribe",
                            "path": SOC,
                            "requestId": str(i),
                            "authorization": tokens[i // SUBSCRIBERS_PER_TOKEN],
                        }
                    )
                )
                reply = json.loads(await ws.recv())
                if "error" in reply:
                    errors.append(reply["error"]["reason"])
                    return
                with connected.get_lock():
                    connected.value += 1
                async for raw in ws:
                    if measuring.is_set():
                        received.append((time.time(), raw))
        except websockets.ConnectionClosedOK:
            pass
        except Exception as exc:  # count it: a dropped subscriber is a result, not a crash
            errors.append(type(exc).__name__)

    async def requester(i: int) -> None:
        token = tokens[-1 - i]
        period = args.request_clients / args.request_rate
        async with websockets.connect(url, subprotocols=["VISSv2"], compression=None, ping_interval=None) as ws:
            n = 0
            while not done.is_set():
                n += 1
                request_id = uuid.uuid4().hex
                msg = (
                    {"action": "set", "path": LIMIT, "value": str(80 + n % 10)}
                    if n % 5 == 0
                    else {"action": "get", "path": SOC}
                )
                began = time.perf_counter()
                await ws.send(json.dumps({**msg, "requestId": request_id, "authorization": token}))
                while (reply := json.loads(await ws.recv())).get("requestId") != request_id:
                    pass
                if measuring.is_set():
                    request_ms.append(1e3 * (time.perf_counter() - began))
                    if "error" in reply:
                        errors.append(reply["error"]["reason"])
                await asyncio.sleep(max(0.0, period - (time.perf_counter() - began)))

    tasks = []
    for i in range(args.subscribers):
        tasks.append(asyncio.create_task(subscriber(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    while connected.value < args.subscribers and time.monotonic() < deadline and len(errors) < args.subscribers:
        await asyncio.sleep(0.1)
    tasks += [asyncio.create_task(requester(i)) for i in range(args.request_clients)]
    await asyncio.sleep(2)  # warm-up
    measuring.set()
    began = time.monotonic()
    await asyncio.sleep(args.duration)
    elapsed = time.monotonic() - began
    measuring.clear()
    done.set()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    notification_ms = [
        1e3 * (t - datetime.fromisoformat(msg["data"]["dp"]["ts"]).timestamp())
        for t, msg in ((t, json.loads(raw)) for t, raw in received)
        if "data" in msg
    ]
    return {
        "held": connected.value,
        "notification_ms": notification_ms,
        "request_ms": request_ms,
        "elapsed": elapsed,
        "errors": errors,
    }


# --- one measurement, and the table ----------------------------------------------------------------


def measure(name: str, server, args, progress: Progress) -> dict:
    task = progress.add_task(f"{name}: connecting {args.subscribers} subscribers", total=args.subscribers)
    tokens_needed = -(-args.subscribers // SUBSCRIBERS_PER_TOKEN) + args.request_clients
    with server(1.0, tokens_needed) as (url, tokens):
        ctx = multiprocessing.get_context("spawn")
        connected, results = ctx.Value("i", 0), ctx.Queue()
        load = ctx.Process(target=run_load, args=(url, tokens, args, connected, results))
        load.start()
        while load.is_alive() and connected.value < args.subscribers and results.empty():
            progress.update(task, completed=connected.value)
            time.sleep(0.1)
        progress.update(task, completed=connected.value, description=f"{name}: measuring {args.duration:g} s")
        result = results.get(timeout=args.duration + 180)
        load.join(30)
    progress.remove_task(task)
    return result


def row(name: str, r: dict) -> str:
    def pct(values: list[float], q: float) -> str:
        return f"{statistics.quantiles(values, n=100)[q - 1]:.1f}" if len(values) > 1 else "–"

    errors = ", ".join(f"{reason} ×{r['errors'].count(reason)}" for reason in sorted(set(r["errors"]))) or "none"
    return (
        f"| {name} | {r['held']} | {len(r['notification_ms']) / r['elapsed']:.0f} | "
        f"{pct(r['notification_ms'], 50)} / {pct(r['notification_ms'], 99)} | "
        f"{len(r['request_ms']) / r['elapsed']:.0f} | {pct(r['request_ms'], 50)} / {pct(r['request_ms'], 99)} | "
        f"{errors} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--request-clients", type=int, default=10)
    parser.add_argument("--request-rate", type=float, default=100.0, help="gets and sets per second, in total")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per server")
    args = parser.parse_args(argv)
    with Progress(transient=True) as progress:
        results = [
            (name, measure(name, server, args, progress))
            for name, server in (("openbms VISS v2", openbms_server), ("bare websockets echo", echo_server))
        ]
    print(
        f"## Vehicle interface load: {args.subscribers} subscribers at 1 Hz, "
        f"{args.request_rate:g} requests/s (4 gets : 1 set) over {args.request_clients} connections\n"
    )
    print(
        "| server | subscribers held | notifications/s | notification p50 / p99 (ms) | requests/s | "
        "request p50 / p99 (ms) | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, result in results:
        print(row(name, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
