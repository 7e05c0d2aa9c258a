"""The `openbms` command: thin wrappers over each layer's entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .io import ColumnMap, DataError
from .io.a123 import a123_ambient_c, default_a123_dir

console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "openbms " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        return args.run(args) or 0
    except (DataError, ValueError, FileNotFoundError) as exc:
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openbms", description="An open battery management system for LFP packs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "identify",
        help="identify a cell model from OCV and dynamic test files",
        description="Identify an ESC cell model (OCV with hysteresis, SoC-dependent R0 and RC "
        "branches, efficiency, capacity, each against temperature). OCV tests show "
        "full → empty → full (one file, a discharge and a charge file, or GITT), or empty → full "
        "(a charge branch alone, from a discharge to the cut-off); "
        "dynamic tests (HPPC, drive cycles) start and end anywhere: each test's SoC is "
        "placed on what it shows (full, empty, rested voltages) and the report says how.",
    )
    p.add_argument(
        "--ocv", nargs="+", default=[], metavar="FILE", help="slow OCV tests (C/20, C/30, GITT, a charge from empty)"
    )
    p.add_argument(
        "--dynamic", nargs="+", default=[], metavar="FILE", help="HPPC (USABC, IEC 62660-1), pulse or drive-cycle tests"
    )
    p.add_argument(
        "--a123",
        metavar="DIR",
        help="use every file of the A123 data set in DIR (its ocv/ and dyn/); "
        "default when no files are given: $OPENBMS_A123_DIR or ../shared/data/a123",
    )
    p.add_argument(
        "-o",
        "--output",
        default="out/cell.json",
        help="cell model JSON to write (default %(default)s); or a time series (.bdf, .bdf.csv, .bdf.parquet, "
        ".csv, .parquet): every dynamic test's measured and model voltage, with the model beside it as NAME.json",
    )
    p.add_argument("--plot", help="PNG of measured vs model voltage (default: beside the model, *_fit.png)")
    p.add_argument("--name", default=None, help="cell name (default: the output file's stem)")
    p.add_argument("--chemistry", default="unknown", help="e.g. LFP, NMC (recorded, never assumed)")
    p.add_argument("--n-rc", type=int, default=3, choices=(1, 2, 3), help="RC branches (default %(default)s)")
    p.add_argument(
        "--ambient",
        action="append",
        default=[],
        metavar="[FILE=]DEGC",
        help="chamber temperature for files with no or a partial temperature column: one value for "
        "all, or FILE=DEGC for one file (repeatable); what it filled is reported",
    )
    _add_reader_options(p)
    p.set_defaults(run=_identify)

    p = sub.add_parser(
        "derive-cell",
        help="derive a cell from another by capacity scaling",
        description="Scale a cell's capacity; resistances scale inversely, as for cells in parallel.",
    )
    p.add_argument("source", help="bundled cell name or cell JSON path")
    p.add_argument("--capacity-ah", type=float, required=True, help="capacity at 25 degC of the new cell")
    p.add_argument("--name", help="the new cell's name (default: the output's stem, else SOURCE_<capacity>ah)")
    p.add_argument("-o", "--output", help="cell JSON to write (default: out/NAME.json)")
    p.set_defaults(run=_derive_cell)

    p = sub.add_parser(
        "estimate",
        help="estimate SoC with its bound, health and power limits from measurements",
        description="Run the SoC filter (sigma-point by default), capacity and resistance "
        "estimation and 10 s / 30 s power limits over a cell's measurements.",
    )
    p.add_argument(
        "data",
        help="measurements: BDF CSV or Parquet (Test Time / s, Current / A with + = charging, "
        "Voltage / V, and a temperature column or --temperature)",
    )
    p.add_argument("--cell", default="a123_lfp", help="cell model: bundled name or JSON path (default %(default)s)")
    p.add_argument("--soc0", type=float, help="initial SoC, 0–1 (default: from the first voltage, wide prior)")
    p.add_argument("--soc0-std", type=float, default=0.05, help="std of --soc0 (default %(default)s)")
    p.add_argument("--temperature", type=float, help="degC, when the file has no temperature column")
    p.add_argument("--ekf", action="store_true", help="extended instead of sigma-point Kalman filter")
    p.add_argument(
        "-o",
        "--output",
        default="out/states.csv",
        help="states: .csv (also .csv.gz, …), .parquet or a BDF file (.bdf, .bdf.csv, .bdf.parquet) "
        "(default %(default)s)",
    )
    p.add_argument(
        "--plot", nargs="?", const="", help="also write a plot: .png, .svg or .pdf (default: a PNG beside the output)"
    )
    _add_reader_options(p)
    p.set_defaults(run=_estimate)

    p = sub.add_parser(
        "monitor",
        help="run the pack's safety checks over a pack file, write events",
        description="Sensor plausibility, safe operating area, internal shorts and thermal runaway "
        "(GB 38031-2025) over a pack file with 'Test Time / s', 'Current / A' (+ = "
        "charging), 'Cell Voltage {i} / V' and 'Cell Temperature {j} / degC'.",
    )
    p.add_argument("data", metavar="PACK", help="pack time series (CSV, CSV.gz or Parquet)")
    p.add_argument("--cell", help="cell model: a bundled name or a JSON file (default: the pack file's)")
    p.add_argument("--pack", help="pack description (YAML or JSON): cell, series, sensors, limits, detectors")
    p.add_argument("-o", "--output", default="out/events.jsonl", help="events, one JSON object per line")
    p.add_argument("--temperature", type=float, help="degC, for files without temperature columns")
    p.set_defaults(run=_monitor)

    p = sub.add_parser(
        "simulate",
        help="run the physics validation plant and write measured data and truth",
        description="Simulate a PyBaMM cell (the plant) on an experiment or FASTSim drive power, "
        "add sensor errors, and write the measurements (BDF) and the truth separately.",
    )
    from .sim.cli import add_arguments

    add_arguments(p)

    p = sub.add_parser(
        "serve",
        help="run the BMS live behind the VSS / VISS v2 vehicle interface (the main job)",
        description="The BMS in a real-time loop on a simulated blade-pack vehicle (default), a "
        "recorded pack file or a CAN bus, serving VSS signals over VISS v2 (WebSocket "
        "and HTTP) to apps the owner grants access.",
    )
    from .runtime.cli import add_arguments as add_serve_arguments

    add_serve_arguments(p)

    from .vehicle.cli import add_commands as add_vehicle_commands

    add_vehicle_commands(sub)

    from .fleet.cli import add_commands as add_fleet_commands

    add_fleet_commands(sub)
    return parser


def _add_reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--columns",
        metavar="MAP.json",
        help="column map for another cycler's files "
        '({"columns": {"their name": "BDF label"}, "scale": {...}, "current_sign": ...})',
    )
    p.add_argument(
        "--current-sign",
        choices=("charge-positive", "discharge-positive"),
        help="the files' current sign convention, if not the map's",
    )


def _ambient_option(values: list[str]) -> dict[str | None, float]:
    """--ambient 20 and --ambient FILE=15 into {None: 20, "FILE": 15}."""
    out: dict[str | None, float] = {}
    for value in values:
        file, _, degc = value.rpartition("=")
        try:
            out[file or None] = float(degc)
        except ValueError:
            raise ValueError(f"--ambient {value!r}: expected DEGC or FILE=DEGC, e.g. --ambient 25") from None
        if not -100 <= out[file or None] <= 150:
            raise ValueError(f"--ambient {value!r} is outside -100 to 150 degC (is it in kelvin?)")
    return out


def _reader_options(args) -> dict:
    return {
        "column_map": ColumnMap.from_json(args.columns) if args.columns else None,
        "current_sign": args.current_sign,
    }


def _identify(args) -> int:
    from .cell.identify import identify
    from .cell.model import provenance
    from .cell.report import fit_frame, plot_fit
    from .io import read_tests, write_timeseries
    from .io.writers import TIMESERIES_SUFFIXES, beside, checked_output

    ocv_files, dynamic_files = list(args.ocv), list(args.dynamic)
    if args.a123 or not (ocv_files or dynamic_files):
        root = Path(args.a123) if args.a123 else default_a123_dir()
        if not root.is_dir():
            raise FileNotFoundError(f"A123 data not found at {root}: pass --a123 DIR or set OPENBMS_A123_DIR")
        ocv_files += sorted(str(p) for p in (root / "ocv").glob("*.csv*"))
        dynamic_files += sorted(str(p) for p in (root / "dyn").glob("*.csv*"))
    output = Path(args.output)
    series = None
    if output.name.lower().endswith(TIMESERIES_SUFFIXES):  # -o x.bdf: the fit as a time series
        series, output = checked_output(output), beside(output, ".json")
    name = args.name or output.stem
    ambient = _ambient_option(args.ambient)
    with console.status("reading tests"):
        ocv_tests = read_tests(ocv_files, **_reader_options(args), ambient_c=ambient)
        dynamic_tests = read_tests(dynamic_files, **_reader_options(args), ambient_c=ambient)
    with console.status("identifying") as status:
        model, scores = identify(
            ocv_tests,
            dynamic_tests,
            n_rc=args.n_rc,
            name=name,
            chemistry=args.chemistry,
            provenance=provenance(args.command_line, [Path(f).name for f in ocv_files + dynamic_files]),
            on_step=lambda step: status.update(step),
        )
    model.save(output)
    written = [str(output)] + ([str(write_timeseries(fit_frame(scores), series))] if series else [])
    plot = plot_fit(scores, args.plot or output.with_name(output.stem + "_fit.png"), f"{name}: measured vs model")
    table = Table(title=f"{name}: model voltage error on the dynamic tests")
    for column in (
        "test",
        "temperature / degC",
        "RMSE / mV",
        "max error / mV",
        "start SoC",
        "SoC placed by",
        "capacity / Ah",
    ):
        table.add_column(column, justify="right")
    for s, report in zip(scores, model.fit["tests"]):
        table.add_row(
            s.name,
            f"{s.temperature_c:g}",
            f"{s.rmse_mv:.2f}",
            f"{s.max_error_mv:.0f}",
            f"{report['soc0']:.3f}",
            report["start"],
            f"{float(model.param('capacity_ah', s.temperature_c)):.3f}",
        )
    Console().print(table)
    shown = [
        f"{t['test']} ({t['temperature_c']:g} degC)"
        for t in model.fit["ocv_tests"] + model.fit["tests"]
        if "capacity" in t["shows"]
    ]
    console.print(f"capacity and efficiency shown by: {', '.join(shown)}; the model's capacity is the OCV tests'")
    for note in model.provenance.get("assumptions", []):
        console.print(f"assumed: {note}", markup=False, highlight=False)
    for warning in model.fit["warnings"]:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    console.print(f"wrote {', '.join(written)} and {plot}")
    return 0


def _estimate(args) -> int:
    from rich.progress import Progress

    from .cell import load_cell
    from .estimate import EstimateOptions, estimate
    from .estimate.api import TEMPERATURE_RANGE_C
    from .estimate.report import plot_estimate
    from .io import read_timeseries, write_timeseries
    from .io.columns import AMBIENT_TEMPERATURE, CELL_TEMPERATURE, CURRENT, TIME, VOLTAGE
    from .io.writers import PLOT_SUFFIXES, beside, checked_output

    output = checked_output(args.output)  # the flags before the work, not after it
    plot = None if args.plot is None else checked_output(args.plot or beside(output, ".png"), PLOT_SUFFIXES)
    low, high = TEMPERATURE_RANGE_C
    if args.temperature is not None and not low <= args.temperature <= high:
        raise ValueError(f"--temperature {args.temperature:g} is outside {low:g} to {high:g} degC (is it in kelvin?)")
    if args.soc0 is not None and not 0 <= args.soc0 <= 1:
        raise ValueError(f"--soc0 must be a fraction in [0, 1], got {args.soc0}")
    cell = load_cell(args.cell)
    df = read_timeseries(args.data, **_reader_options(args))
    if args.temperature is not None:
        temperature = args.temperature
    elif CELL_TEMPERATURE in df or AMBIENT_TEMPERATURE in df:
        temperature = df[CELL_TEMPERATURE if CELL_TEMPERATURE in df else AMBIENT_TEMPERATURE].to_numpy()
    elif (temperature := a123_ambient_c(args.data)) is not None:
        console.print(f"temperature {temperature:g} degC, from the A123 file's name (--temperature to override)")
    else:
        raise DataError(
            args.data,
            f"no temperature column ({CELL_TEMPERATURE!r}), and the name is not an A123 "
            "script's (A123_DYN_50_P25_s1: 25 degC); pass --temperature",
        )
    options = EstimateOptions(soc0_std=args.soc0_std, sigma_points=not args.ekf)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"estimating {Path(args.data).name}", total=len(df))
        est = estimate(
            cell,
            df[TIME].to_numpy(),
            df[CURRENT].to_numpy(),
            df[VOLTAGE].to_numpy(),
            temperature,
            soc0=args.soc0,
            options=options,
            on_progress=lambda done, total: progress.update(task, completed=done),
        )
    written = [str(write_timeseries(est.frame(), output))]
    if plot is not None:
        written.append(str(plot_estimate(est, plot, f"{Path(args.data).name} with {cell.name}")))
    table = Table(title="estimate at the end")
    for column in (
        "SoC / %",
        "3-sigma range / %",
        "capacity / Ah",
        "resistance / mohm",
        "max charge / W",
        "max discharge / W",
    ):
        table.add_column(column, justify="right")
    lim = next(iter(est.limits.values()))
    lower, upper = (100 * side[-1] for side in est.soc_band)
    table.add_row(
        f"{100 * est.soc[-1]:.1f}",
        f"{lower:.1f}–{upper:.1f}",
        f"{est.capacity_ah[-1]:.3f}",
        f"{1e3 * est.resistance_ohm[-1]:.2f}",
        f"{lim.charge_power_w[-1]:.1f}",
        f"{lim.discharge_power_w[-1]:.1f}",
    )
    Console().print(table)
    console.print("wrote " + " and ".join(written))
    return 0


def _monitor(args) -> int:
    import json

    from rich.progress import Progress

    from .cell import load_cell
    from .io.pack import read_pack
    from .pack.config import load_pack
    from .safety.monitor import MonitorConfig, PackMonitor

    data = read_pack(args.data, args.temperature)
    n_time, series = data.cell_voltage_v.shape
    if args.pack:
        config = load_pack(args.pack)
        if config.series != series:
            raise DataError(
                args.data,
                f"has {series} cell voltage columns but {args.pack} describes {config.series} cells in series",
            )
        cell = config.cell_model(Path(args.pack).parent) if args.cell is None else load_cell(args.cell)
        settings = config.monitor_config(float(cell.param("capacity_ah", 25.0)))
    else:  # a series string inferred from the columns, default limits
        if args.cell is None:
            raise ValueError("give the cell model (--cell) or a pack file (--pack) that names it")
        cell, settings = load_cell(args.cell), MonitorConfig()
    monitor = PackMonitor(cell, series, data.temperature_c.shape[1], config=settings)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    chunk = 3600
    with output.open("w") as out, Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"monitoring {Path(args.data).name}: {series} cells", total=n_time)
        for start in range(0, n_time, chunk):
            part = slice(start, min(start + chunk, n_time))
            events, est = monitor.update(
                data.time_s[part], data.current_a[part], data.cell_voltage_v[part], data.temperature_c[part]
            )
            for event in events:
                out.write(json.dumps(event.record()) + "\n")
            progress.update(task, completed=part.stop)
    table = Table(title=f"events in {Path(args.data).name} ({series} cells, {n_time:,} samples)")
    for column in ("kind", "severity", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (kind, severity), count in sorted(monitor.counts.items()):
        table.add_row(kind, severity, str(count))
    if not monitor.counts:
        table.add_row("none", "", "0")
    Console().print(table)
    end = est.row()
    console.print(
        f"at the end: pack SoC {100 * end['soc']:.1f} %, weakest cell {1 + int(np.argmin(end['cell_soc']))} "
        f"at {100 * min(end['cell_soc']):.1f} %, energy {end['energy_wh']:.0f} Wh; wrote {output}"
    )
    return 0


def _derive_cell(args) -> int:
    from .cell import load_cell

    if not args.capacity_ah > 0:
        raise ValueError(f"--capacity-ah must be positive, got {args.capacity_ah:g}")
    source = load_cell(args.source)
    name = args.name or (
        Path(args.output).name.split(".")[0] if args.output else f"{source.name}_{args.capacity_ah:g}ah"
    )
    output = Path(args.output or f"out/{name}.json")
    derived = source.with_capacity(args.capacity_ah, name, args.command_line)
    derived.save(output)
    console.print(f"wrote {output}: {name}, {args.capacity_ah:g} Ah ({derived.provenance['derivation']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
