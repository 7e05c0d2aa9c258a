"""Identify an ESC cell model from slow OCV tests and dynamic tests (any chemistry, any protocol).

One pipeline: read tests → anchor each test's SoC on what it shows (full, empty, rested
voltages) → charge balance of the tests that close (capacity, efficiency) → OCV(z, T)
with its hysteresis envelope → dynamic parameters per temperature, every dynamic test at
that temperature fitted together → a `CellModel`, scored by simulating every dynamic
test with the finished model. What was assumed is in the model's provenance and the
fit report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ...io.a123 import CellTest, join_scripts
from ...io.columns import CURRENT, TIME, VOLTAGE
from ...io.errors import DataError
from ..kernels import ocv_lookup
from ..model import CellModel
from ..simulate import simulate
from .anchors import (
    Limits,
    charge_branch,
    closes,
    from_start_anchor,
    limit_anchors,
    limits_of,
    measured_branches,
    rest_anchors,
    start_soc,
)
from .coulomb import ChargeBalance, anchored_balance, balances, counted_ah, integrated_soc
from .dynamic import RESISTANCE_SOC, DynamicData, fit_dynamic
from .ocv import MID_PLATEAU, SOC_GRID, ocv_curve

AMBIGUOUS_SOC_STD = 0.03  # a start SoC known worse than this is worth a warning


@dataclass(frozen=True)
class Score:
    """How well the finished model reproduces one dynamic test's voltage."""

    name: str
    temperature_c: float
    rmse_mv: float
    max_error_mv: float
    time_s: np.ndarray
    measured_v: np.ndarray
    model_v: np.ndarray
    current_a: np.ndarray


@dataclass(frozen=True)
class _OcvTable:
    temperature_c: np.ndarray
    ocv_v: np.ndarray  # (n_t, n_z)
    envelope_v: np.ndarray  # (n_t, n_z)
    capacity: tuple[np.ndarray, np.ndarray]  # (temperatures, Ah)
    efficiency: tuple[np.ndarray, np.ndarray]

    def at(self, temperature_c: float) -> tuple[np.ndarray, np.ndarray]:
        """OCV and envelope on SOC_GRID at one temperature."""
        k = np.clip(np.searchsorted(self.temperature_c, temperature_c) - 1, 0, max(len(self.temperature_c) - 2, 0))
        if len(self.temperature_c) == 1:
            return self.ocv_v[0], self.envelope_v[0]
        u = np.clip((temperature_c - self.temperature_c[k]) / (self.temperature_c[k + 1] - self.temperature_c[k]), 0, 1)
        return (
            (1 - u) * self.ocv_v[k] + u * self.ocv_v[k + 1],
            (1 - u) * self.envelope_v[k] + u * self.envelope_v[k + 1],
        )


def identify(
    ocv_tests: list[CellTest],
    dynamic_tests: list[CellTest],
    n_rc: int = 3,
    name: str = "cell",
    chemistry: str = "unknown",
    provenance: dict | None = None,
    resistance_soc: np.ndarray = RESISTANCE_SOC,
    on_step: Callable[[str], None] = lambda step: None,
) -> tuple[CellModel, list[Score]]:
    """The model and how well it reproduces each dynamic test.

    OCV tests must show full → empty → full (in one file, or a discharge file and a
    charge file at one temperature; continuous or with rests between small steps), or
    empty → full after a discharge to the cut-off (the charge branch alone).
    Dynamic tests may start and end anywhere; several at one temperature are fitted
    together. `model.fit` reports per test its error, how its SoC was placed and what it
    showed; `model.provenance["assumptions"]` lists what was assumed.
    """
    if not ocv_tests or not dynamic_tests:
        raise ValueError("identification needs at least one OCV test and one dynamic test")
    on_step("charge balance of the OCV tests")
    ocv_tests = join_one_way_tests(ocv_tests)
    limits = limits_of(ocv_tests)
    ocv_tests = [_closing_ocv_test(t, limits) for t in ocv_tests]
    charge_only = frozenset(t.name for t in ocv_tests if measured_branches(t) == (+1,))
    ocv_balances = balances(ocv_tests, charge_only=charge_only)
    curves = [ocv_curve(t, ocv_balances[t.name], t.name in charge_only) for t in ocv_tests]
    table = _ocv_table(curves, [(t.temperature_c, ocv_balances[t.name]) for t in ocv_tests])
    data, reports = _dynamic_data(dynamic_tests, limits.for_dynamic_tests(float(table.capacity[1].min())), table)
    fits, warnings = [], []
    for temperature in sorted({d.test.temperature_c for d in data}):
        on_step(f"dynamic parameters at {temperature:g} degC")
        group = [d for d in data if d.test.temperature_c == temperature]
        m_v = float(np.interp(temperature, table.temperature_c, table.envelope_v[:, MID_PLATEAU].mean(axis=1)))
        fit = fit_dynamic(group, m_v, n_rc, resistance_soc)
        warnings += [f"{temperature:g} degC: {b}: the data may want a value beyond it" for b in fit.on_bound]
        fits.append(fit)
    model = CellModel(
        name=name,
        chemistry=chemistry,
        voltage_min_v=round(min(c.voltage_min_v for c in curves), 2),
        voltage_max_v=round(max(c.voltage_max_v for c in curves), 2),
        ocv_temperature_c=table.temperature_c,
        soc=SOC_GRID,
        ocv_v=table.ocv_v,
        temperature_c=np.array([f.temperature_c for f in fits]),
        capacity_ah=np.array([f.capacity_ah for f in fits]),
        coulombic_efficiency=np.array([f.coulombic_efficiency for f in fits]),
        hysteresis_rate=np.array([f.hysteresis_rate for f in fits]),
        m0_v=np.array([f.m0_v for f in fits]),
        m_v=np.array([f.m_v for f in fits]),
        rc_tau_s=np.array([f.rc_tau_s for f in fits]),
        resistance_soc=np.asarray(resistance_soc, dtype=float),
        r0_ohm=np.array([f.r0_ohm for f in fits]),
        rc_r_ohm=np.array([f.rc_r_ohm for f in fits]),
        hysteresis_envelope_v=table.envelope_v,
    )
    on_step("scoring the model on every dynamic test")
    scores = [score(model, d.test, d.balance) for d in data]
    assumptions = [a for t in ocv_tests for a in t.assumptions] + [a for d in data for a in d.test.assumptions]
    warnings = [r.pop("warning") for r in reports if "warning" in r] + warnings
    fit_report = {
        "rmse_mv": _pooled_rmse(scores),
        "n_rc": n_rc,
        "tests": [
            {**r, "rmse_mv": round(s.rmse_mv, 2), "max_error_mv": round(s.max_error_mv, 1)}
            for r, s in zip(reports, scores)
        ],
        "ocv_tests": [
            {
                "test": t.name,
                "temperature_c": t.temperature_c,
                "branches": "charge only (empty → full)" if t.name in charge_only else "discharge and charge",
                "shows": ["capacity"] if t.name in charge_only else ["capacity", "efficiency"],
                "capacity_ah": round(ocv_balances[t.name].capacity_ah, 4),
                "coulombic_efficiency": round(ocv_balances[t.name].coulombic_efficiency, 5),
            }
            for t in ocv_tests
        ],
        "uncertainty": {f"{f.temperature_c:g}": f.uncertainty for f in fits},
        "warnings": warnings,
    }
    ratios = np.array(
        [
            np.mean(
                [step_ratio(d.test, s, model) for d, s in zip(data, scores) if d.test.temperature_c == f.temperature_c]
            )
            for f in fits
        ]
    )
    provenance = {**(provenance or {}), "assumptions": assumptions} if assumptions else (provenance or {})
    return replace(model, fit=fit_report, step_ratio=ratios, provenance=provenance), scores


def identify_files(
    ocv: list[str | Path],
    dynamic: list[str | Path],
    ambient_c: float | dict | None = None,
    column_map=None,
    current_sign: str | None = None,
    **options,
) -> tuple[CellModel, list[Score]]:
    """`identify` from files as cyclers (or PyBaMM's `save_data`) write them; `options` as `identify`'s."""
    from ...io import read_tests

    reading = {"column_map": column_map, "current_sign": current_sign, "ambient_c": ambient_c}
    return identify(read_tests(list(ocv), **reading), read_tests(list(dynamic), **reading), **options)


def join_one_way_tests(tests: list[CellTest]) -> list[CellTest]:
    """OCV tests that only discharge or only charge, at one temperature, joined in the order given:
    a discharge file and a charge file are one OCV test."""
    out, one_way = [], {}
    for t in tests:
        i = t.data[CURRENT].to_numpy()
        if (i < 0).sum() >= 10 and (i > 0).sum() >= 10:
            out.append(t)
        else:
            one_way.setdefault(t.temperature_c, []).append(t)
    for temperature, group in one_way.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        note = (
            f"{' + '.join(t.name for t in group)}: joined into one OCV test at {temperature:g} degC, in the order given"
        )
        out.append(
            CellTest(
                "+".join(t.name for t in group),
                temperature,
                join_scripts([t.data for t in group]),
                [s for t in group for s in t.sources],
                assumptions=[a for t in group for a in t.assumptions] + [note],
            )
        )
    return out


def _closing_ocv_test(test: CellTest, limits: Limits) -> CellTest:
    """The OCV test from where it is full, or from where it is empty if it then charges to full (the
    charge branch alone); refused if it shows neither full → empty → full nor empty → full."""
    anchored, full = from_start_anchor(test, limits)
    if full and closes(anchored, limits):
        return anchored
    if not full and (branch := charge_branch(test, limits)) is not None:
        return branch
    source = test.sources[0] if test.sources else test.name
    raise DataError(
        source,
        f"an OCV test must show full → empty → full: start full (rested within 0.08 V of {limits.voltage_max_v:.2f} V, "
        f"or a charge to it first), a slow discharge to {limits.voltage_min_v:.2f} V and a charge back to "
        f"{limits.voltage_max_v:.2f} V, or at least empty → full (a discharge to {limits.voltage_min_v:.2f} V, then "
        f"a charge to {limits.voltage_max_v:.2f} V ending in a CV hold); this one "
        f"{'ends before it is full again' if full else 'shows neither'}. "
        "A discharge file and a charge file at one temperature are joined; give both",
    )


def _dynamic_data(tests: list[CellTest], limits: Limits, table: _OcvTable) -> tuple[list[DynamicData], list[dict]]:
    """Each dynamic test with its SoC path: by its own charge balance if it closes, else by its anchors."""
    anchored = [from_start_anchor(t, limits) for t in sorted(tests, key=lambda t: t.temperature_c)]
    closing = [t for t, full in anchored if full and closes(t, limits)]
    closed = balances(closing) if closing else {}
    data, reports = [], []
    for test, full in anchored:
        capacity = float(np.interp(test.temperature_c, *table.capacity))
        if test.name in closed:
            # The OCV's SoC axis is the slow tests' capacity: the model keeps to that one scale.
            balance = replace(closed[test.name], capacity_ah=capacity)
            report = {"start": "full; closes full → empty → full", "shows": ["capacity", "efficiency"]}
        else:
            balance, report = _anchored(test, full, limits, table, capacity)
        z = integrated_soc(test, balance)
        ocv_along = np.empty(len(test.data))
        ocv_lookup(
            z, test.temperature, table.temperature_c, SOC_GRID[0], SOC_GRID[1] - SOC_GRID[0], table.ocv_v, ocv_along
        )
        data.append(DynamicData(test, balance, z, ocv_along))
        reports.append(
            {"test": test.name, "temperature_c": test.temperature_c, "soc0": round(balance.soc0, 4), **report}
        )
    return data, reports


def _anchored(test: CellTest, full: bool, limits: Limits, table: _OcvTable, capacity: float):
    """The balance of a test that does not close: the OCV tests' capacity and efficiency, the SoC path
    through its anchors (full, empty, rested voltages on the identified OCV)."""
    efficiency = float(np.interp(test.temperature_c, *table.efficiency))
    ocv, envelope = table.at(test.temperature_c)
    name = Path(test.sources[0]).name if test.sources else test.name
    # Limits first: a rested voltage on a flat OCV, not quite relaxed, places the SoC far less well.
    anchors = limit_anchors(test, limits, full) or rest_anchors(test, SOC_GRID, ocv, envelope)
    source = test.sources[0] if test.sources else test.name
    if not anchors:
        raise DataError(
            source,
            "shows nowhere what its state of charge is: it does not start full, reaches neither "
            "voltage limit and never rests 10 minutes",
        )
    z0, std = start_soc(counted_ah(test, efficiency) / capacity, anchors)
    kinds = sorted({a.what for a in anchors})
    report = {"start": f"placed by {len(anchors)} anchors ({', '.join(kinds)})", "soc0_std": round(std, 4), "shows": []}
    if not full:
        hysteresis = "its discharge branch (rested after a discharge)"
        report["warning"] = (
            f"{name}: start state not shown: SoC {z0:.3f} ± {std:.3f} at the start from "
            f"{', '.join(kinds)}; hysteresis assumed on {hysteresis}"
            + ("; ambiguous, the SoC path may be off" if std > AMBIGUOUS_SOC_STD else "")
        )
    balance = anchored_balance(test, capacity, efficiency, min(z0, 1.0), 1.0 if full else -1.0)
    return balance, report


def step_ratio(test: CellTest, s: Score, model: CellModel, step_c: float = 0.2) -> float:
    """Measured over modelled one-sample voltage change at current steps (least squares).

    A model fitted to the whole voltage compromises at the sharpest edges; this ratio is the
    fresh cell's own reading of a resistance estimator that works from current steps.
    """
    i = test.data[CURRENT].to_numpy()[test.fit_rows]
    dt = np.diff(s.time_s)
    steps = (np.abs(np.diff(i)) > step_c * float(model.param("capacity_ah", test.temperature_c))) & (dt < 2.5)
    if steps.sum() < 10:
        return 1.0
    measured, modelled = np.diff(s.measured_v)[steps], np.diff(s.model_v)[steps]
    return float(measured @ modelled / (modelled @ modelled))


def score(model: CellModel, test: CellTest, balance: ChargeBalance | None = None) -> Score:
    """Simulate the whole test with the model from where its SoC path starts; error over its fit rows."""
    df = test.data
    soc0, hysteresis0 = (1.0, 1.0) if balance is None else (balance.soc0, balance.hysteresis0)
    sim = simulate(
        model,
        df[TIME].to_numpy(),
        df[CURRENT].to_numpy(),
        test.temperature,
        soc0=soc0,
        hysteresis0=hysteresis0,
        check_range=False,
    )
    rows = test.fit_rows
    measured = df[VOLTAGE].to_numpy()[rows]
    error = sim.voltage_v[rows] - measured
    return Score(
        test.name,
        test.temperature_c,
        1e3 * float(np.sqrt(np.mean(error**2))),
        1e3 * float(np.max(np.abs(error))),
        df[TIME].to_numpy()[rows],
        measured,
        sim.voltage_v[rows],
        df[CURRENT].to_numpy()[rows],
    )


def _pooled_rmse(scores: list[Score]) -> dict[str, float]:
    """RMSE per temperature over every row of its tests."""
    out = {}
    for temperature in sorted({s.temperature_c for s in scores}):
        errors = np.concatenate([s.model_v - s.measured_v for s in scores if s.temperature_c == temperature])
        out[f"{temperature:g}"] = round(1e3 * float(np.sqrt(np.mean(errors**2))), 2)
    return out


def _by_temperature(pairs):
    """(temperatures, mean value at each) from (temperature, value) pairs."""
    temps = sorted({t for t, _ in pairs})
    return np.array(temps), np.array([np.mean([v for t, v in pairs if t == u]) for u in temps])


def _ocv_table(curves, balances_by_temperature: list[tuple[float, ChargeBalance]]) -> _OcvTable:
    """Stack the OCV curves by temperature, averaging repeated temperatures."""
    temps = sorted({c.temperature_c for c in curves})
    ocv = np.array([np.mean([c.ocv_v for c in curves if c.temperature_c == t], axis=0) for t in temps])
    env = np.array([np.mean([c.envelope_v for c in curves if c.temperature_c == t], axis=0) for t in temps])
    return _OcvTable(
        np.array(temps, dtype=float),
        ocv,
        env,
        _by_temperature([(t, b.capacity_ah) for t, b in balances_by_temperature]),
        _by_temperature([(t, b.coulombic_efficiency) for t, b in balances_by_temperature]),
    )
