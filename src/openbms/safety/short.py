"""Internal short circuits: a cell that keeps losing charge the others do not.

The pack estimator's delta filters estimate each cell's leakage current against the mean cell.
A leak that persists (its average over hours, relative to the median cell, above a threshold)
and stands alone (above every other cell's by a margin) is a short; its resistance is the cell
voltage over the leak. Hours of averaging separate a short from the filters' transient
excursions; standing alone separates it from an error of the mean cell's SoC on LFP's curved
plateau, which moves every cell near the same SoC together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .events import Event


@dataclass(frozen=True)
class ShortRule:
    """Leaks as fractions of 1C: what a filter can see is how fast a leak moves the cell's SoC."""

    average_s: float = 10 * 3600.0  # exponential averaging time of the leak evidence
    warning_c: float = 0.0011  # averaged leak reported as a short (2.5 mA in a 2.3 Ah cell: ~1.3 kohm)
    isolation_c: float = 0.00065  # ... when it exceeds every other cell's by this much
    critical_c: float = 0.0065  # averaged leak that makes it critical (stop charging, service now)


SIZE_AVERAGE_S = 3600.0


class ShortDetector:
    def __init__(self, n_cells: int, capacity_ah: float, rule: ShortRule = ShortRule()):
        self.rule = rule
        self.warning_a, self.isolation_a, self.critical_a = (x * capacity_ah for x in (
            rule.warning_c, rule.isolation_c, rule.critical_c))
        self.average = np.zeros(n_cells)
        self.recent = np.zeros(n_cells)  # the leak over the last hour: the short's present size
        self.level = np.zeros(n_cells, dtype=int)  # 0 none, 1 warning, 2 critical; latched: a short does not heal
        self.last_time_s = np.nan

    def update(self, time_s: np.ndarray, leak_a: np.ndarray, cell_voltage_v: np.ndarray, valid: np.ndarray) -> list[Event]:
        """leak_a, cell_voltage_v, valid: (time, cells); a cell whose sensor is not valid keeps its average."""
        t = np.atleast_1d(np.asarray(time_s, dtype=float))
        with np.errstate(invalid="ignore"):
            leak = leak_a - np.nanmedian(np.where(valid, leak_a, np.nan), axis=1, keepdims=True)
        averages, recent = np.empty(leak.shape), np.empty(leak.shape)
        _average(t, leak, valid, SIZE_AVERAGE_S, self.last_time_s, self.recent, recent)
        self.last_time_s = _average(t, leak, valid, self.rule.average_s, self.last_time_s, self.average, averages)
        top2 = np.sort(averages, axis=1)[:, -2:] if averages.shape[1] > 1 else np.zeros((len(t), 2))
        others = np.where(averages >= top2[:, 1:], top2[:, :1], top2[:, 1:])  # the largest of the other cells
        alone = averages - others > self.isolation_a
        level = alone * ((averages > self.warning_a).astype(int) + (averages > self.critical_a))
        events = []
        for severity, n in (("warning", 1), ("critical", 2)):
            hits = (level >= n) & (self.level < n)[None, :]
            for c in np.flatnonzero(hits.any(axis=0)):
                k = int(np.argmax(hits[:, c]))
                # the long average lags a short's onset: its size is the last hour's
                drain = max(recent[k, c], averages[k, c])
                r_ohm = cell_voltage_v[k, c] / drain
                events.append(Event(float(t[k]), "internal_short", severity,
                                    f"cell {c + 1} loses {1000 * drain:.1f} mA the others do not (on average "
                                    f"{1000 * averages[k, c]:.1f} mA over {self.rule.average_s / 3600:g} h): an "
                                    f"internal short of about {r_ohm:.0f} ohm", cell=int(c) + 1, value=float(r_ohm)))
        self.level = np.maximum(self.level, level.max(axis=0))
        return sorted(events, key=lambda e: e.time_s)


@njit(cache=True)
def _average(t, leak, valid, average_s, last_t, average, out):
    """Exponential average over time (each sample weighted by its interval), in place; returns the last time."""
    for k in range(t.shape[0]):
        w = 0.0 if last_t != last_t else min((t[k] - last_t) / average_s, 1.0)
        last_t = t[k]
        for c in range(leak.shape[1]):
            if valid[k, c]:
                average[c] += w * (leak[k, c] - average[c])
            out[k, c] = average[c]
    return last_t
