"""`openbms simulate`: arguments and the command."""

from __future__ import annotations

import argparse

from .drive import CYCLES
from .plant import PLANTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plant", default="prada2013_lfp", choices=sorted(PLANTS))
    p.add_argument(
        "--experiment",
        default="drive",
        choices=("ocv", "hppc", "ocv_c20", "usabc_hppc", "iec_power", "drive"),
        help="ocv: C/30 full discharge and charge; hppc: pulses every 10 %% SoC; ocv_c20: C/20 OCV test; "
        "usabc_hppc: USABC HPPC from full to ~10 %% SoC; iec_power: IEC 62660-1 power test (pulses both "
        "ways at 90, 70, 50, 35, 20 %% SoC, then a charge to full); "
        "drive: FASTSim 2022 Model 3 RWD power scaled to the cell (default)",
    )
    p.add_argument("--cycles", default="udds,hwfet", help=f"drive cycles in order, from {sorted(CYCLES)}")
    p.add_argument("--repeat", type=int, default=3, help="times the cycle list is driven (default %(default)s)")
    p.add_argument("--soc0", type=float, help="initial true SoC (default 1 for tests, 0.9 for a drive)")
    p.add_argument("--temperature", type=float, default=25.0, help="ambient degC (default %(default)s)")
    p.add_argument("--capacity-fade", type=float, default=0.0, help="fraction of capacity lost, e.g. 0.1")
    p.add_argument("--kinetics-slowdown", type=float, default=0.0, help="fraction slower kinetics, e.g. 0.3")
    p.add_argument("--current-offset", type=float, default=0.0, help="current sensor offset / A")
    p.add_argument("--current-gain-error", type=float, default=0.0, help="current gain error, e.g. 0.02")
    p.add_argument("--voltage-noise", type=float, default=0.002, help="voltage noise std / V (default %(default)s)")
    p.add_argument("--voltage-lsb", type=float, default=0.001, help="voltage quantisation / V (default %(default)s)")
    p.add_argument("--temperature-offset", type=float, default=0.0, help="temperature sensor offset / degC")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="measured data: .csv, .parquet or a BDF file (.bdf, .bdf.csv, .bdf.parquet)",
    )
    p.add_argument("--truth", help="truth file (default: beside the output, *_truth.*)")
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.console import Console

    from ..io import write_timeseries
    from ..io.writers import checked_output, tagged
    from .plant import Plant
    from .scenario import Scenario
    from .sensors import Sensors

    scenario = Scenario(
        plant=Plant(args.plant, args.capacity_fade, args.kinetics_slowdown, args.temperature),
        experiment=args.experiment,
        cycles=tuple(c.strip() for c in args.cycles.split(",") if c.strip()),
        repeat=args.repeat,
        soc0=args.soc0,
        sensors=Sensors(
            args.current_offset,
            args.current_gain_error,
            0.0,
            args.voltage_noise,
            args.voltage_lsb,
            args.temperature_offset,
            args.seed,
        ),
    ).validate()
    # both paths checked before the simulation; the truth's default keeps a compound suffix (.csv.gz) whole
    output = checked_output(args.output)
    truth_path = checked_output(args.truth or tagged(output, "_truth"))
    console = Console(stderr=True)
    with console.status(f"simulating {args.plant} ({args.experiment})"):
        measured, truth = scenario.run()
    write_timeseries(measured, output)
    write_timeseries(truth.frame(), truth_path)
    console.print(
        f"wrote {output} ({len(measured)} rows, {truth.time_s[-1] / 3600:.2f} h, ended: {truth.termination}) "
        f"and {truth_path} (true capacity {truth.capacity_ah:.4f} Ah, SoC {truth.soc[0]:.3f} → {truth.soc[-1]:.3f})"
    )
    return 0
