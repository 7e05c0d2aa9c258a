"""Internal short circuits: a cell that keeps losing charge the others do not.

The pack estimator's delta filters estimate each cell's leakage current against the mean cell.
A leak that persists (its average over hours, relative to the median cell, above a threshold)
is a short; its resistance is the cell voltage over the leak. Hours of averaging are what
separates a short from the filters' transient excursions where the LFP plateau hides SoC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Event


@dataclass(frozen=True)
class ShortRule:
    average_s: float = 6 * 3600.0  # exponential averaging time of the leak evidence
    warning_a: float = 0.006  # averaged leak that is reported as a short
    critical_a: float = 0.03  # ... and as a critical one (stop charging, service now)


class ShortDetector:
    def __init__(self, n_cells: int, rule: ShortRule = ShortRule()):
        self.rule = rule
        self.average = np.zeros(n_cells)
        self.level = np.zeros(n_cells, dtype=int)  # 0 none, 1 warning, 2 critical
        self.last_time_s: float | None = None

    def update(self, time_s: np.ndarray, leak_a: np.ndarray, cell_voltage_v: np.ndarray, valid: np.ndarray) -> list[Event]:
        """leak_a, cell_voltage_v, valid: (time, cells); a cell whose sensor is not valid keeps its average."""
        events = []
        for k, t in enumerate(np.atleast_1d(time_s)):
            dt = 0.0 if self.last_time_s is None else t - self.last_time_s
            self.last_time_s = t
            leak = leak_a[k] - np.median(leak_a[k, valid[k]]) if valid[k].any() else np.zeros_like(self.average)
            self.average += np.where(valid[k], min(dt / self.rule.average_s, 1.0) * (leak - self.average), 0.0)
            level = (self.average > self.rule.warning_a).astype(int) + (self.average > self.rule.critical_a)
            for c in np.flatnonzero(level > self.level):
                # the average lags a short's onset: its size is the filter's present estimate
                drain = max(leak[c], self.average[c])
                r_ohm = cell_voltage_v[k, c] / drain
                events.append(Event(float(t), "internal_short", "critical" if level[c] == 2 else "warning",
                                    f"cell {c + 1} loses {1000 * drain:.1f} mA the others do not (on average "
                                    f"{1000 * self.average[c]:.1f} mA over {self.rule.average_s / 3600:g} h): an "
                                    f"internal short of about {r_ohm:.0f} ohm", cell=int(c) + 1, value=float(r_ohm)))
            self.level = np.maximum(self.level, level)  # a short does not heal: the level latches
        return events
