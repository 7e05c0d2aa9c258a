"""Model voltage error: openbms identification vs a plain ESC model, on real and physics cells.

1. Every A123 dynamic test (real laboratory data), identified from all the A123 data.
2. PyBaMM cells (hysteretic Prada2013 LFP, Chen2020 NMC) identified from simulated OCV and
   HPPC tests with sensor noise, checked on a FASTSim drive the identification never saw.

Run: `.venv/bin/python bench/identify.py` (about 4 minutes). Prints markdown tables;
writes plots to out/bench/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from openbms.cell import simulate
from openbms.cell.identify import identify
from openbms.cell.report import plot_fit
from openbms.io import CellTest, read_tests
from openbms.io.a123 import default_a123_dir
from openbms.sim.plant import Plant
from openbms.sim.scenario import Scenario

from common import run_sections

OUT = Path("out/bench")
VARIANTS = {  # name: (n_rc, resistance SoC knots)
    "openbms: 3 RC, R(z, T)": dict(n_rc=3),
    "plain ESC: 1 RC, R(T)": dict(n_rc=1, resistance_soc=np.array([0.5])),
}


def a123_table(progress) -> list[str]:
    root = default_a123_dir()
    if not (root / "ocv").is_dir():
        return [f"A123 data not found at {root}: skipped (set OPENBMS_A123_DIR)"]
    ocv = read_tests(sorted((root / "ocv").glob("*.csv*")))
    dyn = read_tests(sorted((root / "dyn").glob("*.csv*")))
    results = {}
    task = progress.add_task("A123 identification", total=len(VARIANTS))
    for name, options in VARIANTS.items():
        t0 = time.perf_counter()
        _, scores = identify(ocv, dyn, name="a123", **options)
        results[name] = (scores, time.perf_counter() - t0)
        plot_fit(scores, OUT / f"a123_{options['n_rc']}rc.png", f"A123, {name}")
        progress.advance(task)
    lines = ["| test | degC | " + " | ".join(f"{n} RMSE / max mV" for n in VARIANTS) + " |",
             "|---|---:|" + "---:|" * len(VARIANTS)]
    first = next(iter(results.values()))[0]
    for k, s in enumerate(first):
        cells = [f"{results[n][0][k].rmse_mv:.1f} / {results[n][0][k].max_error_mv:.0f}" for n in VARIANTS]
        lines.append(f"| {s.name} | {s.temperature_c:g} | " + " | ".join(cells) + " |")
    lines.append("| identification time / s | | " + " | ".join(f"{results[n][1]:.0f}" for n in VARIANTS) + " |")
    return lines


def pybamm_table(progress) -> list[str]:
    lines = ["| plant | " + " | ".join(f"{n}: HPPC fit / unseen drive RMSE mV (max)" for n in VARIANTS) + " |",
             "|---|" + "---:|" * len(VARIANTS)]
    task = progress.add_task("PyBaMM plants", total=2 * len(VARIANTS))
    for plant_name in ("prada2013_lfp", "chen2020_nmc"):
        plant = Plant(plant_name)
        ocv, _ = Scenario(plant=plant, experiment="ocv").run()
        hppc, _ = Scenario(plant=plant, experiment="hppc").run()
        drive, truth = Scenario(plant=plant, experiment="drive", cycles=("udds", "hwfet"), repeat=3, soc0=0.9).run()
        cells = []
        for name, options in VARIANTS.items():
            model, scores = identify([CellTest("ocv", 25.0, ocv)], [CellTest("hppc", 25.0, hppc)], **options)
            # The drive starts 10 % below the plant's full; in the model's own capacity that is:
            soc0 = 1.0 - (1.0 - truth.soc[0]) * truth.capacity_ah / float(model.param("capacity_ah", 25.0))
            sim = simulate(model, drive["Test Time / s"], drive["Current / A"], 25.0, soc0=soc0, hysteresis0=1.0)
            error = 1e3 * (sim.voltage_v - truth.voltage_v)
            cells.append(f"{scores[0].rmse_mv:.1f} / {np.sqrt(np.mean(error**2)):.1f} ({np.abs(error).max():.0f})")
            progress.advance(task)
        lines.append(f"| {plant_name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    return run_sections([
        ("Model voltage error on every A123 dynamic test (real data)", "", a123_table),
        ("PyBaMM cells identified from simulated OCV + HPPC tests, checked on an unseen drive",
         "Drive: FASTSim 2022 Model 3 RWD on (UDDS, HWFET) x 3, scaled to the cell by energy; "
         "sensors: 2 mV voltage noise, 1 mV quantisation. Error against the plant's true voltage.", pybamm_table),
    ], OUT)


if __name__ == "__main__":
    sys.exit(main())
