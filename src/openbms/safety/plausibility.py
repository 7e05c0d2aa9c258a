"""Sensor plausibility: readings out of range, open sense wires, stuck values, a current sensor offset.

A BMS that trusts a broken sensor either trips for nothing or misses a real fault, so each
reading is judged before the estimators use it; `valid` tells them which to leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .events import Event


@dataclass(frozen=True)
class PlausibilityRule:
    voltage_range_v: tuple[float, float] = (1.0, 4.5)  # outside: no LFP cell, a sensor or wiring fault
    temperature_range_c: tuple[float, float] = (-40.0, 125.0)
    stuck_s: float = 600.0  # a reading unchanged this long while the current moves
    stuck_current_c: float = 0.2  # ... by at least this much (C-rate span) since it last changed
    offset_c: float = 0.01  # estimated current-sensor offset beyond 1 % of 1C


class PlausibilityChecker:
    """Streaming over chunks: `update` returns the events and which readings to trust at each sample."""

    def __init__(self, n_cells: int, n_sensors: int, capacity_ah: float, rule: PlausibilityRule = PlausibilityRule()):
        self.rule, self.capacity_ah = rule, capacity_ah
        self.bad_v = np.zeros(n_cells, dtype=bool)
        self.bad_t = np.zeros(n_sensors, dtype=bool)
        self.last_v = np.full(n_cells, np.nan)
        self.v_since = np.zeros(n_cells)
        self.i_low = np.full(n_cells, np.inf)  # the current's range since each reading last changed
        self.i_high = np.full(n_cells, -np.inf)
        self.offset_flagged = False

    def update(self, time_s, cell_voltage_v, temperature_c, current_a) -> tuple[list[Event], np.ndarray, np.ndarray]:
        """time_s (time,), cell voltages (time, cells), temperatures (time, sensors), current (time,):
        (events, cell voltages valid (time, cells), temperature sensors bad (time, sensors))."""
        r = self.rule
        t = np.asarray(time_s, dtype=float)
        v = np.asarray(cell_voltage_v, dtype=float)
        temps = np.asarray(temperature_c, dtype=float)
        lo, hi = r.voltage_range_v
        out_v = ~np.isfinite(v) | (v < lo) | (v > hi)
        since = np.empty(v.shape)
        stuck = np.empty(v.shape, dtype=bool)
        _stuck_readings(
            t,
            v,
            np.asarray(current_a, dtype=float),
            r.stuck_s,
            r.stuck_current_c * self.capacity_ah,
            self.last_v,
            self.v_since,
            self.i_low,
            self.i_high,
            since,
            stuck,
        )
        bad_v = out_v | stuck
        events = []
        for k, c in _changes(self.bad_v, bad_v):
            if not bad_v[k, c]:
                why, cleared = f"cell voltage {c + 1} plausible again", True
            elif stuck[k, c] and not out_v[k, c]:
                why, cleared = (
                    f"cell voltage {c + 1} has read {v[k, c]:.4f} V for {t[k] - since[k, c]:.0f} s while the "
                    "current moved",
                    False,
                )
            elif np.isfinite(v[k, c]) and v[k, c] < lo and self._neighbour_high(v[k], c):
                why, cleared = (
                    f"cell voltage {c + 1} reads {v[k, c]:.3f} V while a neighbour reads high: an open sense wire",
                    False,
                )
            else:
                why, cleared = (
                    f"cell voltage {c + 1} reads {v[k, c]:.3f} V, outside {lo:g}-{hi:g} V: a sensor or wiring fault",
                    False,
                )
            events.append(
                Event(t[k], "sensor_fault", "warning", why, cell=int(c) + 1, value=float(v[k, c]), cleared=cleared)
            )
        tlo, thi = r.temperature_range_c
        bad_t = ~np.isfinite(temps) | (temps < tlo) | (temps > thi)
        for k, j in _changes(self.bad_t, bad_t):
            why = (
                f"temperature sensor {j + 1} plausible again"
                if not bad_t[k, j]
                else f"temperature sensor {j + 1} reads {temps[k, j]:.1f} degC, outside {tlo:g}-{thi:g} degC"
            )
            events.append(
                Event(
                    t[k],
                    "sensor_fault",
                    "warning",
                    why,
                    sensor=int(j) + 1,
                    value=float(temps[k, j]),
                    cleared=not bad_t[k, j],
                )
            )
        self.bad_v, self.bad_t = bad_v[-1], bad_t[-1]
        return events, ~bad_v, bad_t

    def check_offset(self, time_s: float, current_offset_a: float) -> list[Event]:
        """The current sensor's offset as the estimator sees it from the cells' voltages; reported once."""
        if self.offset_flagged or abs(current_offset_a) <= self.rule.offset_c * self.capacity_ah:
            return []
        self.offset_flagged = True
        return [
            Event(
                time_s,
                "sensor_fault",
                "warning",
                f"current sensor reads {current_offset_a * 1000:+.0f} mA off "
                f"(estimated from the cells' voltages): recalibrate it",
                value=float(current_offset_a),
            )
        ]

    @staticmethod
    def _neighbour_high(v: np.ndarray, c: int) -> bool:
        median = np.nanmedian(v)
        return any(0 <= n < len(v) and v[n] > median * 1.2 for n in (c - 1, c + 1))


def _changes(before: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(sample, index) pairs where a flag differs from the sample before (the first against `before`)."""
    previous = np.concatenate([before[None], flags[:-1]])
    return np.argwhere(flags != previous)


@njit(cache=True)
def _stuck_readings(time_s, v, current, stuck_s, span_a, last_v, v_since, i_low, i_high, since_out, stuck_out):
    """Per sample and cell: a reading unchanged for stuck_s while the current spanned span_a (state carried over)."""
    for k in range(v.shape[0]):
        i = current[k]
        for c in range(v.shape[1]):
            if v[k, c] != last_v[c]:
                v_since[c], i_low[c], i_high[c] = time_s[k], i, i
            else:
                i_low[c], i_high[c] = min(i_low[c], i), max(i_high[c], i)
            last_v[c] = v[k, c]
            since_out[k, c] = v_since[c]
            stuck_out[k, c] = i_high[c] - i_low[c] >= span_a and time_s[k] - v_since[c] >= stuck_s
