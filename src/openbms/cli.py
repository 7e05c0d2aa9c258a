"""The `openbms` command: thin wrappers over each layer's entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .io import ColumnMap, DataError
from .io.a123 import default_a123_dir

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

    p = sub.add_parser("identify", help="identify a cell model from OCV and dynamic test files",
                       description="Identify an ESC cell model (OCV with hysteresis, SoC-dependent R0 and RC "
                                   "branches, efficiency, capacity, each against temperature). Each test starts "
                                   "fully charged, goes to empty and back to full.")
    p.add_argument("--ocv", nargs="+", default=[], metavar="FILE", help="slow full discharge/charge tests")
    p.add_argument("--dynamic", nargs="+", default=[], metavar="FILE", help="drive-cycle or pulse tests")
    p.add_argument("--a123", metavar="DIR", help=f"use every file of the A123 data set in DIR (its ocv/ and dyn/); "
                                                 "default when no files are given: $OPENBMS_A123_DIR or ../shared/data/a123")
    p.add_argument("-o", "--output", default="out/cell.json", help="cell model JSON to write (default %(default)s)")
    p.add_argument("--plot", help="PNG of measured vs model voltage (default: beside the output, *_fit.png)")
    p.add_argument("--name", default=None, help="cell name (default: the output file's stem)")
    p.add_argument("--chemistry", default="unknown", help="e.g. LFP, NMC (recorded, never assumed)")
    p.add_argument("--n-rc", type=int, default=3, choices=(1, 2, 3), help="RC branches (default %(default)s)")
    _add_reader_options(p)
    p.set_defaults(run=_identify)

    p = sub.add_parser("derive-cell", help="derive a cell from another by capacity scaling",
                       description="Scale a cell's capacity; resistances scale inversely, as for cells in parallel.")
    p.add_argument("source", help="bundled cell name or cell JSON path")
    p.add_argument("--capacity-ah", type=float, required=True, help="capacity at 25 degC of the new cell")
    p.add_argument("--name", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(run=_derive_cell)

    p = sub.add_parser("simulate", help="run the physics validation plant and write measured data and truth",
                       description="Simulate a PyBaMM cell (the plant) on an experiment or FASTSim drive power, "
                                   "add sensor errors, and write the measurements (BDF) and the truth separately.")
    from .sim.cli import add_arguments

    add_arguments(p)
    return parser


def _add_reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", metavar="MAP.json", help="column map for another cycler's files "
                   '({"columns": {"their name": "BDF label"}, "scale": {...}, "current_sign": ...})')
    p.add_argument("--current-sign", choices=("charge-positive", "discharge-positive"),
                   help="the files' current sign convention, if not the map's")


def _reader_options(args) -> dict:
    return {"column_map": ColumnMap.from_json(args.columns) if args.columns else None,
            "current_sign": args.current_sign}


def _identify(args) -> int:
    from .cell.identify import identify
    from .cell.model import provenance
    from .cell.report import plot_fit
    from .io import read_tests

    ocv_files, dynamic_files = list(args.ocv), list(args.dynamic)
    if args.a123 or not (ocv_files or dynamic_files):
        root = Path(args.a123) if args.a123 else default_a123_dir()
        if not root.is_dir():
            raise FileNotFoundError(f"A123 data not found at {root}: pass --a123 DIR or set OPENBMS_A123_DIR")
        ocv_files += sorted(str(p) for p in (root / "ocv").glob("*.csv*"))
        dynamic_files += sorted(str(p) for p in (root / "dyn").glob("*.csv*"))
    output = Path(args.output)
    name = args.name or output.stem
    with console.status("reading tests"):
        ocv_tests = read_tests(ocv_files, **_reader_options(args))
        dynamic_tests = read_tests(dynamic_files, **_reader_options(args))
    with console.status("identifying") as status:
        model, scores = identify(ocv_tests, dynamic_tests, n_rc=args.n_rc, name=name, chemistry=args.chemistry,
                                 provenance=provenance(args.command_line, [Path(f).name for f in ocv_files + dynamic_files]),
                                 on_step=lambda step: status.update(step))
    model.save(output)
    plot = plot_fit(scores, args.plot or output.with_name(output.stem + "_fit.png"), f"{name}: measured vs model")
    table = Table(title=f"{name}: model voltage error on the dynamic tests")
    for column in ("test", "temperature / degC", "RMSE / mV", "max error / mV", "capacity / Ah"):
        table.add_column(column, justify="right")
    for s in scores:
        table.add_row(s.name, f"{s.temperature_c:g}", f"{s.rmse_mv:.2f}", f"{s.max_error_mv:.0f}",
                      f"{float(model.param('capacity_ah', s.temperature_c)):.3f}")
    Console().print(table)
    console.print(f"wrote {output} and {plot}")
    return 0


def _derive_cell(args) -> int:
    from .cell import load_cell

    source = load_cell(args.source)
    derived = source.with_capacity(args.capacity_ah, args.name, args.command_line)
    derived.save(args.output)
    console.print(f"wrote {args.output}: {args.name}, {args.capacity_ah:g} Ah ({derived.provenance['derivation']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
