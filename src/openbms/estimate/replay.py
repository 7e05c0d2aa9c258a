"""Capacity by replaying the cell model over a whole record: for fleet analytics, offline.

A car's filter has to decide as it drives; a fleet's analysis has the whole week at once. It
replays the model over the record from a guessed start (SoC, hysteresis) with a guessed
capacity and resistance scale, and keeps the guess under which the model's voltage agrees
with the measured one at every rest. Rests are where LFP's voltage means something: no
resistive drop, and the hysteresis, which follows the charge moved at the *guessed* capacity,
is replayed with it rather than taken from a filter that assumed another. Each rest counts as
one look however long it lasts: its samples share one OCV error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..cell import CellModel, simulate

REST_S = 1800.0  # a sample is at rest this long after the current last flowed
REST_C = 0.02  # |current| below this fraction of 1C counts as no current


@dataclass(frozen=True)
class ReplayFit:
    capacity_ah: float  # at 25 degC
    capacity_bound_ah: float  # 3 sigma
    soc0: float
    hysteresis0: float
    resistance_scale: float
    rests: int  # rest periods that informed the fit
    rmse_v: float  # at the rest samples


def fit_capacity_by_replay(model: CellModel, time_s, current_a, voltage_v, temperature_c=25.0, soc0_guess=0.5,
                           ocv_std_v: float = 0.003, rest_s: float = REST_S) -> ReplayFit | None:
    """Least squares of the model's rest voltages against the measured ones over (capacity scale,
    initial SoC, initial hysteresis, resistance scale); None when the record has fewer than two
    rests. The bound takes the larger of the fit's residual and `ocv_std_v` as each rest's error."""
    time_s = np.asarray(time_s, dtype=float)
    current = np.asarray(current_a, dtype=float)
    voltage = np.asarray(voltage_v, dtype=float)
    temperature = np.broadcast_to(np.asarray(temperature_c, dtype=float), time_s.shape)
    q = float(model.param("capacity_ah", 25.0))
    rest, period = rest_samples(time_s, current, REST_C * q, rest_s)
    n_rests = len(np.unique(period[rest]))
    if n_rests < 2:
        return None
    # every rest one look: its samples weighted by 1/sqrt(their number)
    weight = 1.0 / np.sqrt(np.bincount(period[rest])[period[rest]])

    def replay(sets):
        """Rest-sample residuals for each parameter set, all replayed at once as cells of one batch."""
        models = [model.scaled(capacity=p[0], resistance=p[3]) for p in sets]
        sim = simulate(models, time_s, np.repeat(current[:, None], len(sets), axis=1), temperature[:, None],
                       soc0=[p[1] for p in sets], hysteresis0=[p[2] for p in sets])
        return (sim.voltage_v[rest] - voltage[rest, None]) * weight[:, None]

    def jacobian(p):
        sets = [p] + [p + step * e for e in np.eye(len(p))]
        columns = replay(sets)
        return (columns[:, 1:] - columns[:, :1]) / step

    step = 1e-3
    fit = least_squares(lambda p: replay([p])[:, 0], x0=[1.0, soc0_guess, 0.0, 1.0], jac=jacobian,
                        bounds=([0.3, 0.0, -1.0, 0.2], [1.5, 1.0, 1.0 - step, 5.0]), x_scale=[0.1, 0.1, 0.5, 0.5],
                        xtol=1e-4, ftol=1e-4)
    rmse = float(np.sqrt(np.sum(fit.fun**2) / n_rests))
    sigma = max(rmse, ocv_std_v)
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * sigma**2
        scale_std = float(np.sqrt(max(cov[0, 0], 0.0)))
    except np.linalg.LinAlgError:
        scale_std = float("inf")
    return ReplayFit(capacity_ah=q * fit.x[0], capacity_bound_ah=3.0 * q * scale_std, soc0=float(fit.x[1]),
                     hysteresis0=float(fit.x[2]), resistance_scale=float(fit.x[3]), rests=n_rests, rmse_v=rmse)


def rest_samples(time_s: np.ndarray, current: np.ndarray, threshold_a: float, rest_s: float):
    """(mask of samples `rest_s` or more after the current last flowed, rest period number per sample)."""
    flowing = np.abs(current) > threshold_a
    last_flow = np.maximum.accumulate(np.where(flowing, time_s, -np.inf))
    rest = (time_s - last_flow >= rest_s) & ~flowing
    period = np.cumsum(flowing)  # a new period starts at every flowing sample
    _, period = np.unique(period, return_inverse=True)
    return rest, period
