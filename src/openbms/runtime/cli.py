"""`openbms serve`: the BMS running live behind the vehicle interface — the project's main job."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import time

from pathlib import Path

from ..vehicle.auth import OWNER_SCOPE
from ..vehicle.cli import DEFAULT_VEHICLE_ID
from ..vehicle.store import DEFAULT_URL

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the dashboard: static files, no build step
OWNER_TOKEN_TTL_S = 7 * 24 * 3600
DASHBOARD_APP = "owner dashboard"
VEHICLE_CELL = "blade_lfp"  # the simulated vehicle's cell


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="HTTP: the dashboard, HTTP VISS and the owner's endpoints")
    p.add_argument("--viss-port", type=int, default=8090, help="VISS v2 over WebSocket (subprotocol VISSv2)")
    p.add_argument("--db", default=DEFAULT_URL, help="database URL (grants, audit, history, BMS state)")
    p.add_argument("--source", default="sim", help="sim, replay:FILE (a pack file) or can:INTERFACE:CHANNEL")
    p.add_argument("--speed", type=float, default=1.0, help="run the source this many times faster than real time")
    p.add_argument(
        "--cell",
        help=f"cell model: a bundled name or a JSON file (sim and CAN: default {VEHICLE_CELL}; "
        "a replay needs it: a pack file does not say which cell it holds)",
    )
    p.add_argument("--series", type=int, default=100, help="cells in series (sim and CAN sources)")
    p.add_argument("--sensors", type=int, default=10, help="temperature sensors (sim and CAN sources)")
    p.add_argument(
        "--pack",
        help="pack file (YAML or JSON): cell, series, sensors, variation, limits, balancing and "
        "detectors; overrides --cell, --series and --sensors",
    )
    p.add_argument("--vehicle-id", default=os.environ.get("OPENBMS_VEHICLE_ID", DEFAULT_VEHICLE_ID))
    p.add_argument(
        "--mapping",
        help="a brand's mapping file (runtime/brands/*.yaml): with --source can:..., serve the "
        "car's own BMS signals through it instead of running this BMS",
    )
    p.add_argument("--cert", help="TLS certificate (PEM): serve https and wss")
    p.add_argument("--key", help="TLS private key (PEM)")
    p.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients use to reach this server (IP addresses and localhost always work); repeatable",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web app's origin (https://app.example) allowed to open WebSockets besides the dashboard's "
        "own; repeatable",
    )
    p.set_defaults(run=run)


def make_source(spec: str, model, series: int, sensors: int, spread=None):
    from .sources import ReplaySource, SimSource

    kind, _, rest = spec.partition(":")
    if kind == "sim" and not rest:
        from .vehicle import SimulatedVehicle

        try:
            return SimSource(SimulatedVehicle(model, series, sensors, **({"spread": spread} if spread else {})))
        except ModuleNotFoundError as exc:  # the `sim` extra is not installed
            raise ValueError(f"--source sim: {exc}") from None
    if kind == "replay" and rest:
        return ReplaySource(rest)
    if kind == "can" and rest:
        from .can import CanBusSource

        return CanBusSource(rest, series, sensors)
    raise ValueError(f"--source must be sim, replay:FILE or can:INTERFACE:CHANNEL, got {spec!r}")


def run(args) -> int:
    from rich.console import Console
    from rich.markup import escape

    from ..cell import load_cell
    from ..vehicle.auth import Authority
    from ..vehicle.hub import SignalHub
    from ..vehicle.store import StorageError, Store
    from ..pack.balancing import Balancer
    from ..pack.config import load_pack
    from ..safety.monitor import MonitorConfig
    from .bms import Bms
    from .service import NV_KEY, BmsLoop

    console = Console(stderr=True)
    # a fatal signal (SIGBUS from a storage file mapped into memory) says where it came from, on the real stderr
    faulthandler.enable(file=sys.__stderr__)
    if args.mapping:
        return _serve_mapped(args, console)
    if args.pack:
        pack = load_pack(args.pack)
        model, series, sensors = pack.cell_model(Path(args.pack).parent), pack.series, pack.temperature_sensors
        q = float(model.param("capacity_ah", 25.0))
        spread, balancer, config = pack.spread(), pack.balancer(), pack.monitor_config(q)
    else:
        model, series, sensors = load_cell(_cell_name(args)), args.series, args.sensors
        spread, balancer, config = None, Balancer(), MonitorConfig()
    edge = _edge(args)
    try:
        store = Store(args.db)
    except StorageError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    source = make_source(args.source, model, series, sensors, spread)
    rated = (
        {"rated_consumption_wh_per_km": source.rated_consumption_wh_per_km}
        if hasattr(source, "rated_consumption_wh_per_km")
        else {}
    )
    bms = Bms(
        model,
        source.series,
        source.sensors,
        nv=store.load_nv(NV_KEY),
        balancer=balancer if getattr(source, "obeys", False) else None,
        config=config,
        **rated,
    )
    hub = SignalHub()
    authority = Authority(store, args.vehicle_id)
    loop = BmsLoop(source, bms, hub, store, speed=args.speed, sink=getattr(source, "sink", None)).start()
    scheme = "https" if args.cert else "http"
    console.print(
        f"openbms: {source.series} cells from {args.source} at {args.speed:g}x. VISS v2 on "
        f"{'wss' if args.cert else 'ws'}://{args.host}:{args.viss_port}; apps get tokens with "
        f"`openbms token --db {args.db} --app NAME --scope read:...`. Ctrl-C stops."
    )
    try:  # the owner opens the dashboard with their own token in the URL's fragment (never sent to a server log)
        print(f"{scheme}://{args.host}:{args.port}/#token={authority.token(_dashboard_grant(authority))}", flush=True)
    except StorageError as exc:
        console.print(
            f"[bold red]openbms: {escape(str(exc))}[/]: no dashboard link (its grant cannot be stored); "
            "the BMS runs and serves reads, and refuses commands until the database takes writes"
        )
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop saves the state like Ctrl-C does
    try:
        _serve_forever(args, hub, store, edge)
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
        saved = f"state saved to {args.db}" if loop.storage_fault is None else f"state NOT saved: {loop.storage_fault}"
        console.print(f"openbms: stopped after {loop.samples:,} samples; {escape(saved)}")
    return 0


def _cell_name(args) -> str:
    """The cell asked for; the vehicle's own for sim and CAN; a recording's is never assumed."""
    if args.cell:
        return args.cell
    if args.source.startswith("replay:"):
        raise ValueError(
            f"--source {args.source}: a pack file does not say which cell it holds; give --cell "
            f"(a bundled name such as a123_lfp, or a cell JSON) or --pack"
        )
    return VEHICLE_CELL


def _serve_mapped(args, console) -> int:
    """A car whose own BMS speaks its brand's DBC: its signals reach VSS through the mapping, its actuators
    through frames; the vehicle interface (VISS, OAuth, dashboard) is the same."""
    from ..vehicle.auth import Authority
    from ..vehicle.hub import SignalHub
    from ..vehicle.store import Store
    from .can import open_bus
    from .mapping import CanBridge, load_mapping

    kind, _, bus_spec = args.source.partition(":")
    if kind != "can" or not bus_spec:
        raise ValueError(f"--mapping maps a CAN bus: give --source can:INTERFACE:CHANNEL, not {args.source!r}")
    mapping = load_mapping(args.mapping)
    store, hub = Store(args.db), SignalHub()
    bridge = CanBridge(mapping, open_bus(bus_spec), hub).start()
    authority = Authority(store, args.vehicle_id)
    owner = authority.token(_dashboard_grant(authority))
    console.print(f"openbms: {mapping.brand}'s signals from {args.source} through {args.mapping}. Ctrl-C stops.")
    print(f"{'https' if args.cert else 'http'}://{args.host}:{args.port}/#token={owner}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _serve_forever(args, hub, store, _edge(args))
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
        bridge.bus.shutdown()
    return 0


def _serve_forever(args, hub, store, edge) -> None:
    """The vehicle interface (VISS, OAuth, dashboard) on the ports and names the command line gives, until stopped."""
    from ..vehicle.server import run_fast, serve

    run_fast(
        serve(
            hub,
            store,
            host=args.host,
            port=args.port,
            viss_port=args.viss_port,
            vehicle_id=args.vehicle_id,
            cert=args.cert,
            key=args.key,
            static_dir=WEB_DIR,
            edge=edge,
        )
    )


def _edge(args):
    """Who may reach the server: the names it is served under, the web apps allowed to open WebSockets."""
    from ..vehicle.guard import Edge

    return Edge(server_names=(args.host, *args.server_name), allowed_origins=tuple(args.allow_origin)).validate()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _dashboard_grant(authority):
    """The owner's dashboard grant: the one still valid for a day, or a new one (restarts do not pile them up)."""
    now = time.time()
    for grant in authority.grants():
        if grant.app == DASHBOARD_APP and grant.status(now) == "active" and grant.expires_at - now > 24 * 3600:
            return grant
    return authority.grant(DASHBOARD_APP, [OWNER_SCOPE], OWNER_TOKEN_TTL_S)
