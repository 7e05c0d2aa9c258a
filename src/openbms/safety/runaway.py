"""Thermal runaway by the GB 38031-2025 rule, and an earlier warning.

The rule: a cell's voltage drop of more than 25 % OR a temperature at or above the maximum,
AND a temperature rise of at least 1 degC/s lasting more than 3 s. The drop is measured
against the median cell at the same instant, so load, which moves every cell, is not a drop.
The warning comes earlier: a voltage collapsing by 10 % against the others, or a sensor
heating by 0.2 degC/s while 5 degC above the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Event


@dataclass(frozen=True)
class RunawayRule:
    max_temperature_c: float = 60.0  # the cell's maximum operating temperature
    voltage_drop: float = 0.25
    rise_c_per_s: float = 1.0
    rise_hold_s: float = 3.0
    slope_window_s: float = 2.0  # dT/dt over this span, so one noisy sample is not a rise
    warning_drop: float = 0.10
    warning_rise_c_per_s: float = 0.2
    warning_excess_c: float = 5.0
    warning_hold_s: float = 10.0


def sensor_of_cell(n_sensors: int, n_cells: int) -> np.ndarray:
    """The temperature sensor (0-based) that watches each cell: sensors evenly spread along the string."""
    if not 1 <= n_sensors <= n_cells:
        raise ValueError(f"need between 1 and {n_cells} temperature sensors for {n_cells} cells, got {n_sensors}")
    edges = np.linspace(0, n_cells, n_sensors + 1).round().astype(int)
    return np.searchsorted(edges, np.arange(n_cells), side="right") - 1


class RunawayDetector:
    """Fed chunks of samples in order (a chunk may be one sample); each alarm or warning is reported once per cell."""

    def __init__(self, n_cells: int, n_sensors: int, rule: RunawayRule = RunawayRule()):
        self.rule, self.n_cells = rule, n_cells
        self.sensor = sensor_of_cell(n_sensors, n_cells)
        self.tail_t = np.empty(0)  # the samples of the last slope window, carried into the next chunk
        self.tail_temps = np.empty((0, n_sensors))
        self.rise_since = np.full(n_sensors, np.nan)
        self.warm_since = np.full(n_sensors, np.nan)
        self.collapse_since = np.full(n_cells, np.nan)
        self.alarmed = np.zeros(n_cells, dtype=bool)
        self.warned = np.zeros(n_cells, dtype=bool)

    def update(self, time_s, cell_voltages_v, temperatures_c) -> list[Event]:
        """time_s (time,), cell_voltages_v (time, cells), temperatures_c (time, sensors); or one sample of each."""
        r = self.rule
        t = np.atleast_1d(np.asarray(time_s, dtype=float))
        v = np.asarray(cell_voltages_v, dtype=float).reshape(len(t), self.n_cells)
        temps = np.asarray(temperatures_c, dtype=float).reshape(len(t), -1)
        # dT/dt over the slope window: against the earliest sample still inside it (this chunk or the tail)
        all_t = np.concatenate([self.tail_t, t])
        all_temps = np.concatenate([self.tail_temps, temps])
        first = np.searchsorted(all_t, all_t[len(self.tail_t) :] - r.slope_window_s - 1e-9)
        span = all_t[len(self.tail_t) :] - all_t[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(span[:, None] > 0, (temps - all_temps[first]) / span[:, None], 0.0)
            median_v = np.nanmedian(v, axis=1, keepdims=True)
            drop = 1.0 - v / median_v
            excess = temps - np.nanmedian(temps, axis=1, keepdims=True)
        keep = all_t > t[-1] - r.slope_window_s - 1e-9
        self.tail_t, self.tail_temps = all_t[keep], all_temps[keep]
        rise_held = self._held(t, rate >= r.rise_c_per_s, "rise_since") > r.rise_hold_s
        warm_held = (
            self._held(t, (rate >= r.warning_rise_c_per_s) & (excess >= r.warning_excess_c), "warm_since")
            >= r.warning_hold_s
        )
        collapse_held = self._held(t, drop > r.warning_drop, "collapse_since") >= r.warning_hold_s
        sensor = self.sensor
        hot = temps[:, sensor] >= r.max_temperature_c
        alarm = rise_held[:, sensor] & ((drop > r.voltage_drop) | hot)
        events = []
        for k, c in self._first(alarm, self.alarmed):
            j = sensor[c]
            why = (
                f"voltage {v[k, c]:.3f} V is {100 * drop[k, c]:.0f} % below the median cell"
                if drop[k, c] > r.voltage_drop
                else f"temperature {temps[k, j]:.1f} degC at or above {r.max_temperature_c:g} degC"
            )
            events.append(
                Event(
                    float(t[k]),
                    "thermal_runaway",
                    "critical",
                    f"GB 38031 thermal runaway: {why}, and sensor {j + 1} rising {rate[k, j]:.2f} degC/s "
                    f"for more than {r.rise_hold_s:g} s",
                    cell=int(c) + 1,
                    value=float(temps[k, j]),
                )
            )
        for k, c in self._first(collapse_held | warm_held[:, sensor], self.warned):
            j = sensor[c]
            if collapse_held[k, c]:
                events.append(
                    Event(
                        float(t[k]),
                        "voltage_collapse",
                        "warning",
                        f"voltage {v[k, c]:.3f} V has stayed {100 * drop[k, c]:.0f} % below the median "
                        f"cell for {r.warning_hold_s:g} s: an internal short or a failing cell",
                        cell=int(c) + 1,
                        value=float(v[k, c]),
                    )
                )
            else:
                events.append(
                    Event(
                        float(t[k]),
                        "abnormal_heating",
                        "warning",
                        f"sensor {j + 1} at {temps[k, j]:.1f} degC is {excess[k, j]:.1f} degC above the "
                        f"others and rising {rate[k, j]:.2f} degC/s",
                        cell=int(c) + 1,
                        value=float(temps[k, j]),
                    )
                )
        return events

    def _held(self, t: np.ndarray, condition: np.ndarray, state: str) -> np.ndarray:
        """How long each condition has held at each sample (NaN where it does not), carrying its start over."""
        n = len(t)
        last_false = np.maximum.accumulate(np.where(condition, -1, np.arange(n)[:, None]), axis=0)
        carried = getattr(self, state)
        before = np.where(np.isnan(carried), t[0], carried)  # a run that began before this chunk
        start = np.where(last_false < 0, before[None, :], t[np.minimum(last_false + 1, n - 1)])
        held = np.where(condition, t[:, None] - start, np.nan)
        setattr(self, state, np.where(condition[-1], start[-1], np.nan))
        return held

    @staticmethod
    def _first(condition: np.ndarray, done: np.ndarray) -> list[tuple[int, int]]:
        """(sample, cell) of each cell's first true condition not yet reported; marks them reported."""
        hits = condition & ~done[None, :]
        cells = np.flatnonzero(hits.any(axis=0))
        rows = np.argmax(hits[:, cells], axis=0)
        done[cells] = True
        return sorted(zip(rows.tolist(), cells.tolist()))
