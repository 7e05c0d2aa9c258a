"""OCV(z, T) and the hysteresis envelope from slow full discharge and charge tests.

The slow discharge and charge curves are corrected for the resistive drop (from
the voltage steps where the current starts and stops), put on the reference SoC
from the charge balance, and combined. Each curve is trusted where it starts from
a rested, known state — the charge curve below the middle, the discharge curve
above it — each shifted by half the gap between them at the middle, so the OCV is
continuous and the curves' ends, polluted by resistance at the cut-off, are unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io.a123 import CellTest
from ...io.columns import CURRENT, VOLTAGE
from ...io.errors import DataError
from .coulomb import ChargeBalance

SOC_GRID = np.round(np.linspace(0.0, 1.0, 201), 6)


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


def ocv_curve(test: CellTest, balance: ChargeBalance) -> OcvCurve:
    i = test.data[CURRENT].to_numpy()
    v = test.data[VOLTAGE].to_numpy()
    own = test.at_temperature
    dis = longest_run(own & (i < 0), -i)
    chg = longest_run(own & (i > 0), i)
    for rows, what in ((dis, "discharge"), (chg, "charge")):
        if len(rows) < 10:
            raise DataError(test.sources[0] if test.sources else test.name, f"no slow {what} found in this OCV test")
    dis_v = v[dis] + _resistive_drop(v, i, dis)
    chg_v = v[chg] - _resistive_drop(v, i, chg)
    z = balance.soc
    dis_curve = _on_grid(z[dis], dis_v)
    chg_curve = _on_grid(z[chg], chg_v)
    mid = len(SOC_GRID) // 2
    gap = chg_curve[mid] - dis_curve[mid]
    ocv = np.where(SOC_GRID < SOC_GRID[mid], chg_curve - SOC_GRID * gap, dis_curve + (1.0 - SOC_GRID) * gap)
    envelope = np.clip(0.5 * (chg_curve - dis_curve), 0.0, None)
    return OcvCurve(test.temperature_c, ocv, envelope, float(v[dis].min()), float(v[chg].max()))


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
