"""The OCV and envelope `ocv_curve` makes of two slow branches whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from openbms.cell.identify.coulomb import ChargeBalance
from openbms.cell.identify.ocv import END_ONLY_SOC, MID_PLATEAU, SOC_GRID, hysteresis_share, ocv_curve
from openbms.io import CellTest

HALF_GAP_V = 0.01
SETTLED_SOC = 0.1  # a curve that starts at an end has left the other branch this far from it
SLOW_A = 1.0 / 30.0
REST_ROWS = 20  # of 60 s: a rest of 20 min
ROWS = 401  # per slow run: the SoC in steps of 0.0025, on every point of SOC_GRID


def true_ocv(z):
    """A plateau with steep ends, where an extrapolated curve goes wrong."""
    return 3.2 + 0.1 * z - 0.2 * np.exp(-z / 0.02) + 0.1 * np.exp((z - 1.0) / 0.02)


def _settled(distance):
    return np.minimum(distance / SETTLED_SOC, 1.0)


def lfp_discharge(z):
    """Starts at full on the charge branch, settled on the discharge branch from SETTLED_SOC below it."""
    return true_ocv(z) + HALF_GAP_V * (1.0 - 2.0 * _settled(1.0 - z))


def lfp_charge(z):
    return true_ocv(z) - HALF_GAP_V * (1.0 - 2.0 * _settled(z))


def _run(z, current_a, curve):
    return z, np.full_like(z, current_a), curve(z)


def slow_test(discharge, charge, covered_from: float = 0.0) -> tuple[CellTest, ChargeBalance]:
    """Rested full, a slow discharge (to `covered_from`, the rest of the way fast after a rest), rested
    empty, a slow charge, rested full: 60 s rows, voltages from the given curves, the SoC known."""
    full, empty = np.ones(REST_ROWS), np.zeros(REST_ROWS)
    parts = [_run(full, 0.0, discharge), _run(np.linspace(1.0, covered_from, ROWS), -SLOW_A, discharge)]
    if covered_from > 0.0:
        fast = np.array([covered_from, covered_from / 2])
        parts += [_run(empty + covered_from, 0.0, discharge), _run(fast, -1.0, lambda z: discharge(z) - 0.1)]
    parts += [_run(empty, 0.0, charge), _run(np.linspace(0.0, 1.0, ROWS), SLOW_A, charge), _run(full, 0.0, charge)]
    z, i, v = (np.concatenate(column) for column in zip(*parts))
    frame = pd.DataFrame({"Test Time / s": 60.0 * np.arange(len(z)), "Current / A": i, "Voltage / V": v})
    return CellTest("ocv", 25.0, frame), ChargeBalance(1.0, 1.0, z, int(np.argmin(z)))


def test_hysteretic_branches_give_the_true_ocv_and_the_half_gap():
    """The midpoint on the plateau; near each end the curve that ends there ± the plateau's half gap (the
    other is still leaving its branch there): both the true OCV, and the envelope the half gap throughout."""
    test, balance = slow_test(lfp_discharge, lfp_charge)
    curve = ocv_curve(test, balance)
    z = SOC_GRID
    midpoint = 0.5 * (lfp_discharge(z) + lfp_charge(z))
    assert curve.ocv_v[MID_PLATEAU] == pytest.approx(midpoint[MID_PLATEAU], abs=1e-4)
    empty, full = z <= END_ONLY_SOC, z >= 1.0 - END_ONLY_SOC
    assert curve.ocv_v[empty] == pytest.approx(lfp_discharge(z[empty]) + HALF_GAP_V, abs=1e-4)
    assert curve.ocv_v[full] == pytest.approx(lfp_charge(z[full]) - HALF_GAP_V, abs=1e-4)
    assert curve.ocv_v == pytest.approx(true_ocv(z), abs=1e-4)
    assert curve.envelope_v == pytest.approx(np.full_like(z, HALF_GAP_V), abs=1e-4)
    assert np.abs(midpoint - true_ocv(z))[full].max() > 0.9 * HALF_GAP_V  # the midpoint alone is off there


def test_an_end_one_curve_did_not_reach_is_the_other_curve_there():
    """A slow discharge that stopped short of empty is extrapolated below it: the charge curve, which was
    measured there, ± the plateau's half gap is used instead."""
    covered_from = 0.05
    test, balance = slow_test(lfp_discharge, lfp_charge, covered_from)
    curve = ocv_curve(test, balance)
    z = SOC_GRID
    below = z < covered_from - 1e-9
    assert curve.ocv_v[below] == pytest.approx(lfp_charge(z[below]) - HALF_GAP_V, abs=1e-4)
    assert curve.ocv_v[~below] == pytest.approx(true_ocv(z[~below]), abs=1e-4)
    assert curve.envelope_v[below] == pytest.approx(np.full(below.sum(), HALF_GAP_V), abs=1e-4)


NEAR_FULL_ERROR_V = (0.008, 0.0025)  # charge high, discharge low near full: polarization, not hysteresis


def _near_full(z):
    return np.clip((z - 0.85) / 0.15, 0.0, None)


def _residual(z):
    """What the resistive correction leaves each way, over-correcting on average: charge below discharge by
    3.8 mV, scattered by ±2.6 mV over SoC (the PyBaMM NMC at 0 degC: half gap -1.9 ± 1.3 mV on the plateau)."""
    return 0.0013 * np.sin(2 * np.pi * z / 0.3) - 0.0019


def nmc_discharge(z):
    return true_ocv(z) - _residual(z) - NEAR_FULL_ERROR_V[1] * _near_full(z)


def nmc_charge(z):
    return true_ocv(z) + _residual(z) + NEAR_FULL_ERROR_V[0] * _near_full(z)


def test_without_hysteresis_each_curve_counts_where_it_starts_from_a_rest():
    """No hysteresis, and near full the charge curve reads 8 mV high, the discharge curve 2.5 mV low (as a
    cold NMC cell's C/30 curves do): the plateau's gap is no steady offset, so no curve is taken for a
    branch; each counts on the half where it starts rested, tilted to meet the other at the middle."""
    test, balance = slow_test(nmc_discharge, nmc_charge)
    z = SOC_GRID
    assert hysteresis_share(0.5 * (nmc_charge(z) - nmc_discharge(z))[MID_PLATEAU]) == 0.0
    curve = ocv_curve(test, balance)
    gap = nmc_charge(0.5) - nmc_discharge(0.5)
    below = z < 0.5
    assert curve.ocv_v[below] == pytest.approx(nmc_charge(z[below]) - z[below] * gap, abs=1e-4)
    assert curve.ocv_v[~below] == pytest.approx(nmc_discharge(z[~below]) + (1 - z[~below]) * gap, abs=1e-4)
    full = z >= 1.0 - END_ONLY_SOC
    assert np.abs(curve.ocv_v - true_ocv(z))[full].max() < 0.0035  # the charge curve is 8 mV off there


def test_a_gap_within_its_scatter_is_no_hysteresis_and_one_two_clear_is():
    """None of a plateau gap within one scatter of zero is taken for hysteresis, all of one two clear."""
    wiggle = np.where(np.arange(120) % 2 == 0, 1.0, -1.0)  # a scatter of exactly 1
    assert hysteresis_share(HALF_GAP_V * np.ones(120)) == 1.0
    assert hysteresis_share(HALF_GAP_V * (2.0 + wiggle)) == 1.0
    assert hysteresis_share(HALF_GAP_V * (1.5 + wiggle)) == pytest.approx(0.5)
    assert hysteresis_share(HALF_GAP_V * (1.0 + wiggle)) == 0.0
    assert hysteresis_share(-HALF_GAP_V * np.ones(120)) == 0.0
