"""A week of an LFP car's life: the plan itself, and the life benchmark's floors on a fast subset of its matrix
(the ESC plants, whose OCV is 15 mV off the model's, and the mismatch case over two days; the other PyBaMM rows
are in bench/life.py)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from openbms.sim.day import CHARGE, DAY_S, DRIVE, PARK
from openbms.sim.life import LifeOptions, week

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import life as bench  # noqa: E402

CAPACITY_AH = 2.0
# Measured on the two quick ESC rows (+15 mV / -15 mV), the OCV bias learnt at relaxed rests only: RMSE 2.88 / 2.19 %,
# park moves 2.99 / 1.25 % (the week's first park from the SoC the estimator was told), the bound holding 100 / 100 %
# of the week, capacity -0.5 / +2.3 %; learnt while driving too (2 mV prior) 3.40 / 3.28 %, 3.36 / 1.81 %, 100 / 100 %,
# -0.2 / +4.1 %; without the bias state 8.2 / 12.0 %, 3.6 / 3.0 %, 21 / 40 %, -0.5 / +9.8 % (the park moves of these two
# measured from the first sample). Still short of the bars (1.5 %, 0.5 %): see README.
RMSE_FLOOR = 4.0  # %
PARK_MOVE_FLOOR = 3.5  # %
HOLDS_FLOOR = 90.0  # % of the week
CAPACITY_FLOOR = 4.0  # % off at the end of day 7


@pytest.fixture(scope="module")
def plan():
    return week(CAPACITY_AH, 3.3)


def _segments(phase, which):
    edges = np.flatnonzero(np.diff(np.r_[0, (phase == which).astype(int), 0]))
    return list(zip(edges[::2], edges[1::2]))


def test_a_week_drives_twice_a_day_parks_long_and_charges_partly(plan):
    soc = 0.8 + np.cumsum(plan.current_a) / 3600.0 / CAPACITY_AH
    drives_per_day = np.bincount([a // DAY_S for a, _ in _segments(plan.phase, DRIVE)], minlength=7)
    assert drives_per_day.min() >= 2  # a drive is its cycles with stops between: at least two legs a day
    long_parks = [b - a for a, b in _segments(plan.phase, PARK) if b - a >= 8 * 3600]
    assert len(long_parks) >= 13  # overnight and at work
    charged_to = [soc[b - 1] for _, b in _segments(plan.phase, CHARGE)]
    assert len(charged_to) >= 5 and 0.58 <= min(charged_to) and max(charged_to) <= 0.92 and soc.max() < 0.95
    assert 0.1 <= soc.min() <= 0.2  # the trip day
    assert np.all(plan.current_a[plan.phase == PARK] == 0.0)


def test_the_logger_keeps_1_s_driving_10_s_charging_60_s_parked(plan):
    kept = plan.logged()
    steps = np.diff(plan.time_s[kept])
    phase = plan.phase[kept[:-1]]
    assert np.all(steps[phase == DRIVE] == 1.0)
    assert np.all(steps[phase == CHARGE] <= 10.0) and np.median(steps[phase == CHARGE]) == 10.0
    assert np.all(steps[phase == PARK] <= 60.0) and np.median(steps[phase == PARK]) == 60.0


def test_the_plant_is_driven_by_the_currents_bends_alone(plan):
    knots = plan.knots()
    assert len(knots) < len(plan.time_s) / 10  # a park or a charge is two knots
    rebuilt = np.interp(plan.time_s, plan.time_s[knots], plan.current_a[knots])
    np.testing.assert_array_equal(rebuilt, plan.current_a)


def test_life_options_are_checked():
    with pytest.raises(ValueError, match="charge_to"):
        week(CAPACITY_AH, 3.3, LifeOptions(charge_to=(0.9, 0.6)))
    with pytest.raises(ValueError, match="low_day"):
        week(CAPACITY_AH, 3.3, LifeOptions(days=2, low_day=3))


@pytest.mark.parametrize(
    "case", [c for c in bench.MATRIX if c.quick and c.plant.startswith("ESC")], ids=lambda c: c.plant
)
def test_life_floors_on_plants_whose_ocv_is_15_mv_off(case):
    """A week on a cell 10 % smaller, 30 % slower, at 0 degC, with a biased current sensor."""
    s, _, _ = bench.run_case(case)
    assert s.rmse < s.cc_rmse / 4  # the offset read at rest, not counted through the parks
    assert s.rmse < RMSE_FLOOR  # measured: see the constants
    assert s.park_move < PARK_MOVE_FLOOR
    # an OCV 15 mV off widens the bound on the plateau instead of moving the SoC out of it
    assert s.holds >= HOLDS_FLOOR
    assert abs(s.capacity) < CAPACITY_FLOOR


@pytest.mark.slow
def test_another_cells_model_widens_the_bound_instead_of_diverging():
    """The mismatch case over two days, the trip day down to about 15 % the second: a PyBaMM LFP estimated with
    `a123_lfp` rescaled, whose resistance scale reads the step method's clamp (5x). Measured: RMSE 4.89 %
    (coulomb counting 15.0 %), the bound holding 100 %, capacity +13.5 %; with every branch scaled by that 5x,
    as before the scale was bounded to ageing's: 13.1 %, 70 %, +122 %."""
    pytest.importorskip("pybamm")
    case = next(c for c in bench.MATRIX if c.mismatch and c.quick)
    s, est, _ = bench.run_case(replace(case, life=LifeOptions(days=2, low_day=1)))
    assert est.soh_resistance[-1] > 4.0  # the step method reads the plant's resistance far above the model's
    assert s.holds >= 95.0  # the bar on the mismatch case
    assert s.rmse < s.cc_rmse / 2
    assert abs(s.capacity) < 25.0
