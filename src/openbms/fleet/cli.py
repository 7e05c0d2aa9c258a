"""`openbms simulate-fleet` and `openbms fleet analyze`: arguments and the commands."""

from __future__ import annotations

import argparse

DEFAULT_WORKERS = 2


def add_commands(sub) -> None:
    p = sub.add_parser(
        "simulate-fleet",
        help="simulate a fleet's telemetry (Parquet per vehicle and day) and its truth",
        description="Vehicles of varied age and use on commuting days (FASTSim cycles), some with "
        "internal shorts or faulty cell-voltage sensors, written as "
        "DIR/vehicle=ID/day=YYYY-MM-DD/part.parquet with the truth in DIR/_labels.json.",
    )
    p.add_argument("--vehicles", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--series", type=int, default=16, help="cells in series (default %(default)s)")
    p.add_argument("--sensors", type=int, help="temperature sensors (default: one per 4 cells)")
    p.add_argument("--cell", default="a123_lfp", help="bundled cell or cell JSON (default %(default)s)")
    p.add_argument(
        "--short-fraction", type=float, default=0.1, help="vehicles with an internal short (default %(default)s)"
    )
    p.add_argument(
        "--fault-fraction", type=float, default=0.05, help="vehicles with a sensor fault (default %(default)s)"
    )
    p.add_argument("--start", default="2026-01-05", help="date of the first day (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    _add_cluster_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(run=_simulate)

    fleet = sub.add_parser("fleet", help="fleet analytics over Parquet telemetry on Dask")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "analyze",
        help="health, shorts, sensor faults and a service ranking for every vehicle",
        description="Run the pack's safety monitor over every vehicle's days in order, one Dask "
        "task per vehicle, and write report.html, Parquet and JSON results.",
    )
    p.add_argument("dataset", metavar="DIR", help="vehicle=ID/day=YYYY-MM-DD/part.parquet telemetry")
    p.add_argument("--cell", help="cell model (default: the dataset's _fleet.json)")
    _add_cluster_options(p)
    p.add_argument("--drill-down", type=int, default=8, help="vehicles with their own plots (default %(default)s)")
    p.add_argument("-o", "--output", default="out/fleet", metavar="REPORT_DIR", help="default %(default)s")
    p.set_defaults(run=_analyze)


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask cluster (workers must see DIR)")
    # No default here: argparse lets an explicit value equal to the default pass the exclusion unseen.
    where.add_argument("--workers", type=int, help=f"local worker processes (default {DEFAULT_WORKERS})")


def _simulate(args) -> int:
    from rich.console import Console

    from ..cell import load_cell
    from .cluster import dask_client, map_with_progress
    from .dataset import FleetInfo
    from .simulate import SAMPLING, draw_fleet, simulate_vehicle, write_labels

    q = float(load_cell(args.cell).param("capacity_ah", 25.0))
    sensors = args.sensors or max(1, args.series // 4)
    if not 1 <= sensors <= args.series:
        raise ValueError(f"--sensors must be between 1 and {args.series}, got {sensors}")
    specs = draw_fleet(args.vehicles, args.days, args.series, q, args.seed, args.short_fraction, args.fault_fraction)
    info = FleetInfo(args.cell, args.series, sensors, SAMPLING, args.start)
    info.save(args.output)
    with dask_client(args.scheduler, args.workers or DEFAULT_WORKERS) as client:
        labels = map_with_progress(
            client,
            simulate_vehicle,
            [(s,) for s in specs],
            args.output,
            info,
            args.days,
            description=f"simulating {args.vehicles} vehicles x {args.days} days",
        )
    path = write_labels(args.output, labels)
    Console(stderr=True).print(
        f"wrote {args.output}: {args.vehicles} vehicles x {args.days} days "
        f"({sum(s.short_cell is not None for s in specs)} with shorts, "
        f"{sum(s.fault_kind is not None for s in specs)} with sensor faults); truth in {path}"
    )
    return 0


def _analyze(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .analyze import analyze_fleet
    from .cluster import dask_client
    from .dataset import vehicle_days
    from .report import write_report

    vehicle_days(args.dataset)  # a missing or malformed dataset fails before a cluster starts
    with dask_client(args.scheduler, args.workers or DEFAULT_WORKERS) as client:
        analysis = analyze_fleet(args.dataset, client, args.cell)
    paths = write_report(args.output, analysis, args.drill_down)
    table = Table(title=f"who needs service first ({len(analysis.vehicles)} vehicles)")
    for column in ("rank", "vehicle", "reason"):
        table.add_column(column)
    for rank, vehicle, reason in (
        analysis.vehicles[["Rank", "Vehicle", "Service Reason"]].head(10).itertuples(index=False, name=None)
    ):
        table.add_row(str(rank), vehicle, reason)
    Console().print(table)
    m = analysis.meta
    Console(stderr=True).print(
        f"{m['cell_steps']:,} cell-steps in {m['wall_s']:.1f} s "
        f"({m['cell_steps_per_s']:,.0f}/s on {m['workers']} workers); wrote " + ", ".join(str(p) for p in paths)
    )
    return 0
