"""Sensor plausibility: readings out of range, open sense wires, stuck values, a current sensor offset.

A BMS that trusts a broken sensor either trips for nothing or misses a real fault, so each
reading is judged before the estimators use it; `valid` tells them which to leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Event


@dataclass(frozen=True)
class PlausibilityRule:
    voltage_range_v: tuple[float, float] = (1.0, 4.5)  # outside: no LFP cell, a sensor or wiring fault
    temperature_range_c: tuple[float, float] = (-40.0, 125.0)
    stuck_s: float = 600.0  # a reading unchanged this long while the current moves
    stuck_current_c: float = 0.2  # ... by at least this much (C-rate span) since it last changed
    offset_c: float = 0.01  # estimated current-sensor offset beyond 1 % of 1C


class PlausibilityChecker:
    """Streaming: `update` returns (events, valid mask for the cell voltages)."""

    def __init__(self, n_cells: int, n_sensors: int, capacity_ah: float, rule: PlausibilityRule = PlausibilityRule()):
        self.rule, self.capacity_ah = rule, capacity_ah
        self.bad_v = np.zeros(n_cells, dtype=bool)
        self.bad_t = np.zeros(n_sensors, dtype=bool)
        self.last_v = np.full(n_cells, np.nan)
        self.v_since = np.zeros(n_cells)
        self.i_low = np.full(n_cells, np.inf)  # the current's range since each reading last changed
        self.i_high = np.full(n_cells, -np.inf)
        self.offset_flagged = False

    def update(self, time_s: float, cell_voltages_v, temperatures_c, current_a: float) -> tuple[list[Event], np.ndarray]:
        r = self.rule
        v = np.asarray(cell_voltages_v, dtype=float)
        temps = np.asarray(temperatures_c, dtype=float)
        events: list[Event] = []
        lo, hi = r.voltage_range_v
        out_v = ~np.isfinite(v) | (v < lo) | (v > hi)
        changed = v != self.last_v
        self.v_since = np.where(changed, time_s, self.v_since)
        self.i_low = np.where(changed, current_a, np.minimum(self.i_low, current_a))
        self.i_high = np.where(changed, current_a, np.maximum(self.i_high, current_a))
        self.last_v = v
        moving = self.i_high - self.i_low >= r.stuck_current_c * self.capacity_ah
        stuck = moving & (time_s - self.v_since >= r.stuck_s)
        bad_v = out_v | stuck
        for c in np.flatnonzero(bad_v & ~self.bad_v):
            if stuck[c] and not out_v[c]:
                why = f"cell voltage {c + 1} has read {v[c]:.4f} V for {time_s - self.v_since[c]:.0f} s while the current moved"
            elif np.isfinite(v[c]) and v[c] < lo and self._neighbour_high(v, c):
                why = f"cell voltage {c + 1} reads {v[c]:.3f} V while a neighbour reads high: an open sense wire"
            else:
                why = f"cell voltage {c + 1} reads {v[c]:.3f} V, outside {lo:g}-{hi:g} V: a sensor or wiring fault"
            events.append(Event(time_s, "sensor_fault", "warning", why, cell=int(c) + 1, value=float(v[c])))
        for c in np.flatnonzero(~bad_v & self.bad_v):
            events.append(Event(time_s, "sensor_fault", "warning", f"cell voltage {c + 1} plausible again",
                                cell=int(c) + 1, value=float(v[c]), cleared=True))
        self.bad_v = bad_v
        tlo, thi = r.temperature_range_c
        bad_t = ~np.isfinite(temps) | (temps < tlo) | (temps > thi)
        for j in np.flatnonzero(bad_t & ~self.bad_t):
            events.append(Event(time_s, "sensor_fault", "warning",
                                f"temperature sensor {j + 1} reads {temps[j]:.1f} degC, outside {tlo:g}-{thi:g} degC",
                                sensor=int(j) + 1, value=float(temps[j])))
        for j in np.flatnonzero(~bad_t & self.bad_t):
            events.append(Event(time_s, "sensor_fault", "warning", f"temperature sensor {j + 1} plausible again",
                                sensor=int(j) + 1, value=float(temps[j]), cleared=True))
        self.bad_t = bad_t
        return events, ~bad_v

    def check_offset(self, time_s: float, current_offset_a: float) -> list[Event]:
        """The current sensor's offset as the estimator sees it from the cells' voltages; reported once."""
        if self.offset_flagged or abs(current_offset_a) <= self.rule.offset_c * self.capacity_ah:
            return []
        self.offset_flagged = True
        return [Event(time_s, "sensor_fault", "warning", f"current sensor reads {current_offset_a * 1000:+.0f} mA off "
                                                         f"(estimated from the cells' voltages): recalibrate it",
                      value=float(current_offset_a))]

    @staticmethod
    def _neighbour_high(v: np.ndarray, c: int) -> bool:
        median = np.nanmedian(v)
        return any(0 <= n < len(v) and v[n] > median * 1.2 for n in (c - 1, c + 1))
