"""Dynamic ESC parameters at one temperature from a dynamic (drive-cycle or pulse) test.

The hysteresis magnitude M comes from the slow tests' envelope: a drive cycle
that mostly discharges keeps h near −1, where M·h cannot be told from an OCV
offset. Given the hysteresis rate γ and the RC time constants τ, the voltage is
then linear in M0 and the resistances at their SoC knots (each resistance a
hat-function sum over the knots), which come from non-negative least squares; γ
and τ (in log space, within physical bounds) are found by a Nelder–Mead search
over that inner solution's error. Knots the test never visits take the value of
the nearest visited one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, nnls

from ...io.a123 import CellTest
from ...io.columns import CURRENT, TIME, VOLTAGE
from ..kernels import hysteresis_states, rc_current
from .coulomb import ChargeBalance, soc_per_amp

# A complete test starts rested after a full charge: hysteresis at its charge side.
START_HYSTERESIS = 1.0
TAU_STARTS_S = {1: [30.0], 2: [20.0, 400.0], 3: [30.0, 600.0, 3000.0]}
GAMMA_START = 50.0
LOG_BOUNDS = (np.log(0.05), np.log(3600.0))  # γ and τ/s: beyond an hour an RC branch is a SoC error
RESISTANCE_SOC = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0])
MIN_KNOT_SUPPORT = 20.0  # rows' worth of hat weight before a knot is fitted


@dataclass(frozen=True)
class DynamicFit:
    temperature_c: float
    capacity_ah: float
    coulombic_efficiency: float
    hysteresis_rate: float
    m0_v: float
    m_v: float
    rc_tau_s: np.ndarray  # (n_rc,)
    r0_ohm: np.ndarray  # (n_k,)
    rc_r_ohm: np.ndarray  # (n_rc, n_k)
    rmse_v: float  # of the linear fit on the fit rows


class _Problem:
    """Everything about a test that does not change with γ and τ, computed once."""

    def __init__(self, test: CellTest, balance: ChargeBalance, soc: np.ndarray, ocv_v: np.ndarray, m_v: float,
                 knots: np.ndarray):
        df = test.data
        self.t = df[TIME].to_numpy()
        self.i = df[CURRENT].to_numpy()
        self.moved_per_amp = soc_per_amp(test, balance)
        self.rows = test.fit_rows
        self.y = (df[VOLTAGE].to_numpy() - ocv_v)[self.rows]
        self.m_v = m_v
        hats = hat_basis(soc[self.rows], knots)
        self.visited = hats.sum(axis=0) >= MIN_KNOT_SUPPORT
        self.hats = hats[:, self.visited]
        self.h = np.empty_like(self.i)
        self.s = np.empty_like(self.i)
        self.rc = np.empty_like(self.i)

    def regressors(self, gamma: float, taus: np.ndarray) -> np.ndarray:
        """Columns [s, i·hats, i_R1·hats, ...]; leaves the dynamic hysteresis state in self.h."""
        hysteresis_states(self.i, self.moved_per_amp, gamma, START_HYSTERESIS, START_HYSTERESIS, self.h, self.s)
        columns = [self.s[self.rows, None], self.i[self.rows, None] * self.hats]
        for tau in taus:
            rc_current(self.t, self.i, tau, self.rc)
            columns.append(self.rc[self.rows, None] * self.hats)
        return np.hstack(columns)

    def resistances(self, coef: np.ndarray) -> np.ndarray:
        """(1 + n_rc, n_k) resistance knots from the coefficients, unvisited knots filled."""
        fitted = coef[1:].reshape(-1, self.hats.shape[1])
        knots = np.flatnonzero(self.visited)
        nearest = knots[np.argmin(np.abs(np.arange(len(self.visited))[:, None] - knots[None, :]), axis=1)]
        return fitted[:, np.searchsorted(knots, nearest)]

    def solve(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients [M0, resistance knots...] ≥ 0 and the RMSE, for x = log [γ, τ_1..n]."""
        X = self.regressors(np.exp(x[0]), np.exp(x[1:]))
        coef, sse = _nonnegative_lstsq(X, self.y - self.m_v * self.h[self.rows])
        return coef, float(np.sqrt(max(sse, 0.0) / len(self.y)))


def _nonnegative_lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """min ||Xb − y|| with b ≥ 0, through the p×p normal equations (n ≫ p)."""
    scale = np.sqrt((X**2).sum(axis=0)) + 1e-30
    Xs = X / scale
    gram = Xs.T @ Xs + 1e-12 * np.eye(X.shape[1])
    upper = np.linalg.cholesky(gram).T
    rhs = np.linalg.solve(upper.T, Xs.T @ y)
    b, norm = nnls(upper, rhs)
    return b / scale, float(y @ y - rhs @ rhs + norm**2)


def hat_basis(z: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(len(z), n_k) piecewise-linear interpolation weights of each z on the knots."""
    eye = np.eye(len(knots))
    return np.column_stack([np.interp(z, knots, eye[k]) for k in range(len(knots))])


def fit_dynamic(test: CellTest, balance: ChargeBalance, soc: np.ndarray, ocv_v: np.ndarray, m_v: float,
                n_rc: int = 3, knots: np.ndarray = RESISTANCE_SOC) -> DynamicFit:
    """Best ESC parameters for one dynamic test, given its SoC, the model OCV along it and M."""
    if n_rc not in TAU_STARTS_S:
        raise ValueError(f"n_rc must be 1, 2 or 3, got {n_rc}")
    problem = _Problem(test, balance, soc, ocv_v, m_v, knots)
    if not problem.visited.any():
        raise ValueError(f"{test.name}: too short to fit resistances ({len(problem.y)} rows)")
    x0 = np.log([GAMMA_START, *TAU_STARTS_S[n_rc]])
    result = minimize(lambda x: problem.solve(np.clip(x, *LOG_BOUNDS))[1], x0, method="Nelder-Mead",
                      options={"xatol": 1e-3, "fatol": 1e-7, "maxiter": 400 * (n_rc + 1)})
    x = np.clip(result.x, *LOG_BOUNDS)
    coef, rmse = problem.solve(x)
    taus = np.exp(x[1:])
    order = np.argsort(taus)
    resistances = problem.resistances(coef)
    return DynamicFit(
        temperature_c=test.temperature_c,
        capacity_ah=balance.capacity_ah,
        coulombic_efficiency=balance.coulombic_efficiency,
        hysteresis_rate=float(np.exp(x[0])),
        m0_v=float(coef[0]),
        m_v=m_v,
        rc_tau_s=taus[order],
        r0_ohm=resistances[0],
        rc_r_ohm=resistances[1:][order],
        rmse_v=rmse,
    )
