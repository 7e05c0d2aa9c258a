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


def sensor_cells(n_sensors: int, n_cells: int) -> list[np.ndarray]:
    """Which cells (0-based) each temperature sensor watches: evenly spread along the string."""
    edges = np.linspace(0, n_cells, n_sensors + 1).round().astype(int)
    return [np.arange(edges[j], max(edges[j + 1], edges[j] + 1)) for j in range(n_sensors)]


class RunawayDetector:
    """Streaming: feed samples in order; each alarm or warning is reported once per cell."""

    def __init__(self, n_cells: int, n_sensors: int, rule: RunawayRule = RunawayRule()):
        self.rule, self.n_cells = rule, n_cells
        self.cells_of = sensor_cells(n_sensors, n_cells)
        self.history: list[tuple[float, np.ndarray]] = []
        self.rise_since = np.full(n_sensors, np.nan)
        self.warm_since = np.full(n_sensors, np.nan)
        self.collapse_since = np.full(n_cells, np.nan)
        self.alarmed = np.zeros(n_cells, dtype=bool)
        self.warned = np.zeros(n_cells, dtype=bool)

    def update(self, time_s: float, cell_voltages_v: np.ndarray, temperatures_c: np.ndarray) -> list[Event]:
        r = self.rule
        v = np.asarray(cell_voltages_v, dtype=float)
        temps = np.asarray(temperatures_c, dtype=float)
        self.history = [(t, x) for t, x in self.history if time_s - t <= r.slope_window_s + 1e-9] + [(time_s, temps)]
        t0, old = self.history[0]
        rate = (temps - old) / (time_s - t0) if time_s > t0 else np.zeros_like(temps)
        rising = rate >= r.rise_c_per_s
        self.rise_since = np.where(rising, np.where(np.isnan(self.rise_since), time_s, self.rise_since), np.nan)
        rise_held = rising & (time_s - self.rise_since > r.rise_hold_s)
        median_v = np.nanmedian(v)
        drop = 1.0 - v / median_v
        events = []
        for j, cells in enumerate(self.cells_of):
            hot = temps[j] >= r.max_temperature_c
            for c in cells:
                if rise_held[j] and (drop[c] > r.voltage_drop or hot) and not self.alarmed[c]:
                    self.alarmed[c] = True
                    why = (f"voltage {v[c]:.3f} V is {100 * drop[c]:.0f} % below the median cell"
                           if drop[c] > r.voltage_drop else f"temperature {temps[j]:.1f} degC at or above "
                                                            f"{r.max_temperature_c:g} degC")
                    events.append(Event(time_s, "thermal_runaway", "critical",
                                        f"GB 38031 thermal runaway: {why}, and sensor {j + 1} rising {rate[j]:.2f} "
                                        f"degC/s for more than {r.rise_hold_s:g} s", cell=int(c) + 1,
                                        value=float(temps[j])))
        events += self._warnings(time_s, v, drop, temps, rate)
        return events

    def _warnings(self, time_s, v, drop, temps, rate) -> list[Event]:
        r = self.rule
        collapsing = drop > r.warning_drop
        self.collapse_since = np.where(collapsing, np.where(np.isnan(self.collapse_since), time_s,
                                                            self.collapse_since), np.nan)
        warm = (rate >= r.warning_rise_c_per_s) & (temps - np.nanmedian(temps) >= r.warning_excess_c)
        self.warm_since = np.where(warm, np.where(np.isnan(self.warm_since), time_s, self.warm_since), np.nan)
        events = []
        for c in np.flatnonzero(collapsing & (time_s - self.collapse_since >= r.warning_hold_s) & ~self.warned):
            self.warned[c] = True
            events.append(Event(time_s, "voltage_collapse", "warning",
                                f"voltage {v[c]:.3f} V has stayed {100 * drop[c]:.0f} % below the median cell for "
                                f"{r.warning_hold_s:g} s: an internal short or a failing cell", cell=int(c) + 1,
                                value=float(v[c])))
        for j in np.flatnonzero(warm & (time_s - self.warm_since >= r.warning_hold_s)):
            for c in self.cells_of[j]:
                if not self.warned[c]:
                    self.warned[c] = True
                    events.append(Event(time_s, "abnormal_heating", "warning",
                                        f"sensor {j + 1} at {temps[j]:.1f} degC is {temps[j] - np.nanmedian(temps):.1f}"
                                        f" degC above the others and rising {rate[j]:.2f} degC/s", cell=int(c) + 1,
                                        value=float(temps[j])))
        return events
