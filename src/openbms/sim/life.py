"""A week in an LFP car's life as one cell's current: two drives a day, long parks, partial
charges that never reach full, and one long trip day down to about 15 %.

Drives are FASTSim EPA cycles (see `drive`) scaled to the cell by energy and turned into
current at its nominal voltage; charging is constant current to the day's target SoC. The
plan counts SoC with the cell's true capacity, so its targets are the SoCs the cell reaches
to within the drive's efficiency. `logged` keeps the samples a car's logger would write:
every second while driving, every 10 s while charging, every minute while parked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .day import CHARGE, DAY_S, DRIVE, PARK
from .drive import drive

LOG_EVERY_S = {DRIVE: 1, CHARGE: 10, PARK: 60}


@dataclass(frozen=True)
class LifeOptions:
    """How the week goes; the defaults are the life benchmark's."""

    days: int = 7
    soc0: float = 0.8  # rested after a charge
    charge_to: tuple[float, float] = (0.6, 0.9)  # each evening's target, drawn uniformly
    low_day: int = 3  # the trip day that ends near `low_soc` (counted from 0; -1: none)
    low_soc: float = 0.15
    charge_c: float = 1 / 3
    seed: int = 0

    def validate(self) -> "LifeOptions":
        lo, hi = self.charge_to
        if self.days < 1 or not 0 < lo <= hi < 1 or not 0 < self.low_soc < lo or not 0 < self.soc0 <= 1:
            raise ValueError(
                "life options need days >= 1 and 0 < low_soc < charge_to[0] <= charge_to[1] < 1, "
                f"0 < soc0 <= 1; got {self}"
            )
        if self.charge_c <= 0 or not -1 <= self.low_day < self.days:
            raise ValueError(f"life options need charge_c > 0 and low_day in [-1, days); got {self}")
        return self


@dataclass
class LifePlan:
    """Per second: the cell current (+ = charging) and the phase (PARK, DRIVE, CHARGE)."""

    time_s: np.ndarray
    current_a: np.ndarray
    phase: np.ndarray

    def logged(self) -> np.ndarray:
        """Indices of the samples a car's logger keeps: by phase, and the first of every phase."""
        t = self.time_s.astype(np.int64)
        every = np.choose(self.phase, [LOG_EVERY_S[PARK], LOG_EVERY_S[DRIVE], LOG_EVERY_S[CHARGE]])
        changed = np.append(True, self.phase[1:] != self.phase[:-1])
        return np.flatnonzero((t % every == 0) | changed | (t == t[-1]))

    def knots(self) -> np.ndarray:
        """Indices where the current's slope changes: the same piecewise-linear current as every
        second's sample, with a park or a charge two knots instead of hours of them."""
        bends = np.flatnonzero(np.diff(self.current_a, 2) != 0) + 1
        return np.r_[0, bends, len(self.current_a) - 1]


def week(capacity_ah: float, nominal_v: float, options: LifeOptions = LifeOptions()) -> LifePlan:
    """The week's current at 1 s for a cell of `capacity_ah` (true) and `nominal_v`."""
    o = options.validate()
    rng = np.random.default_rng(o.seed)
    n = o.days * DAY_S
    current, phase = np.zeros(n), np.zeros(n, dtype=np.int8)
    soc = o.soc0
    for d in range(o.days):
        start = d * DAY_S
        end_of_drives = start
        for leg, leave_h in enumerate((7.0 + rng.uniform(0, 1.0), 17.0 + rng.uniform(0, 1.0))):
            cycles = list(rng.choice(["udds", "hwfet"], size=int(rng.integers(1, 3))))
            if d == o.low_day:  # a trip: each leg takes half of what is left above low_soc
                target = soc - (soc - o.low_soc) / (2 - leg)
                cycles = _cycles_to(target, soc, capacity_ah, nominal_v)
            i = _drive_current(cycles, capacity_ah, nominal_v)
            k = start + int(leave_h * 3600)
            current[k : k + len(i)], phase[k : k + len(i)] = i, DRIVE
            soc += i.sum() / 3600.0 / capacity_ah
            end_of_drives = k + len(i)
        target = rng.uniform(*o.charge_to)
        k = max(start + int((19.0 + rng.uniform(0, 0.75)) * 3600), end_of_drives + 1800)
        steps = int(max(target - soc, 0.0) * 3600 / o.charge_c)
        current[k : k + steps], phase[k : k + steps] = o.charge_c * capacity_ah, CHARGE
        soc += steps * o.charge_c / 3600.0
    return LifePlan(np.arange(n, dtype=float), current, phase)


def _drive_current(cycles: list[str], capacity_ah: float, nominal_v: float) -> np.ndarray:
    _, power_w, _ = drive(cycles, capacity_ah * nominal_v)
    return power_w / nominal_v


def _cycles_to(target_soc: float, soc: float, capacity_ah: float, nominal_v: float) -> list[str]:
    """Highway cycles until the drive would take the cell below `target_soc`."""
    cycles: list[str] = []
    while True:
        more = cycles + ["hwfet"]
        if soc + _drive_current(more, capacity_ah, nominal_v).sum() / 3600.0 / capacity_ah < target_soc:
            return cycles or more
        cycles = more


def live(plant, plan: LifePlan, soc0: float, cutoff_margin_v: float = 0.15):
    """The plant through the plan (PyBaMM, current-driven), its truth at the logged samples.

    The model's voltage cut-offs sit `cutoff_margin_v` outside the cell's limits: regeneration
    near the charge target may briefly pass the upper limit, as it does in a car. The current is
    interpolated on its bends only (`LifePlan.knots`): the same function as the 1 s samples, whose
    600 000 knots made a week's solve take hours (its 31 000 bends: one or two CPU minutes).
    The tolerance is the other plant runs': at 1e-5 the plant's SoC drifted 0.05 % from the current's count."""
    import warnings

    import pybamm

    from .run import Truth

    keep = plan.logged()
    pv = plant.parameter_values(cutoff_margin_v=cutoff_margin_v)
    knots = plan.knots()
    pv.update(
        {
            "Current function [A]": pybamm.Interpolant(
                plan.time_s[knots], -plan.current_a[knots], pybamm.t, interpolator="linear"
            )
        }
    )  # PyBaMM: + = discharge
    solver = pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-8, options={"suppress_algebraic_error": True})
    sim = pybamm.Simulation(plant.model(), parameter_values=pv, solver=solver)
    t_log = plan.time_s[keep]
    # the solver stops at every change of phase: its steps across a long park would otherwise step over a drive
    stops = plan.time_s[np.r_[0, np.flatnonzero(np.diff(plan.phase)) + 1, len(plan.phase) - 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = sim.solve(t_eval=np.unique(stops), t_interp=t_log, initial_soc=soc0)
    t = solution["Time [s]"].entries
    if len(t) < len(t_log) or t[-1] < t_log[-1] - 0.5:
        raise RuntimeError(f"plant {plant} stopped at {t[-1]:.0f} s of {t_log[-1]:.0f} s: {solution.termination}")
    sample = {
        name: np.interp(t_log, t, solution[name].entries)
        for name in ("Voltage [V]", "Discharge capacity [A.h]", "Volume-averaged cell temperature [K]")
    }
    capacity = plant.capacity_ah()
    return Truth(
        time_s=t_log,
        current_a=plan.current_a[keep],
        voltage_v=sample["Voltage [V]"],
        temperature_c=sample["Volume-averaged cell temperature [K]"] - 273.15,
        soc=soc0 - sample["Discharge capacity [A.h]"] / capacity,
        capacity_ah=capacity,
        termination=str(solution.termination),
    )
