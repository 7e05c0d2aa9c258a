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
N_FIXED = len(PARAM_COLUMNS)
SIGN_THRESHOLD_A = 1e-6  # below this the current counts as zero for the instantaneous hysteresis


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
def simulate_kernel(time_s, current, temperature, model_index, axis, tables, knots, ocv_t, z0, dz, ocv_tables,
                    soc, h, s, i_rc, voltage, soc_out):
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
            if abs(i) > SIGN_THRESHOLD_A:
                s[c] = 1.0 if i > 0 else -1.0
            v = ocv_at(z, temperature[k, c], ocv_t, z0, dz, ocv_tables[m])
            v += p[3] * s[c] + p[4] * h[c] + resistance_at(p, r_offset, z, knots) * i
            for j in range(n_rc):
                v += resistance_at(p, r_offset + (j + 1) * n_k, z, knots) * i_rc[c, j]
            voltage[k, c] = v
            soc_out[k, c] = z
            if k + 1 < n_time:
                dt = time_s[k + 1] - time_s[k]
                eta = p[1] if i > 0 else 1.0
                moved = eta * i * dt / (3600.0 * p[0])
                soc[c] = z + moved
                decay = np.exp(-abs(moved) * p[2])
                sign = 1.0 if i > 0 else (-1.0 if i < 0 else 0.0)
                h[c] = decay * h[c] + (1.0 - decay) * sign
                for j in range(n_rc):
                    a = np.exp(-dt / p[N_FIXED + j])
                    i_rc[c, j] = a * i_rc[c, j] + (1.0 - a) * i


@njit(cache=True)
def hysteresis_states(current, moved_per_amp, rate, h0, s0, h_out, s_out):
    """Dynamic (h) and instantaneous (s) hysteresis along one series, for identification.

    `moved_per_amp[k]` is the SoC moved per amp during step k (η·dt/3600Q).
    """
    h, s = h0, s0
    for k in range(current.shape[0]):
        i = current[k]
        if abs(i) > SIGN_THRESHOLD_A:
            s = 1.0 if i > 0 else -1.0
        h_out[k] = h
        s_out[k] = s
        decay = np.exp(-abs(moved_per_amp[k] * i) * rate)
        sign = 1.0 if i > 0 else (-1.0 if i < 0 else 0.0)
        h = decay * h + (1.0 - decay) * sign


@njit(cache=True)
def rc_current(time_s, current, tau, out):
    """Current through the resistor of one RC branch, zero at the start."""
    x = 0.0
    for k in range(current.shape[0]):
        out[k] = x
        if k + 1 < current.shape[0]:
            a = np.exp(-(time_s[k + 1] - time_s[k]) / tau)
            x = a * x + (1.0 - a) * current[k]
