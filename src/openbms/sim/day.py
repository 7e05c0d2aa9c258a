"""A vehicle's days as pack current: drive to work, park, drive home, park, charge back, park overnight.

Drives are FASTSim EPA cycles (see `drive`), scaled to one cell by energy and turned into
current at the cell's nominal voltage; charging is constant current back to where the day
started (the BMS's own charge control refines the end in closed loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .drive import drive

DAY_S = 86400
PARK, DRIVE, CHARGE = 0, 1, 2


@dataclass
class DayPlan:
    """Per second: the cell current (+ = charging), the phase (PARK, DRIVE, CHARGE) and the speed (m/s)."""

    time_s: np.ndarray
    current_a: np.ndarray
    phase: np.ndarray
    speed_ms: np.ndarray


def drive_park_charge(
    capacity_ah: float, days: int = 1, nominal_v: float = 3.3, charge_c: float = 1 / 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time_s, current_a with + = charging, phase per sample: 0 park, 1 drive, 2 charge) at 1 s for `days`."""
    plan = plan_days(capacity_ah, days, nominal_v, charge_c, seed)
    return plan.time_s, plan.current_a, plan.phase


def plan_days(
    capacity_ah: float, days: int = 1, nominal_v: float = 3.3, charge_c: float = 1 / 3, seed: int = 0
) -> DayPlan:
    """Days of commuting for one cell of the pack, with the speed for range and consumption."""
    if days < 1 or capacity_ah <= 0 or charge_c <= 0:
        raise ValueError("days must be at least 1 and capacity_ah, charge_c positive")
    rng = np.random.default_rng(seed)
    current = np.zeros(days * DAY_S)
    phase = np.zeros(days * DAY_S, dtype=np.int8)
    speed = np.zeros(days * DAY_S)
    for d in range(days):
        start = d * DAY_S
        used = 0.0
        for leave_h in (7.0 + rng.uniform(0, 1.5), 17.0 + rng.uniform(0, 1.5)):
            cycles = list(rng.choice(["udds", "hwfet"], size=int(rng.integers(1, 4))))
            _, p, v = drive(cycles, capacity_ah * nominal_v)
            i = p / nominal_v
            k = start + int(leave_h * 3600)
            current[k : k + len(i)] = i
            phase[k : k + len(i)] = DRIVE
            speed[k : k + len(i)] = v
            used -= i.sum() / 3600.0
        k = start + int((21.0 + rng.uniform(0, 2)) * 3600)
        n = int(max(used, 0.0) / (charge_c * capacity_ah) * 3600)
        current[k : k + n] = charge_c * capacity_ah
        phase[k : k + n] = CHARGE
    return DayPlan(np.arange(days * DAY_S, dtype=float), current, phase, speed)
