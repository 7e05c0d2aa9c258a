"""SoC in an LFP car's life, on cells the estimator was not tuned on: a matrix of plants, ageing,
sensors, temperatures and a week of usage, openbms against coulomb counting.

Each scenario is one cell for a week (`openbms.sim.life`): two FASTSim drives a day, parks of at
least 8 h, partial charges to 60-90 % (never full), one trip day down to about 15 %; logged at
1 s driving, 10 s charging and 60 s parked. Plants:
- hysteretic PyBaMM LFP (Prada2013) in the sim layer's three variants: hysteresis gap 30 mV (SPMe),
  50 mV with slow decay (SPMe), 20 mV with fast decay (DFN); PyBaMM's NMC (Chen2020). Each estimator model is
  identified by `openbms identify` from the fresh plant's own OCV (C/30) and HPPC tests at the
  scenario's temperature: the ESC protocol's complete tests (rested full, to empty, back to full),
  the tests this identify accepts. The plant is then aged away from its model.
- ESC plants: the bundled `a123_lfp` with its OCV shifted by ±15 mV, aged; estimated with the
  unshifted model.
- the mismatch case: a PyBaMM LFP estimated with `a123_lfp` rescaled to its capacity, as is.
Sensors: current offset and gain error as named, 2 mV voltage noise, 1 mV steps.

Scores (time-weighted where the samples are uneven): SoC RMSE and max error; the largest SoC
move within a park beyond what it corrected of the error, of every park and of those after the week's first
(where the estimator, told the SoC, does not know the hysteresis branch), and of the first told the branch too;
how often the 3-sigma bound holds the
truth, and its median half-width; capacity error at the end of day 7; coulomb counting's RMSE
(started right, the model's capacity); started 20 % wrong (told ±20 %), the error after 30 min
of driving and after the first park that follows a drive.

The "tune" rows are the ones the estimator's defaults were chosen on; the "held out" rows were
only measured.

Run: `.venv/bin/python bench/life.py [--quick]` (plant simulations are cached under
out/bench/life/; the first full run simulates and identifies for about 7 CPU minutes, later runs take 2).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import openbms
from openbms.cell import CellModel
from openbms.cell.identify import identify
from openbms.estimate import EstimateOptions, estimate
from openbms.estimate.report import plot_estimate
from openbms.io import CellTest
from openbms.sim.day import DRIVE, PARK
from openbms.sim.life import LifeOptions, LifePlan, live, week
from openbms.sim.plant import Plant
from openbms.sim.run import Truth
from openbms.sim.scenario import Scenario
from openbms.sim.sensors import Sensors

from common import run_sections

OUT = Path("out/bench/life")
CACHE_VERSION = 3  # plant weeks; 2: the current on its bends, 3: at the other plant runs' tolerance
MODEL_CACHE_VERSION = 4  # identified models (not week-dependent); 3: OCV the midpoint, 4: weighed by hysteresis
LIFE = LifeOptions()
VARIANTS = {  # the PyBaMM plants of the sim layer, fresh
    "LFP gap 30 mV": Plant("prada2013_lfp"),
    "LFP gap 50 mV slow": Plant("prada2013_lfp_wide"),
    "LFP DFN gap 20 mV fast": Plant("prada2013_lfp_dfn"),
    "NMC": Plant("chen2020_nmc"),
}
ESC_SHIFT_V = 0.015


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a plant (a PyBaMM variant, or "ESC +15 mV" / "ESC -15 mV"), aged, at a
    temperature, read by sensors; "tune" or "held out"; the mismatch case runs another cell's model."""

    plant: str
    fade: float
    slowdown: float
    temperature_c: float
    offset_c: float
    gain: float
    split: str
    seed: int = 0
    mismatch: bool = False
    quick: bool = False
    life: LifeOptions = LIFE

    @property
    def name(self) -> str:
        model = ", model a123_lfp as is" if self.mismatch else ""
        return (
            f"{self.plant}{model}, −{100 * self.fade:.0f} % / −{100 * self.slowdown:.0f} % kinetics, "
            f"{self.temperature_c:g} degC, {100 * self.offset_c:+.2f} %C {100 * self.gain:+.1f} %"
        )


def _matrix() -> list[Case]:
    sensors = ((0.005, 0.015), (-0.005, -0.015), (0.0025, -0.01))
    pybamm = (  # variant, fade, slowdown, temperature, split
        ("LFP gap 30 mV", 0.10, 0.30, 25.0, "tune"),
        ("LFP gap 50 mV slow", 0.15, 0.50, 40.0, "held out"),
        ("LFP DFN gap 20 mV fast", 0.05, 0.20, 25.0, "held out"),
        ("NMC", 0.10, 0.30, 0.0, "held out"),
    )
    cases = [
        Case(p, fade, slow, t, off, gain, split, seed=n, quick=(n == 0 and split == "tune"))
        for p, fade, slow, t, split in pybamm
        for n, (off, gain) in enumerate(sensors)
    ]
    esc = ((0.0, 0.0, 25.0), (0.10, 0.30, 0.0), (0.15, 0.50, 40.0))
    cases += [
        Case(
            f"ESC {shift} mV",
            fade,
            slow,
            t,
            off,
            gain,
            "tune" if shift == "+15" else "held out",
            seed=n,
            quick=(n == 0 and fade == 0.10),
        )
        for shift in ("+15", "-15")
        for fade, slow, t in esc
        for n, (off, gain) in enumerate(sensors[:2])
    ]
    cases += [
        Case("LFP gap 30 mV", 0.10, 0.30, 25.0, off, gain, "held out", seed=n, mismatch=True, quick=n == 0)
        for n, (off, gain) in enumerate(sensors[:2])
    ]
    return cases


MATRIX = _matrix()


def _cached(path: Path, make):
    if path.exists():
        return np.load(path)
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return np.load(path)


def _key(*parts, version: int = CACHE_VERSION) -> str:
    return hashlib.sha1(repr((version, *parts)).encode()).hexdigest()[:12]


def plant_of(case: Case) -> Plant:
    return replace(
        VARIANTS[case.plant], capacity_fade=case.fade, kinetics_slowdown=case.slowdown, temperature_c=case.temperature_c
    )


def model_of(case: Case) -> CellModel:
    """What the estimator runs: identified from the fresh plant's own tests at this temperature (cached)."""
    if case.plant.startswith("ESC"):
        return openbms.load_cell("a123_lfp")
    if case.mismatch:
        a123 = openbms.load_cell("a123_lfp")
        fresh_ah = replace(plant_of(case), capacity_fade=0.0, kinetics_slowdown=0.0).capacity_ah()
        return a123.with_capacity(fresh_ah, "a123_lfp_rescaled", "bench/life.py")
    fresh = replace(VARIANTS[case.plant], temperature_c=case.temperature_c)
    path = OUT / "models" / f"{_key(fresh, version=MODEL_CACHE_VERSION)}.json"
    if path.exists():
        return CellModel.load(path)
    tests = {kind: Scenario(plant=fresh, experiment=kind).run()[0] for kind in ("ocv", "hppc")}
    model, _ = identify(
        [CellTest("ocv", case.temperature_c, tests["ocv"])],
        [CellTest("hppc", case.temperature_c, tests["hppc"])],
        name=f"{case.plant} {case.temperature_c:g} degC",
        chemistry=fresh.spec.chemistry,
    )
    model.save(path)
    return model


def truth_of(case: Case) -> tuple[Truth, np.ndarray]:
    """The plant's week at the logged samples (cached), and the phase of each sample."""
    if case.plant.startswith("ESC"):
        shift = ESC_SHIFT_V if "+" in case.plant else -ESC_SHIFT_V
        a123 = openbms.load_cell("a123_lfp")
        plant = replace(
            a123.scaled(capacity=1 - case.fade, resistance=1 / (1 - case.slowdown)), ocv_v=a123.ocv_v + shift
        )
        capacity = float(plant.param("capacity_ah", case.temperature_c))
        plan = week(capacity, 3.3, case.life)

        def make():
            sim = openbms.simulate(
                plant, plan.time_s, plan.current_a, case.temperature_c, soc0=case.life.soc0, hysteresis0=1.0
            )
            keep = plan.logged()
            return {
                "time_s": plan.time_s[keep],
                "current_a": plan.current_a[keep],
                "voltage_v": sim.voltage_v[keep],
                "temperature_c": np.full(len(keep), case.temperature_c),
                "soc": sim.soc[keep],
                "capacity_ah": capacity,
            }

        key = _key(case.plant, case.fade, case.slowdown, case.temperature_c, case.life)
    else:
        plant = plant_of(case)
        capacity = plant.capacity_ah()
        plan = week(capacity, plant.spec.nominal_voltage_v, case.life)

        def make():
            t = live(plant, plan, case.life.soc0)
            return {
                name: getattr(t, name)
                for name in ("time_s", "current_a", "voltage_v", "temperature_c", "soc", "capacity_ah")
            }

        key = _key(plant, case.life)
    data = _cached(OUT / "plants" / f"{key}.npz", make)
    truth = Truth(
        *(data[n] for n in ("time_s", "current_a", "voltage_v", "temperature_c", "soc")),
        capacity_ah=float(data["capacity_ah"]),
        termination="",
    )
    return truth, _phases(plan, truth.time_s)


def _phases(plan: LifePlan, time_s: np.ndarray) -> np.ndarray:
    return plan.phase[time_s.astype(np.int64)]


@dataclass
class Scores:
    rmse: float
    max: float
    park_move: float
    park_move_later: float  # beyond the week's first park
    first_park_told: float  # the week's first park, the estimator told the branch too
    holds: float
    width: float
    capacity: float
    cc_rmse: float
    wrong_30min: float
    wrong_park: float
    cc_max: float


def _on_minutes(time_s, values):
    """Values on a uniform minute grid: time-weighted statistics over unevenly logged samples."""
    grid = np.arange(time_s[0], time_s[-1], 60.0)
    return np.interp(grid, time_s, values)


def _parks(phase, time_s, min_s=3600.0):
    """(first, last) sample of every park of at least `min_s`."""
    edges = np.flatnonzero(np.diff(np.r_[0, (phase == PARK).astype(int), 0]))
    return [(a, b - 1) for a, b in zip(edges[::2], edges[1::2]) if time_s[b - 1] - time_s[a] >= min_s]


def park_moves(soc, truth, phase, time_s, soc0=None) -> list[float]:
    """Per park, the largest SoC move within it beyond the part of it that brought the error down. A park that
    starts the week is measured from the SoC the estimator was told (its first sample is already a reading of
    the park)."""
    moves = []
    for a, b in _parks(phase, time_s):
        start = soc0 if a == 0 and soc0 is not None else soc[a]
        moved = np.abs(soc[a : b + 1] - start)
        corrected = np.abs(start - truth[a]) - np.abs(soc[a : b + 1] - truth[a : b + 1])
        moves.append(float(np.max(moved - np.clip(corrected, 0.0, None))))
    return moves


def wrong_start_errors(soc, truth, phase, time_s) -> tuple[float, float]:
    """Error after 30 min of driving, and at the end of the first park after a drive."""
    driven = np.cumsum(np.where(phase == DRIVE, np.diff(time_s, append=time_s[-1]), 0.0))
    at_30 = min(int(np.searchsorted(driven, 1800.0)), len(soc) - 1)
    first_drive = int(np.argmax(phase == DRIVE))
    after = [b for a, b in _parks(phase, time_s) if a > first_drive]
    at_park = after[0] if after else len(soc) - 1
    return abs(soc[at_30] - truth[at_30]), abs(soc[at_park] - truth[at_park])


def coulomb_count(model: CellModel, time_s, current_a, temperature_c, soc0) -> np.ndarray:
    q = float(model.param("capacity_ah", temperature_c))
    eta = np.where(current_a > 0, float(model.param("coulombic_efficiency", temperature_c)), 1.0)
    steps = eta * current_a * np.diff(time_s, append=time_s[-1]) / 3600.0 / q
    return soc0 + np.concatenate([[0.0], np.cumsum(steps)[:-1]])


OPTIONS = EstimateOptions(limits=False, energy=False)
# The week starts rested after a charge. Told the SoC, the estimator is not told the hysteresis branch; a BMS that
# ran through the charge would know that too (its filter state persists): the week's first park is also scored
# told it.
BRANCH0 = 1.0


def run_case(case: Case, options: EstimateOptions = OPTIONS):
    """(scores, the estimate, the truth) of one scenario."""
    truth, phase = truth_of(case)
    model = model_of(case)
    q_nominal = float(model.param("capacity_ah", 25.0))
    sensors = Sensors(current_offset_a=case.offset_c * q_nominal, current_gain_error=case.gain, seed=case.seed)
    measured = sensors.measure(truth.time_s, truth.current_a, truth.voltage_v, truth.temperature_c)
    t, i, v = (measured[c].to_numpy() for c in ("Test Time / s", "Current / A", "Voltage / V"))
    temperature = case.temperature_c
    z0 = float(truth.soc[0])
    est = estimate(model, t, i, v, temperature, soc0=z0, options=options)
    told = estimate(model, t, i, v, temperature, soc0=z0, options=replace(options, hysteresis0=BRANCH0))
    wrong0 = z0 - 0.2 if z0 > 0.5 else z0 + 0.2
    wrong = estimate(model, t, i, v, temperature, soc0=wrong0, options=replace(options, soc0_std=0.2))
    cc = coulomb_count(model, t, i, temperature, z0)
    err = est.soc - truth.soc
    err_minutes = _on_minutes(t, err)
    moves = park_moves(est.soc, truth.soc, phase, t, z0)
    starts_parked = phase[0] == PARK
    inside = _on_minutes(t, (np.abs(err) <= est.soc_bound).astype(float))
    s = Scores(
        rmse=100 * float(np.sqrt(np.mean(err_minutes**2))),
        max=100 * float(np.max(np.abs(err))),
        park_move=100 * max(moves),
        park_move_later=100 * max(moves[1:] if starts_parked else moves),
        first_park_told=100 * park_moves(told.soc, truth.soc, phase, t, z0)[0] if starts_parked else np.nan,
        holds=100 * float(np.mean(inside)),
        width=100 * float(np.median(_on_minutes(t, est.soc_bound))),
        capacity=100 * (float(est.capacity_ah[-1]) / truth.capacity_ah - 1),
        cc_rmse=100 * float(np.sqrt(np.mean(_on_minutes(t, cc - truth.soc) ** 2))),
        cc_max=100 * float(np.max(np.abs(cc - truth.soc))),
        wrong_30min=100 * wrong_start_errors(wrong.soc, truth.soc, phase, t)[0],
        wrong_park=100 * wrong_start_errors(wrong.soc, truth.soc, phase, t)[1],
    )
    return s, est, truth


BARS = {  # what the issue asks of every scenario
    "RMSE ≤ 1.5 %": lambda s: s.rmse <= 1.5,
    "max ≤ 3 %": lambda s: s.max <= 3.0,
    "park move ≤ 0.5 %": lambda s: s.park_move <= 0.5,
    "park move ≤ 0.5 % beyond the week's first park": lambda s: s.park_move_later <= 0.5,
    "the week's first park ≤ 0.5 %, told the branch": lambda s: s.first_park_told <= 0.5,
    "bound holds ≥ 95 %": lambda s: s.holds >= 95.0,
    "median bound ≤ 4 %": lambda s: s.width <= 4.0,
    "capacity within 2 %": lambda s: abs(s.capacity) <= 2.0,
    "RMSE ≤ coulomb counting's": lambda s: s.rmse <= s.cc_rmse,
    "wrong start within 2 % (30 min or first park)": lambda s: min(s.wrong_30min, s.wrong_park) <= 2.0,
}
HEADER = (
    "| scenario | split | RMSE % | max % | park move % worst / beyond the week's first | the week's first park told the "
    "branch % | bound holds % | median bound ± % | capacity error "
    "day 7 % | coulomb counting RMSE / max % | 20 % wrong start: error after 30 min driving / first park % |"
)


def _row(label: str, split: str, s: Scores) -> str:
    return (
        f"| {label} | {split} | {s.rmse:.2f} | {s.max:.1f} | {s.park_move:.2f} / {s.park_move_later:.2f} | {s.first_park_told:.2f} | {s.holds:.0f} | {s.width:.1f} "
        f"| {s.capacity:+.1f} | {s.cc_rmse:.2f} / {s.cc_max:.1f} | {s.wrong_30min:.1f} / {s.wrong_park:.1f} |"
    )


def _summary(label: str, rows: list[Scores], pick) -> Scores:
    """Per column the worst (pick=max of badness) or the median of the rows."""
    fields = Scores.__dataclass_fields__
    if pick == "median":
        return Scores(**{f: float(np.median([getattr(r, f) for r in rows])) for f in fields})
    worst = {f: max(getattr(r, f) for r in rows) for f in fields}
    worst["holds"] = min(r.holds for r in rows)
    worst["capacity"] = max((r.capacity for r in rows), key=abs)
    return Scores(**worst)


def matrix_table(cases: list[Case], options: EstimateOptions, progress, plots: bool = True) -> list[str]:
    task = progress.add_task("life scenarios (first run simulates the plants)", total=len(cases))
    results = []
    for case in cases:
        s, est, truth = run_case(case, options)
        results.append((case, s, est, truth))
        progress.advance(task)
    results.sort(key=lambda r: -r[1].rmse)  # worst first
    lines = [HEADER, "|---|---|" + "---:|" * 9]
    for split in ("tune", "held out"):
        rows = [s for c, s, _, _ in results if c.split == split]
        if rows:
            lines.append(_row(f"**worst of {len(rows)} ({split})**", split, _summary("", rows, "worst")))
            lines.append(_row(f"**median of {len(rows)} ({split})**", split, _summary("", rows, "median")))
    lines += [_row(c.name, c.split, s) for c, s, _, _ in results]
    lines += ["", "| bar | " + " | ".join(("tune", "held out")) + " |", "|---|---:|---:|"]
    for bar, met in BARS.items():
        counts = []
        for split in ("tune", "held out"):
            rows = [s for c, s, _, _ in results if c.split == split]
            counts.append(f"{sum(met(s) for s in rows)} / {len(rows)}")
        lines.append(f"| {bar} | " + " | ".join(counts) + " |")
    if plots:
        for tag, (case, s, est, truth) in (("worst", results[0]), ("median", results[len(results) // 2])):
            plot_estimate(est, OUT / f"life_{tag}.png", f"{tag}: {case.name} (RMSE {s.rmse:.2f} %)", true_soc=truth.soc)
        _plot_matrix(results, OUT / "life_matrix.png")
    return lines


def _plot_matrix(results, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for split, marker in (("tune", "o"), ("held out", "s")):
        picked = [(s.cc_rmse, s.rmse) for c, s, _, _ in results if c.split == split]
        if picked:
            ax.scatter(*zip(*picked), marker=marker, label=split)
    top = max(max(s.cc_rmse, s.rmse) for _, s, _, _ in results) * 1.1
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="as good as coulomb counting")
    ax.axhline(1.5, color="tab:red", lw=0.8, label="the 1.5 % bar")
    ax.set_xlabel("coulomb counting RMSE / %")
    ax.set_ylabel("openbms RMSE / %")
    ax.set_title("A week of life per scenario: openbms against coulomb counting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="only the quick subset (one sensor set per plant at 25 degC)"
    )
    args = parser.parse_args(argv)
    cases = [c for c in MATRIX if c.quick or not args.quick]
    intro = (
        f"{len(cases)} scenarios, a week each; worst case and median per split first, then every scenario, "
        "worst RMSE first. Bounds are 3 sigma."
    )
    return run_sections(
        [("SoC over a week of life (true SoC known)", intro, lambda progress: matrix_table(cases, OPTIONS, progress))],
        OUT,
    )


if __name__ == "__main__":
    sys.exit(main())
