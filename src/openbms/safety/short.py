"""Internal short circuits: a cell that keeps losing charge the others do not.

Two kinds of evidence, each raising its own warning:

- The pack estimator's delta filters estimate each cell's leakage current against the mean
  cell. A leak that persists (its average over hours, relative to the median cell, above a
  threshold) and stands alone (above every other cell's by a margin) is a short; its resistance
  is the cell voltage over the leak. Hours of averaging separate a short from the filters'
  transient excursions; standing alone separates it from an error of the mean cell's SoC on
  LFP's curved plateau, which moves every cell near the same SoC together. This evidence
  escalates to critical.
- In a park, once the cells have relaxed, their voltages hold still against each other: a cell
  whose voltage keeps falling against the others is discharging on its own. On LFP's plateau
  this shows hours before the SoC difference does, because a cell drained at rest moves onto its
  discharge hysteresis branch, tens of mV below the others.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    rest_drop_v: float = 0.006  # fall of a parked cell's voltage against the others (healthy packs: under 3 mV)
    rest_settle_s: float = 3600.0  # time into a park before the reference: relaxation is over
    rest_window_s: float = 600.0  # voltages are compared as means over this long (noise and 1 mV steps)
    rest_current_c: float = 0.01  # pack current below which the pack is parked, a fraction of 1C

    def validate(self) -> "ShortRule":
        """Raise ValueError naming the first wrong field; return self for chaining."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"short rule {f.name} must be a positive number, got {value!r}")
        if self.critical_c <= self.warning_c:
            raise ValueError(f"short rule critical_c ({self.critical_c}) must exceed warning_c ({self.warning_c})")
        return self


SIZE_AVERAGE_S = 3600.0


class ShortDetector:
    def __init__(self, n_cells: int, capacity_ah: float, rule: ShortRule = ShortRule()):
        self.rule = rule
        self.warning_a, self.isolation_a, self.critical_a = (
            x * capacity_ah for x in (rule.warning_c, rule.isolation_c, rule.critical_c)
        )
        self.average = np.zeros(n_cells)
        self.recent = np.zeros(n_cells)  # the leak over the last hour: the short's present size
        self.level = np.zeros(n_cells, dtype=int)  # 0 none, 1 warning, 2 critical; latched: a short does not heal
        self.last_time_s = np.nan
        self.rest = RestDrift(n_cells, capacity_ah, rule)

    def update(
        self,
        time_s: np.ndarray,
        current_a: np.ndarray,
        leak_a: np.ndarray,
        cell_voltage_v: np.ndarray,
        valid: np.ndarray,
        bleed_a: np.ndarray | None = None,
    ) -> list[Event]:
        """current_a (time,); leak_a, cell_voltage_v, valid, bleed_a: (time, cells); a cell whose sensor is not
        valid keeps its average."""
        t = np.atleast_1d(np.asarray(time_s, dtype=float))
        events = self.rest.update(t, current_a, cell_voltage_v, valid, bleed_a)
        with np.errstate(invalid="ignore"):
            leak = leak_a - np.nanmedian(np.where(valid, leak_a, np.nan), axis=1, keepdims=True)
        averages, recent = np.empty(leak.shape), np.empty(leak.shape)
        _average(t, leak, valid, SIZE_AVERAGE_S, self.last_time_s, self.recent, recent)
        self.last_time_s = _average(t, leak, valid, self.rule.average_s, self.last_time_s, self.average, averages)
        top2 = np.sort(averages, axis=1)[:, -2:] if averages.shape[1] > 1 else np.zeros((len(t), 2))
        others = np.where(averages >= top2[:, 1:], top2[:, :1], top2[:, 1:])  # the largest of the other cells
        alone = averages - others > self.isolation_a
        level = alone * ((averages > self.warning_a).astype(int) + (averages > self.critical_a))
        for severity, n in (("warning", 1), ("critical", 2)):
            hits = (level >= n) & (self.level < n)[None, :]
            for c in np.flatnonzero(hits.any(axis=0)):
                k = int(np.argmax(hits[:, c]))
                # the long average lags a short's onset: its size is the last hour's
                drain = max(recent[k, c], averages[k, c])
                r_ohm = cell_voltage_v[k, c] / drain
                events.append(
                    Event(
                        float(t[k]),
                        "internal_short",
                        severity,
                        f"cell {c + 1} loses {1000 * drain:.1f} mA the others do not (on average "
                        f"{1000 * averages[k, c]:.1f} mA over {self.rule.average_s / 3600:g} h): an "
                        f"internal short of about {r_ohm:.0f} ohm",
                        cell=int(c) + 1,
                        value=float(r_ohm),
                    )
                )
        self.level = np.maximum(self.level, level.max(axis=0))
        return sorted(events, key=lambda e: e.time_s)


class RestDrift:
    """Each park's voltages against the median cell, 1 h in (the reference) and every 10 min after."""

    def __init__(self, n_cells: int, capacity_ah: float, rule: ShortRule):
        self.rule = rule
        self.rest_current_a = rule.rest_current_c * capacity_ah
        # [park start (NaN while driving or charging), window start]; per cell: reference and window sums and counts
        self.clock = np.full(2, np.nan)
        self.sums = np.zeros((4, n_cells))
        self.flagged = np.zeros(n_cells, dtype=bool)  # one warning per cell

    def update(self, t, current_a, cell_voltage_v, valid, bleed_a) -> list[Event]:
        r = self.rule
        parked = np.abs(np.atleast_1d(np.asarray(current_a, dtype=float))) <= self.rest_current_a
        if bleed_a is not None:  # a bleeding cell falls against the others: balancing restarts the park
            parked &= ~(np.broadcast_to(np.asarray(bleed_a, dtype=float), valid.shape) > 0).any(axis=1)
        drift = np.full(valid.shape, np.nan)
        _rest_drift(
            t,
            parked,
            np.asarray(cell_voltage_v, dtype=float),
            valid,
            r.rest_settle_s,
            r.rest_window_s,
            self.clock,
            self.sums,
            drift,
        )
        with np.errstate(invalid="ignore"):
            lowest2 = np.sort(np.where(np.isnan(drift), np.inf, drift), axis=1)[:, :2]
            alone = drift - lowest2[:, 1:] < -0.5 * r.rest_drop_v  # the others did not fall with it
            hits = (drift < -r.rest_drop_v) & alone & (drift <= lowest2[:, :1]) & ~self.flagged[None, :]
        events = []
        for c in np.flatnonzero(hits.any(axis=0)):
            k = int(np.argmax(hits[:, c]))
            events.append(
                Event(
                    float(t[k]),
                    "internal_short",
                    "warning",
                    f"parked, cell {c + 1}'s voltage fell {-1000 * drift[k, c]:.1f} mV against the others "
                    f"since an hour into the park: it is discharging on its own, as through an internal "
                    f"short (its size follows from the leak estimate)",
                    cell=int(c) + 1,
                )
            )
            self.flagged[c] = True
        return events


@njit(cache=True)
def _rest_drift(t, parked, v, valid, settle_s, window_s, clock, sums, out):
    """Per parked sample closing a window: each cell's mean voltage over the window less its reference
    (both against the median cell), less the median of those drifts. clock and sums carry over."""
    n_cells = v.shape[1]
    rel = np.empty(n_cells)
    good = np.empty(n_cells)
    for k in range(t.shape[0]):
        if not parked[k]:
            clock[0] = np.nan
            sums[:] = 0.0
            continue
        if clock[0] != clock[0]:
            clock[0] = t[k]
            clock[1] = t[k] + settle_s + window_s
        elapsed = t[k] - clock[0]
        if elapsed < settle_s:  # still relaxing: nothing to compare yet
            continue
        n_good = 0
        for c in range(n_cells):
            if valid[k, c] and v[k, c] == v[k, c]:
                good[n_good] = v[k, c]
                n_good += 1
        if n_good < 3:
            continue
        median = np.median(good[:n_good])
        row = 0 if elapsed < settle_s + window_s else 2  # reference, or the current window
        for c in range(n_cells):
            if valid[k, c] and v[k, c] == v[k, c]:
                sums[row, c] += v[k, c] - median
                sums[row + 1, c] += 1.0
        if row == 2 and t[k] >= clock[1] + window_s:
            n_rel = 0
            for c in range(n_cells):
                rel[c] = np.nan
                if sums[1, c] > 0 and sums[3, c] > 0:
                    rel[c] = sums[2, c] / sums[3, c] - sums[0, c] / sums[1, c]
                    good[n_rel] = rel[c]
                    n_rel += 1
            if n_rel >= 3:
                shift = np.median(good[:n_rel])
                for c in range(n_cells):
                    out[k, c] = rel[c] - shift
            clock[1] = t[k]
            sums[2:] = 0.0


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
