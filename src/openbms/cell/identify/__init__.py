"""Identify an ESC cell model from slow OCV tests and dynamic tests (any chemistry).

One pipeline: read tests → charge balance (capacity, efficiency, reference SoC) →
OCV(z, T) with its hysteresis envelope → dynamic parameters per temperature →
a `CellModel`, scored by simulating every dynamic test with the finished model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ...io.a123 import CellTest
from ...io.columns import CURRENT, TIME, VOLTAGE
from ..kernels import ocv_lookup
from ..model import CellModel
from ..simulate import simulate
from .coulomb import balances, integrated_soc
from .dynamic import RESISTANCE_SOC, START_HYSTERESIS, fit_dynamic
from .ocv import SOC_GRID, ocv_curve


MID_PLATEAU = (SOC_GRID >= 0.2) & (SOC_GRID <= 0.8)  # where the envelope is hysteresis, not end effects


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
    if not ocv_tests or not dynamic_tests:
        raise ValueError("identification needs at least one OCV test and one dynamic test")
    on_step("charge balance of the OCV tests")
    ocv_balances = _with_balances(ocv_tests)
    curves = [ocv_curve(t, b) for t, b in ocv_balances]
    ocv_t, ocv_v, envelope = _ocv_table(curves)
    ocv_capacity = _by_temperature([(t.temperature_c, b.capacity_ah) for t, b in ocv_balances])
    dynamic_balances = balances(dynamic_tests)
    fits = []
    for test in sorted(dynamic_tests, key=lambda t: t.temperature_c):
        on_step(f"dynamic parameters at {test.temperature_c:g} degC")
        ocv_along = np.empty(len(test.data))
        # The OCV's SoC axis is the slow tests' capacity: the model keeps to that one scale.
        balance = replace(dynamic_balances[test.name],
                          capacity_ah=float(np.interp(test.temperature_c, *ocv_capacity)))
        z = integrated_soc(test, balance)
        ocv_lookup(z, test.temperature, ocv_t, SOC_GRID[0], SOC_GRID[1] - SOC_GRID[0], ocv_v, ocv_along)
        m_v = float(np.interp(test.temperature_c, ocv_t, envelope[:, MID_PLATEAU].mean(axis=1)))
        fits.append(fit_dynamic(test, balance, z, ocv_along, m_v, n_rc, resistance_soc))
    fits = _one_per_temperature(fits)
    model = CellModel(
        name=name,
        chemistry=chemistry,
        voltage_min_v=round(min(c.voltage_min_v for c in curves), 2),
        voltage_max_v=round(max(c.voltage_max_v for c in curves), 2),
        ocv_temperature_c=ocv_t,
        soc=SOC_GRID,
        ocv_v=ocv_v,
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
        hysteresis_envelope_v=envelope,
        provenance=provenance or {},
    )
    on_step("scoring the model on every dynamic test")
    tests = sorted(dynamic_tests, key=lambda t: t.temperature_c)
    scores = [score(model, t) for t in tests]
    fit = {"rmse_mv": {f"{s.temperature_c:g}": round(s.rmse_mv, 2) for s in scores}, "n_rc": n_rc}
    ratios = np.array([step_ratio(t, s, model) for t, s in zip(tests, scores)])
    return replace(model, fit=fit, step_ratio=ratios), scores


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


def score(model: CellModel, test: CellTest) -> Score:
    """Simulate the whole test from full with the model; error over the test's fit rows."""
    df = test.data
    sim = simulate(model, df[TIME].to_numpy(), df[CURRENT].to_numpy(), test.temperature,
                   soc0=1.0, hysteresis0=START_HYSTERESIS, check_range=False)
    rows = test.fit_rows
    measured = df[VOLTAGE].to_numpy()[rows]
    error = sim.voltage_v[rows] - measured
    return Score(test.name, test.temperature_c, 1e3 * float(np.sqrt(np.mean(error**2))),
                 1e3 * float(np.max(np.abs(error))), df[TIME].to_numpy()[rows], measured, sim.voltage_v[rows])


def _with_balances(tests: list[CellTest]):
    found = balances(tests)
    return [(t, found[t.name]) for t in tests]


def _by_temperature(pairs):
    """(temperatures, mean value at each) from (temperature, value) pairs."""
    temps = sorted({t for t, _ in pairs})
    return np.array(temps), np.array([np.mean([v for t, v in pairs if t == u]) for u in temps])


def _ocv_table(curves):
    """Stack the OCV curves by temperature, averaging repeated temperatures."""
    temps = sorted({c.temperature_c for c in curves})
    ocv = np.array([np.mean([c.ocv_v for c in curves if c.temperature_c == t], axis=0) for t in temps])
    env = np.array([np.mean([c.envelope_v for c in curves if c.temperature_c == t], axis=0) for t in temps])
    return np.array(temps, dtype=float), ocv, env


def _one_per_temperature(fits):
    temps = [f.temperature_c for f in fits]
    duplicated = sorted({t for t in temps if temps.count(t) > 1})
    if duplicated:
        raise ValueError(f"more than one dynamic test at {duplicated} degC: give one per temperature")
    return fits
