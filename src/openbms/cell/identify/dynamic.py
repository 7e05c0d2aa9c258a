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
    uncertainty: dict  # one standard deviation of the fitted parameters, from the Jacobian at the optimum
    on_bound: list[str]  # parameters the search left on a bound


@dataclass(frozen=True)
class DynamicData:
    """One dynamic test ready to fit: its SoC path, the model OCV along it, and where it starts."""

    test: CellTest
    balance: ChargeBalance
    soc: np.ndarray
    ocv_v: np.ndarray


class _Problem:
    """Everything about a test that does not change with γ and τ, computed once."""

    def __init__(self, data: DynamicData, m_v: float, knots: np.ndarray):
        df = data.test.data
        self.t = df[TIME].to_numpy()
        self.i = df[CURRENT].to_numpy()
        self.moved_per_amp = soc_per_amp(data.test, data.balance)
        self.h0 = data.balance.hysteresis0
        self.rows = data.test.fit_rows
        self.y = (df[VOLTAGE].to_numpy() - data.ocv_v)[self.rows]
        self.m_v = m_v
        self.hats = hat_basis(data.soc[self.rows], knots)
        self.h = np.empty_like(self.i)
        self.s = np.empty_like(self.i)
        self.rc = np.empty_like(self.i)

    def regressors(self, gamma: float, taus: np.ndarray, visited: np.ndarray) -> np.ndarray:
        """Columns [s, i·hats, i_R1·hats, ...]; leaves the dynamic hysteresis state in self.h."""
        hysteresis_states(self.i, self.moved_per_amp, gamma, self.h0, self.h0, self.h, self.s)
        hats = self.hats[:, visited]
        columns = [self.s[self.rows, None], self.i[self.rows, None] * hats]
        for tau in taus:
            rc_current(self.t, self.i, tau, self.rc)
            columns.append(self.rc[self.rows, None] * hats)
        return np.hstack(columns)

    def target(self) -> np.ndarray:
        """The voltage the linear part must explain: measured − OCV − M·h (after `regressors`)."""
        return self.y - self.m_v * self.h[self.rows]


class _Joint:
    """The tests at one temperature, fitted together: one set of parameters for all of them."""

    def __init__(self, data: list[DynamicData], m_v: float, knots: np.ndarray):
        self.problems = [_Problem(d, m_v, knots) for d in data]
        self.visited = sum(p.hats.sum(axis=0) for p in self.problems) >= MIN_KNOT_SUPPORT
        self.n_rows = sum(len(p.y) for p in self.problems)

    def design(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gamma, taus = np.exp(x[0]), np.exp(x[1:])
        blocks = [(p.regressors(gamma, taus, self.visited), p.target()) for p in self.problems]
        return np.vstack([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])

    def resistances(self, coef: np.ndarray) -> np.ndarray:
        """(1 + n_rc, n_k) resistance knots from the coefficients, unvisited knots filled."""
        fitted = coef[1:].reshape(-1, int(self.visited.sum()))
        knots = np.flatnonzero(self.visited)
        nearest = knots[np.argmin(np.abs(np.arange(len(self.visited))[:, None] - knots[None, :]), axis=1)]
        return fitted[:, np.searchsorted(knots, nearest)]

    def solve(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients [M0, resistance knots...] ≥ 0 and the RMSE, for x = log [γ, τ_1..n]."""
        X, y = self.design(x)
        coef, sse = _nonnegative_lstsq(X, y)
        return coef, float(np.sqrt(max(sse, 0.0) / len(y)))

    def residual(self, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
        X, y = self.design(x)
        return X @ coef - y

    def uncertainty(self, x: np.ndarray, coef: np.ndarray, rmse: float) -> np.ndarray:
        """Standard deviations of [log γ, log τ..., coefficients...] from the Jacobian at the optimum.

        Formal (white-noise) deviations: the errors of a fit to a voltage series are
        correlated in time, so these are lower bounds, useful to see which
        parameters the data hardly determine.
        """
        X, _ = self.design(x)
        base = self.residual(x, coef)
        columns = []
        for k in range(len(x)):
            step = np.zeros_like(x)
            step[k] = 1e-4
            columns.append((self.residual(x + step, coef) - base) / 1e-4)
        active = coef > 0  # coefficients held at zero by the non-negativity are not free
        jacobian = np.hstack([np.column_stack(columns), X[:, active]])
        information = jacobian.T @ jacobian
        covariance = rmse**2 * np.linalg.pinv(information)
        std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        out = np.zeros(len(x) + len(coef))
        out[: len(x)] = std[: len(x)]
        out[len(x) :][active] = std[len(x) :]
        return out


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


def fit_dynamic(data: list[DynamicData], m_v: float, n_rc: int = 3, knots: np.ndarray = RESISTANCE_SOC) -> DynamicFit:
    """Best ESC parameters for the dynamic tests at one temperature, given their SoC, the model OCV
    along them and M."""
    if n_rc not in TAU_STARTS_S:
        raise ValueError(f"n_rc must be 1, 2 or 3, got {n_rc}")
    joint = _Joint(data, m_v, knots)
    names = ", ".join(d.test.name for d in data)
    if not joint.visited.any():
        raise ValueError(f"{names}: too short to fit resistances ({joint.n_rows} rows)")
    x0 = np.log([GAMMA_START, *TAU_STARTS_S[n_rc]])
    result = minimize(
        lambda x: joint.solve(np.clip(x, *LOG_BOUNDS))[1],
        x0,
        method="Nelder-Mead",
        options={"xatol": 1e-3, "fatol": 1e-7, "maxiter": 400 * (n_rc + 1)},
    )
    x = np.clip(result.x, *LOG_BOUNDS)
    coef, rmse = joint.solve(x)
    std = joint.uncertainty(x, coef, rmse)
    taus = np.exp(x[1:])
    order = np.argsort(taus)
    resistances = joint.resistances(coef)
    first = data[0].balance
    return DynamicFit(
        temperature_c=data[0].test.temperature_c,
        capacity_ah=first.capacity_ah,
        coulombic_efficiency=float(np.mean([d.balance.coulombic_efficiency for d in data])),
        hysteresis_rate=float(np.exp(x[0])),
        m0_v=float(coef[0]),
        m_v=m_v,
        rc_tau_s=taus[order],
        r0_ohm=resistances[0],
        rc_r_ohm=resistances[1:][order],
        rmse_v=rmse,
        uncertainty=_uncertainty_report(x, coef, std, order, joint.visited, knots),
        on_bound=_on_bounds(x, order),
    )


def _uncertainty_report(x, coef, std, order, visited, knots) -> dict:
    """Relative standard deviations (γ, τ: of the log, i.e. relative; M0 and R0 at mid-SoC: ±value)."""
    n = len(x)
    mid = int(np.argmin(np.abs(knots[visited] - 0.5)))
    n_visited = int(visited.sum())
    return {
        "hysteresis_rate_rel": round(float(std[0]), 4),
        "rc_tau_rel": [round(float(std[1 + j]), 4) for j in order],
        "m0_v": round(float(std[n]), 6),
        "r0_mid_ohm": round(float(std[n + 1 + mid]), 7),
        "rc_r_mid_ohm": [round(float(std[n + 1 + (1 + j) * n_visited + mid]), 7) for j in order],
    }


def _on_bounds(x: np.ndarray, order: np.ndarray) -> list[str]:
    low, high = LOG_BOUNDS
    names = ["hysteresis rate γ"] + [f"RC time constant τ{k + 1}" for k in range(len(order))]
    values = [x[0]] + [x[1 + j] for j in order]
    bound_of = {low: f"{np.exp(low):g}", high: f"{np.exp(high):g}"}
    return [
        f"{name} = {bound_of[b]} (its {'lower' if b == low else 'upper'} bound)"
        for name, value in zip(names, values)
        for b in (low, high)
        if abs(value - b) < 1e-3
    ]
