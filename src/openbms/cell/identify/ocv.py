"""OCV(z, T) and the hysteresis envelope from slow full discharge and charge tests.

The slow discharge and charge curves are corrected for the resistive drop (from
the voltage steps where the current starts and stops), put on the reference SoC
from the charge balance, and combined. A GITT or incremental-OCV test (small steps
with rests between them) gives each curve as its rested voltages instead. Each curve is trusted where it starts from
a rested, known state — the charge curve below the middle, the discharge curve
above it — each shifted by half the gap between them at the middle, so the OCV is
continuous and the curves' ends, polluted by resistance at the cut-off, are unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io.a123 import CellTest
from ...io.columns import CURRENT, TIME, VOLTAGE
from ...io.errors import DataError
from .anchors import rest_ends
from .coulomb import ChargeBalance

SOC_GRID = np.round(np.linspace(0.0, 1.0, 201), 6)
MIN_GITT_RESTS = 5  # rests after steps of one direction that make a GITT curve


@dataclass(frozen=True)
class OcvCurve:
    temperature_c: float
    ocv_v: np.ndarray  # on SOC_GRID
    envelope_v: np.ndarray  # half the charge–discharge gap on SOC_GRID
    voltage_min_v: float
    voltage_max_v: float


def longest_run(mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Row indices of the contiguous run of `mask` that carries the most `weight`."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    if len(edges) == 0:
        return np.array([], dtype=int)
    starts, stops = edges[::2], edges[1::2]
    best = max(range(len(starts)), key=lambda r: weight[starts[r] : stops[r]].sum())
    return np.arange(starts[best], stops[best])


def ocv_curve(test: CellTest, balance: ChargeBalance, charge_only: bool = False) -> OcvCurve:
    """Both branches combined; a charge branch alone is the OCV as measured, with no hysteresis shown."""
    if charge_only:
        curve, v_max = _branch(test, balance, +1)
        v_min = float(test.data[VOLTAGE].iloc[0])  # the test starts at empty, at the cut-off
        return OcvCurve(test.temperature_c, curve, np.zeros_like(curve), v_min, v_max)
    dis_curve, v_min = _branch(test, balance, -1)
    chg_curve, v_max = _branch(test, balance, +1)
    mid = len(SOC_GRID) // 2
    gap = chg_curve[mid] - dis_curve[mid]
    ocv = np.where(SOC_GRID < SOC_GRID[mid], chg_curve - SOC_GRID * gap, dis_curve + (1.0 - SOC_GRID) * gap)
    envelope = np.clip(0.5 * (chg_curve - dis_curve), 0.0, None)
    return OcvCurve(test.temperature_c, ocv, envelope, v_min, v_max)


def _branch(test: CellTest, balance: ChargeBalance, sign: int) -> tuple[np.ndarray, float]:
    """One direction's OCV curve on SOC_GRID, and the voltage limit it reached: from the rested
    voltages of a GITT test, else from the longest slow run corrected for its resistive drop."""
    i = test.data[CURRENT].to_numpy()
    v = test.data[VOLTAGE].to_numpy()
    own = test.at_temperature
    what = "discharge" if sign < 0 else "charge"
    run = longest_run(own & (sign * i > 0), sign * i)
    ends = rest_ends(test)
    first = int(np.argmax(sign * i > 0))
    start = [row for row, _ in ends if row < first][-1:]  # rested where the steps begin: the curve's first point
    rested = np.array(start + [row for row, before in ends if before == sign and own[row]], dtype=int)
    moved = np.clip(sign * i, 0, None) * np.diff(test.data[TIME].to_numpy(), append=test.data[TIME].iloc[-1])
    if len(rested) > MIN_GITT_RESTS and moved[run].sum() < 0.3 * moved[own].sum():
        limit = float(v[own & (sign * i > 0)].max() if sign > 0 else v[own & (sign * i > 0)].min())
        return _on_grid(balance.soc[rested], v[rested]), limit
    if len(run) < 10:
        raise DataError(
            test.sources[0] if test.sources else test.name,
            f"no slow {what} found in this OCV test (nor {MIN_GITT_RESTS} rests after {what} steps)",
        )
    limit = float(v[run].max() if sign > 0 else v[run].min())
    return _on_grid(balance.soc[run], v[run] - sign * _resistive_drop(v, i, run)), limit


def _resistive_drop(v: np.ndarray, i: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """|I|·R along a constant-current run, R from the steps at its start and end.

    Each end's estimate is capped at twice the other's: the end-of-run step of a
    cold cell carries slow relaxation that is not resistance.
    """
    first, last = rows[0], rows[-1]
    current = np.abs(i[rows]).mean()
    r_start = abs(v[first - 1] - v[first]) / current if first > 0 else 0.0
    r_end = abs(v[last + 1] - v[last]) / current if last + 1 < len(v) else r_start
    r_start, r_end = min(r_start, 2 * r_end), min(r_end, 2 * r_start)
    blend = np.linspace(0.0, 1.0, len(rows))
    return np.abs(i[rows]) * (r_start + (r_end - r_start) * blend)


def _on_grid(z: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A curve sampled along a run, on SOC_GRID; linear beyond the SoC it covered."""
    order = np.argsort(z)
    z, v = z[order], v[order]
    z, keep = np.unique(z, return_index=True)
    v = v[keep]
    out = np.interp(SOC_GRID, z, v)
    lo, hi = SOC_GRID < z[0], SOC_GRID > z[-1]
    n = max(2, min(len(z) // 20, 50))
    if lo.any():
        slope = np.polyfit(z[:n], v[:n], 1)[0]
        out[lo] = v[0] + slope * (SOC_GRID[lo] - z[0])
    if hi.any():
        slope = np.polyfit(z[-n:], v[-n:], 1)[0]
        out[hi] = v[-1] + slope * (SOC_GRID[hi] - z[-1])
    return out
