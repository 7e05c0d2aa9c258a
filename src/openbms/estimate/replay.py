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
REST_LOOK_S = 300.0  # a rest's voltage is read at most this often: it relaxes over hours, not seconds
REPLAY_STEP_S = 60.0  # the replay steps the current's mean over up to this long, one sign at a time


@dataclass(frozen=True)
class ReplayFit:
    """One value per cell (floats when one voltage column was given)."""

    capacity_ah: np.ndarray  # at 25 degC
    capacity_bound_ah: np.ndarray  # 3 sigma
    soc0: np.ndarray
    hysteresis0: np.ndarray
    resistance_scale: np.ndarray
    rests: int  # rest periods that informed the fit
    rmse_v: np.ndarray  # at the rest samples


N_PARAMS = 4  # capacity scale, initial SoC, initial hysteresis, resistance scale
STEP = 1e-3  # finite-difference step of the Jacobian


def fit_capacity_by_replay(
    model: CellModel,
    time_s,
    current_a,
    voltage_v,
    temperature_c=25.0,
    soc0_guess=0.5,
    ocv_std_v: float = 0.003,
    rest_s: float = REST_S,
    start_from: ReplayFit | None = None,
) -> ReplayFit | None:
    """Least squares of the model's rest voltages against the measured ones over (capacity scale,
    initial SoC, initial hysteresis, resistance scale) of each cell of a series string, voltage_v
    (time,) or (time, cells) under one current; None when the record has fewer than two rests. Each
    cell is its own model: the mean of several cells' voltages is not one cell's on LFP's stepped
    OCV (a median cell read 3 % low). The bound takes the larger of a cell's residual and
    `ocv_std_v` as each rest's error; a NaN voltage (a faulty sensor) is left out. Every cell starts
    from `start_from`, by default the fit of the cells' median voltage."""
    time_s = np.asarray(time_s, dtype=float)
    current = np.asarray(current_a, dtype=float)
    voltage = np.asarray(voltage_v, dtype=float)
    one_cell = voltage.ndim == 1
    voltage = voltage.reshape(len(time_s), -1)
    n_cells = voltage.shape[1]
    temperature = np.broadcast_to(np.asarray(temperature_c, dtype=float), time_s.shape)
    q = float(model.param("capacity_ah", 25.0))
    rest, period = rest_samples(time_s, current, REST_C * q, rest_s)
    n_rests = len(np.unique(period[rest]))
    if n_rests < 2:
        return None
    if start_from is None and n_cells > 1:  # the median cell's fit costs a cell's and saves joint iterations
        start_from = fit_capacity_by_replay(
            model, time_s, current, np.nanmedian(voltage, axis=1), temperature, soc0_guess, ocv_std_v, rest_s
        )
    start = (
        [1.0, soc0_guess, 0.0, 1.0]
        if start_from is None
        else [start_from.capacity_ah / q, start_from.soc0, start_from.hysteresis0, start_from.resistance_scale]
    )
    measured = voltage[rest]
    # every rest one look: its samples weighted by 1/sqrt(their number)
    weight = np.where(np.isfinite(measured), 1.0 / np.sqrt(np.bincount(period[rest])[period[rest]])[:, None], 0.0)
    measured = np.nan_to_num(measured)
    time_s, current, temperature, rest = _coarse(time_s, current, temperature, rest)
    columns = np.repeat(np.arange(n_cells), N_PARAMS + 1)  # each cell with its Jacobian's variants

    def replay(sets: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Rest-sample residuals of parameter sets (n, 4) of `cells`, replayed at once as one batch."""
        models = [model.scaled(capacity=p[0], resistance=p[3]) for p in sets]
        sim = simulate(
            models,
            time_s,
            np.repeat(current[:, None], len(sets), axis=1),
            temperature[:, None],
            soc0=sets[:, 1],
            hysteresis0=sets[:, 2],
            check_range=False,
        )
        return (sim.voltage_v[rest] - measured[:, cells]) * weight[:, cells]

    def residuals(x):
        return replay(x.reshape(n_cells, N_PARAMS), np.arange(n_cells)).ravel(order="F")

    def jacobian(x):
        p = x.reshape(n_cells, N_PARAMS)
        sets = np.concatenate([p[:, None, :], p[:, None, :] + STEP * np.eye(N_PARAMS)], axis=1)
        r = replay(sets.reshape(-1, N_PARAMS), columns).reshape(len(measured), n_cells, N_PARAMS + 1)
        jac = np.zeros((len(measured), n_cells, n_cells, N_PARAMS))  # each cell's rows on its own parameters
        jac[:, np.arange(n_cells), np.arange(n_cells)] = (r[..., 1:] - r[..., :1]) / STEP
        return jac.transpose(1, 0, 2, 3).reshape(n_cells * len(measured), n_cells * N_PARAMS)

    lower, upper = np.tile([0.3, 0.0, -1.0, 0.2], n_cells), np.tile([1.5, 1.0, 1.0 - STEP, 5.0], n_cells)
    fit = least_squares(
        residuals,
        x0=np.clip(np.tile(start, n_cells), lower, upper),
        jac=jacobian,
        bounds=(lower, upper),
        x_scale=np.tile([0.1, 0.1, 0.5, 0.5], n_cells),
        xtol=1e-4,
        ftol=1e-4,
    )
    x = fit.x.reshape(n_cells, N_PARAMS)
    rows = len(measured)
    rmse = np.sqrt(np.sum(fit.fun.reshape(n_cells, rows) ** 2, axis=1) / n_rests)
    scale_std = np.array(
        [
            _scale_std(fit.jac[c * rows : (c + 1) * rows, c * N_PARAMS : (c + 1) * N_PARAMS], max(rmse[c], ocv_std_v))
            for c in range(n_cells)
        ]
    )
    values = dict(
        capacity_ah=q * x[:, 0],
        capacity_bound_ah=3.0 * q * scale_std,
        soc0=x[:, 1],
        hysteresis0=x[:, 2],
        resistance_scale=x[:, 3],
        rmse_v=rmse,
    )
    return ReplayFit(rests=n_rests, **{k: float(v[0]) if one_cell else v for k, v in values.items()})


def _scale_std(jac: np.ndarray, sigma: float) -> float:
    """The capacity scale's standard deviation from one cell's Jacobian block."""
    try:
        return float(np.sqrt(max(np.linalg.inv(jac.T @ jac)[0, 0], 0.0))) * sigma
    except np.linalg.LinAlgError:
        return float("inf")


def _coarse(time_s, current, temperature, rest):
    """The record on a coarser grid: steps of up to REPLAY_STEP_S whose current is its mean over the step
    (charge kept) and never changes sign within one (charge throughput, and so hysteresis, kept); a stretch
    without current is one step; every rest look stays a grid point. The replay's cost is per step and cell."""
    step = time_s // REPLAY_STEP_S
    sign = np.sign(current)
    node = np.r_[True, ((step[1:] != step[:-1]) & (sign[1:] != 0)) | (sign[1:] != sign[:-1]) | rest[1:]]
    index = np.flatnonzero(node)
    dt = np.diff(time_s, append=time_s[-1])
    duration = np.add.reduceat(dt, index)  # zero only for a last step of one sample: its own current
    mean = np.divide(np.add.reduceat(current * dt, index), duration, out=current[index].copy(), where=duration > 0)
    return time_s[index], mean, temperature[index], rest[index]


def rest_samples(time_s: np.ndarray, current: np.ndarray, threshold_a: float, rest_s: float):
    """(mask of samples `rest_s` or more after the current last flowed, one per REST_LOOK_S, rest period number
    per sample)."""
    flowing = np.abs(current) > threshold_a
    last_flow = np.maximum.accumulate(np.where(flowing, time_s, -np.inf))
    look = time_s // REST_LOOK_S
    rest = (time_s - last_flow >= rest_s) & ~flowing & np.r_[True, look[1:] != look[:-1]]
    period = np.cumsum(flowing)  # a new period starts at every flowing sample
    _, period = np.unique(period, return_inverse=True)
    return rest, period
