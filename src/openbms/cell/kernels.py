"""Compiled inner loops of the ESC model, batched over cells.

Arrays are (time, cells). Parameters come as tables over a shared temperature
axis, one table per distinct model, and each cell names its model by index, so
one cell type or one parameter set per cell run through the same loop.
Parameter table columns: see `PARAM_COLUMNS`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Columns of a packed parameter table; then n_rc time constants; then the resistance
# knots: R0 over the SoC knots, then R_1 over them, ... (n_k·(1 + n_rc) columns).
PARAM_COLUMNS = ("capacity_ah", "coulombic_efficiency", "hysteresis_rate", "m0_v", "m_v", "step_ratio")
CAPACITY_AH, EFFICIENCY, HYSTERESIS_RATE, M0_V, M_V, STEP_RATIO = range(len(PARAM_COLUMNS))  # their columns
N_FIXED = len(PARAM_COLUMNS)
SIGN_THRESHOLD_A = 1e-6  # below this the current counts as zero for the instantaneous hysteresis


# -- the ESC model's step, one element at a time: every kernel that advances a cell calls these -------------


@njit(cache=True, inline="always")
def current_sign(i, s):
    """The instantaneous hysteresis's memory: the sign of the last current beyond SIGN_THRESHOLD_A."""
    return 1.0 if i > SIGN_THRESHOLD_A else (-1.0 if i < -SIGN_THRESHOLD_A else s)


@njit(cache=True, inline="always")
def soc_per_amp(i, efficiency, dt, soc_per_as):
    """SoC moved per amp while current i flows for dt (soc_per_as = 1 / 3600Q): charge counts η of itself."""
    return (efficiency if i > 0 else 1.0) * dt * soc_per_as


@njit(cache=True, inline="always")
def hysteresis_step(h, moved, rate, i):
    """The dynamic hysteresis after the SoC moved by `moved` under current i: it relaxes towards sign(i)
    by exp(−rate·|moved|). Returns (h, that decay)."""
    decay = exp_neg(abs(moved) * rate)
    sign = 1.0 if i > 0 else (-1.0 if i < 0 else 0.0)
    return decay * h + (1.0 - decay) * sign, decay


@njit(cache=True, inline="always")
def rc_step(i_rc, decay, i):
    """An RC branch's resistor current after a step of current i, given the branch's decay exp(−dt/τ)."""
    return decay * i_rc + (1.0 - decay) * i


@njit(cache=True, inline="always", error_model="numpy")
def exp_neg(x):
    """exp(−x) for x ≥ 0 without a library call, so that a loop around it compiles to vector
    instructions (numba has no vector exp): a Taylor polynomial at x/1024, squared ten times.
    Relative error 1e-13 up to x = 1 (a step's hysteresis decay is far below), 1e-12 up to 10,
    5e-9 up to 40; beyond, exp(−40) ≈ 4e-18 stands for 0."""
    y = min(x, 40.0) * (1.0 / 1024.0)
    e = 1.0 - y * (1.0 - y * (1.0 / 2.0) * (1.0 - y * (1.0 / 3.0) * (1.0 - y * (1.0 / 4.0) * (1.0 - y * (1.0 / 5.0)))))
    for _ in range(10):
        e *= e
    return e


@njit(cache=True, inline="always")
def _axis_position(axis, x):
    """(lower index, weight of the upper) for linear interpolation, clamped at the ends."""
    n = axis.shape[0]
    if n == 1 or x <= axis[0]:
        return 0, 0.0
    if x >= axis[n - 1]:
        return n - 2, 1.0
    k = np.searchsorted(axis, x) - 1
    return k, (x - axis[k]) / (axis[k + 1] - axis[k])


@njit(cache=True, inline="always")
def ocv_at(z, t, ocv_t, z0, dz, table):
    """OCV(z, T) from a (n_t, n_z) table on a uniform SoC grid; linear beyond its ends."""
    k, u = _axis_position(ocv_t, t)
    return ocv_at_position(z, k, u, z0, dz, table)


@njit(cache=True, inline="always")
def ocv_at_position(z, k, u, z0, dz, table):
    """`ocv_at` with the temperature position (k, u) found beforehand (a filter finds it once per cell)."""
    n_z = table.shape[1]
    pos = (z - z0) / dz
    j = int(np.floor(pos))
    if j < 0:
        j = 0
    elif j > n_z - 2:
        j = n_z - 2
    w = pos - j
    lo = table[k, j] + w * (table[k, j + 1] - table[k, j])
    if table.shape[0] == 1:
        return lo
    hi = table[k + 1, j] + w * (table[k + 1, j + 1] - table[k + 1, j])
    return lo + u * (hi - lo)


@njit(cache=True)
def ocv_lookup(z, t, ocv_t, z0, dz, table, out):
    for n in range(z.shape[0]):
        out[n] = ocv_at(z[n], t[n], ocv_t, z0, dz, table)


@njit(cache=True, inline="always")
def params_at(t, axis, table, out):
    """Fill `out` with the parameter row interpolated at temperature t."""
    k, u = _axis_position(axis, t)
    params_at_position(k, u, table, out)


@njit(cache=True, inline="always")
def params_at_position(k, u, table, out):
    """`params_at` with the temperature position (k, u) found beforehand (a caller that needs it too)."""
    for p in range(table.shape[1]):  # element by element: no array temporaries in compiled callers
        out[p] = table[0, p] if table.shape[0] == 1 else table[k, p] + u * (table[k + 1, p] - table[k, p])


@njit(cache=True, inline="always")
def resistance_at(p, offset, z, knots):
    """Resistance whose knot values start at p[offset], interpolated at SoC z."""
    n_k = knots.shape[0]
    if n_k == 1:
        return p[offset]
    k, w = _axis_position(knots, z)
    return p[offset + k] + w * (p[offset + k + 1] - p[offset + k])


@njit(cache=True)
def simulate_kernel(
    time_s,
    current,
    temperature,
    model_index,
    axis,
    tables,
    knots,
    ocv_t,
    z0,
    dz,
    ocv_tables,
    soc,
    h,
    s,
    i_rc,
    voltage,
    soc_out,
):
    """Run the ESC model forward; the state arrays (soc, h, s, i_rc) are updated in place."""
    n_time, n_cells = current.shape
    n_rc = i_rc.shape[1]
    n_k = knots.shape[0]
    r_offset = N_FIXED + n_rc
    p = np.empty(tables.shape[2])
    for c in range(n_cells):
        m = model_index[c]
        for k in range(n_time):
            i = current[k, c]
            z = soc[c]
            params_at(temperature[k, c], axis, tables[m], p)
            s[c] = current_sign(i, s[c])
            v = ocv_at(z, temperature[k, c], ocv_t, z0, dz, ocv_tables[m])
            v += p[M0_V] * s[c] + p[M_V] * h[c] + resistance_at(p, r_offset, z, knots) * i
            for j in range(n_rc):
                v += resistance_at(p, r_offset + (j + 1) * n_k, z, knots) * i_rc[c, j]
            voltage[k, c] = v
            soc_out[k, c] = z
            if k + 1 < n_time:
                dt = time_s[k + 1] - time_s[k]
                moved = soc_per_amp(i, p[EFFICIENCY], dt, 1.0 / (3600.0 * p[CAPACITY_AH])) * i
                soc[c] = z + moved
                h[c] = hysteresis_step(h[c], moved, p[HYSTERESIS_RATE], i)[0]
                for j in range(n_rc):
                    i_rc[c, j] = rc_step(i_rc[c, j], np.exp(-dt / p[N_FIXED + j]), i)


@njit(cache=True)
def hysteresis_states(current, moved_per_amp, rate, h0, s0, h_out, s_out):
    """Dynamic (h) and instantaneous (s) hysteresis along one series, for identification.

    `moved_per_amp[k]` is the SoC moved per amp during step k (η·dt/3600Q).
    """
    h, s = h0, s0
    for k in range(current.shape[0]):
        i = current[k]
        s = current_sign(i, s)
        h_out[k] = h
        s_out[k] = s
        h = hysteresis_step(h, moved_per_amp[k] * i, rate, i)[0]


@njit(cache=True)
def rc_current(time_s, current, tau, out):
    """Current through the resistor of one RC branch, zero at the start."""
    x = 0.0
    for k in range(current.shape[0]):
        out[k] = x
        if k + 1 < current.shape[0]:
            x = rc_step(x, np.exp(-(time_s[k + 1] - time_s[k]) / tau), current[k])
