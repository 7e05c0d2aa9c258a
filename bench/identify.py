"""Model voltage error: openbms identification vs a plain ESC model, on real and physics cells.

1. Every A123 dynamic test (real laboratory data), identified from all the A123 data.
2. PyBaMM cells (three hysteretic Prada2013 LFP plants — gap, decay rate, SPMe or DFN — and
   Chen2020 NMC) identified from the standard tests (C/20 OCV with the USABC HPPC or with
   IEC 62660-1's power test, as PyBaMM writes them) and from the ESC protocol, checked on a
   FASTSim drive the identification never saw.

Run: `.venv/bin/python bench/identify.py`. Prints markdown tables; writes plots to out/bench/.
The PyBaMM runs are cached under out/bench/pybamm/ (the first run simulates them).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import pandas as pd

from openbms.cell import simulate
from openbms.cell.identify import identify, identify_files
from openbms.cell.report import plot_fit
from openbms.io import CellTest, read_tests
from openbms.io.a123 import default_a123_dir
from openbms.io.columns import CURRENT, TIME
from openbms.sim.plant import Plant
from openbms.sim.run import write_pybamm_test
from openbms.sim.scenario import Scenario

from common import run_sections

OUT = Path("out/bench")
CACHE = OUT / "pybamm"  # slow simulations, run once
PYBAMM_PLANTS = ("prada2013_lfp", "prada2013_lfp_wide", "prada2013_lfp_dfn", "chen2020_nmc")
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
    lines = [
        "| test | degC | " + " | ".join(f"{n} RMSE / max mV" for n in VARIANTS) + " |",
        "|---|---:|" + "---:|" * len(VARIANTS),
    ]
    first = next(iter(results.values()))[0]
    for k, s in enumerate(first):
        cells = [f"{results[n][0][k].rmse_mv:.1f} / {results[n][0][k].max_error_mv:.0f}" for n in VARIANTS]
        lines.append(f"| {s.name} | {s.temperature_c:g} | " + " | ".join(cells) + " |")
    lines.append("| identification time / s | | " + " | ".join(f"{results[n][1]:.0f}" for n in VARIANTS) + " |")
    return lines


def _cached(path: Path, make) -> pd.DataFrame:
    """A slow simulation's frame, from out/ when it was run before."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        make().to_parquet(path)
    return pd.read_parquet(path)


def plant_tests(plant_name: str) -> dict:
    """Every test of one plant: the standard ones as PyBaMM writes them (CSV, repeated times), the ESC
    protocol's through the sensors, and the unseen drive with its truth; all cached under out/."""
    plant = Plant(plant_name)
    here = CACHE / plant_name
    ocv_c20 = write_pybamm_test(plant, "ocv_c20", here / "ocv_c20.csv", period_s=10.0)
    usabc = write_pybamm_test(plant, "usabc_hppc", here / "usabc_hppc.csv")
    iec = write_pybamm_test(plant, "iec_power", here / "iec_power.csv")
    esc = {
        e: _cached(here / f"esc_{e}.parquet", lambda e=e: Scenario(plant=plant, experiment=e).run()[0])
        for e in ("ocv", "hppc")
    }
    drive = Scenario(plant=plant, experiment="drive", cycles=("udds", "hwfet"), repeat=3, soc0=0.9)
    frames = _cached(here / "drive.parquet", lambda: _drive_frame(drive))
    return {"standard": ([ocv_c20], [usabc]), "iec": ([ocv_c20], [iec]), "esc": esc, "drive": frames}


def _drive_frame(scenario: Scenario) -> pd.DataFrame:
    measured, truth = scenario.run()
    frame = measured[[TIME, CURRENT]].copy()
    frame["True Voltage / V"], frame["True SOC / 1"], frame["True Capacity / Ah"] = (
        truth.voltage_v,
        truth.soc,
        truth.capacity_ah,
    )
    return frame


def drive_error_mv(model, drive: pd.DataFrame) -> np.ndarray:
    """Model minus true voltage on the unseen drive, started where the plant starts (in the model's capacity)."""
    soc0 = 1.0 - (1.0 - drive["True SOC / 1"].iloc[0]) * drive["True Capacity / Ah"].iloc[0] / float(
        model.param("capacity_ah", 25.0)
    )
    sim = simulate(model, drive[TIME], drive[CURRENT], 25.0, soc0=soc0, hysteresis0=1.0)
    return 1e3 * (sim.voltage_v - drive["True Voltage / V"].to_numpy())


def pybamm_table(progress) -> list[str]:
    protocols = (
        "standard: C/20 OCV + USABC HPPC",
        "C/20 OCV + IEC 62660-1 power test",
        "ESC protocol: C/30 OCV + full-range HPPC",
    )
    lines = [
        "| plant | "
        + " | ".join(f"{p}: pulse-test fit / unseen drive RMSE mV (max)" for p in protocols)
        + " | standard: identification s |",
        "|---|" + "---:|" * (len(protocols) + 1),
    ]
    task = progress.add_task("PyBaMM plants", total=len(PYBAMM_PLANTS))
    rows = []
    for plant_name in PYBAMM_PLANTS:
        tests = plant_tests(plant_name)
        t0 = time.perf_counter()
        ocv_files, hppc_files = tests["standard"]
        standard = identify_files(ocv_files, hppc_files, ambient_c=25.0, name=plant_name)
        seconds = time.perf_counter() - t0
        iec = identify_files(*tests["iec"], ambient_c=25.0, name=plant_name)
        esc = identify(
            [CellTest("ocv", 25.0, tests["esc"]["ocv"])],
            [CellTest("hppc", 25.0, tests["esc"]["hppc"])],
            name=plant_name,
        )
        cells, worst = [], 0.0
        for model, scores in (standard, iec, esc):
            error = drive_error_mv(model, tests["drive"])
            rmse = float(np.sqrt(np.mean(error**2)))
            worst = max(worst, rmse) if model is standard[0] else worst
            cells.append(f"{scores[0].rmse_mv:.1f} / {rmse:.1f} ({np.abs(error).max():.0f})")
        plot_fit(standard[1], OUT / f"{plant_name}_standard.png", f"{plant_name}: standard protocol")
        rows.append((worst, f"| {plant_name} | " + " | ".join(cells) + f" | {seconds:.0f} |"))
        progress.advance(task)
    return lines + [row for _, row in sorted(rows, reverse=True)]  # worst standard-protocol drive first


def main() -> int:
    return run_sections(
        [
            ("Model voltage error on every A123 dynamic test (real data)", "", a123_table),
            (
                "PyBaMM cells identified from the standard tests and from the ESC protocol, checked on an unseen drive",
                "Standard: a C/20 OCV test and the USABC HPPC test (from full to about 10 % SoC, never back), "
                "as PyBaMM's save_data writes them (a time repeated at every step change, + = discharge, no "
                "temperature column: --ambient 25). IEC: the same C/20 OCV and IEC 62660-1's power test (pulses "
                "both ways at 90, 70, 50, 35 and 20 % SoC, 2C Idp,max, then a charge to full), written the same "
                "way. ESC protocol: C/30 OCV and a full-range HPPC, through "
                "2 mV voltage noise and 1 mV quantisation. Drive: FASTSim 2022 Model 3 RWD on (UDDS, HWFET) x 3, "
                "scaled to the cell by energy, from 90 % SoC. Error against the plant's true voltage; 3 RC, R(z, T). "
                "Worst standard-protocol drive first.",
                pybamm_table,
            ),
        ],
        OUT,
    )


if __name__ == "__main__":
    sys.exit(main())
