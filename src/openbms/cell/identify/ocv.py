"""OCV(z, T) and the hysteresis envelope from slow full discharge and charge tests.

The slow discharge and charge curves are corrected for the resistive drop (from
the voltage steps where the current starts and stops), put on the reference SoC
from the charge balance, and combined. A GITT or incremental-OCV test (small steps
with rests between them) gives each curve as its rested voltages instead.

Which curve to trust near an end depends on whether the gap between them is hysteresis.
With hysteresis, the curve that starts at an end starts on the other branch and is still
moving off it there: the OCV is the curves' midpoint where both have settled, and near
each end the curve that ends there (settled, its resistance measured at that end) shifted
by the plateau's half gap, where it was measured rather than extrapolated. Without it,
the curve that starts at an end is the better one there: it leaves a rest, its resistance
step measured on a relaxed cell, while the curve that ends there carries the polarization
it built up on the way (a cold NMC cell's C/30 charge reads 7-9 mV high near full). The
two OCVs are weighed by how clear of its scatter over SoC (the curves' error) the
plateau's steady gap stands: within one scatter it could be error alone, beyond two it
is hysteresis. The envelope is the half gap the hysteretic OCV was built with: OCV ±
envelope are the measured curves on the plateau, the trusted curve near the ends.
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
END_ONLY_SOC = 0.1  # this close to an end only the curve that ends there counts: the other is leaving its branch
MIDPOINT_SOC = 0.2  # this far from both ends both curves have settled on their branches: their midpoint counts
MID_PLATEAU = (SOC_GRID >= MIDPOINT_SOC) & (SOC_GRID <= 1.0 - MIDPOINT_SOC)
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
        curve, v_max, _ = _branch(test, balance, +1)
        v_min = float(test.data[VOLTAGE].iloc[0])  # the test starts at empty, at the cut-off
        return OcvCurve(test.temperature_c, curve, np.zeros_like(curve), v_min, v_max)
    dis_curve, v_min, dis_seen = _branch(test, balance, -1)
    chg_curve, v_max, chg_seen = _branch(test, balance, +1)
    half_gap = 0.5 * (chg_curve - dis_curve)
    plateau_half_gap = max(float(half_gap[MID_PLATEAU].mean()), 0.0)
    midpoint = 0.5 * (chg_curve + dis_curve)
    # Near each end the curve that ends there (settled on its branch, its resistance measured at that end)
    # ± the plateau's half gap; the other curve where that one was not measured, only extrapolated.
    near_empty = np.where(SOC_GRID >= dis_seen[0], dis_curve + plateau_half_gap, chg_curve - plateau_half_gap)
    near_full = np.where(SOC_GRID <= chg_seen[1], chg_curve - plateau_half_gap, dis_curve + plateau_half_gap)
    blend = MIDPOINT_SOC - END_ONLY_SOC
    to_empty = np.clip((MIDPOINT_SOC - SOC_GRID) / blend, 0.0, 1.0)
    to_full = np.clip((SOC_GRID - (1.0 - MIDPOINT_SOC)) / blend, 0.0, 1.0)
    hysteretic = midpoint + to_empty * (near_empty - midpoint) + to_full * (near_full - midpoint)
    share = hysteresis_share(half_gap[MID_PLATEAU])
    ocv = share * hysteretic + (1.0 - share) * _from_rests(dis_curve, chg_curve)
    envelope = np.clip(half_gap + (to_empty + to_full) * (plateau_half_gap - half_gap), 0.0, None)
    return OcvCurve(test.temperature_c, ocv, envelope, v_min, v_max)


def hysteresis_share(plateau_half_gap_v: np.ndarray) -> float:
    """How much of the branches' gap on the plateau to take for hysteresis: none while its steady part h is
    within its scatter over SoC σ (the curves' resistive and relaxation error alone could leave it), all once
    it stands 2σ clear of zero, in proportion between."""
    h, sigma = float(plateau_half_gap_v.mean()), float(plateau_half_gap_v.std())
    if h <= sigma:
        return 0.0
    return 1.0 if h >= 2.0 * sigma else (h - sigma) / sigma


def _from_rests(dis_curve: np.ndarray, chg_curve: np.ndarray) -> np.ndarray:
    """The OCV without hysteresis: each curve on the half where it starts from a rest (the charge curve below
    the middle, the discharge curve above), tilted to meet the other at the middle."""
    mid = len(SOC_GRID) // 2
    gap = chg_curve[mid] - dis_curve[mid]
    return np.where(SOC_GRID < SOC_GRID[mid], chg_curve - SOC_GRID * gap, dis_curve + (1.0 - SOC_GRID) * gap)


def _branch(test: CellTest, balance: ChargeBalance, sign: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """One direction's OCV curve on SOC_GRID, the voltage limit it reached and the SoC range it covered:
    from the rested voltages of a GITT test, else from the longest slow run corrected for its resistive drop."""
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
        curve, seen = _on_grid(balance.soc[rested], v[rested])
        return curve, limit, seen
    if len(run) < 10:
        raise DataError(
            test.sources[0] if test.sources else test.name,
            f"no slow {what} found in this OCV test (nor {MIN_GITT_RESTS} rests after {what} steps)",
        )
    limit = float(v[run].max() if sign > 0 else v[run].min())
    curve, seen = _on_grid(balance.soc[run], v[run] - sign * _resistive_drop(v, i, run))
    return curve, limit, seen


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


def _on_grid(z: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """A curve sampled along a run, on SOC_GRID, linear beyond the SoC it covered; and that SoC range."""
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
    return out, (float(z[0]), float(z[-1]))
