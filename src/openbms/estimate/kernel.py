"""The compiled estimator: SoC (sigma-point or extended Kalman filter), current-sensor
offset, resistance and capacity, and power limits, batched over cells.

Per cell the filter state is x = [z, h, b, g]: SoC, dynamic hysteresis, the current
sensor's offset (measured = true + b) and the inverse capacity scale g (the cell holds
Q/g), so a cell whose capacity differs from the model's is followed as it drives. The
RC branch currents follow the measured current deterministically. The voltage is
nonlinear only in z (OCV and the SoC-dependent resistances), so the sigma points take
just three distinct z values. The capacity reported as state of health comes from an
effective-variance weighted total least squares of SoC moved against charge counted
between confident SoC estimates, with its own bound; the resistance scale ρ from
voltage steps at current steps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..cell.kernels import N_FIXED, SIGN_THRESHOLD_A, _axis_position, ocv_at

# Per-cell scalar state columns; the RC branch currents follow.
Z, H, B, G, S, RHO, RHO_VAR, S_INV, SXX, SXY, ANCHOR_Z, ANCHOR_VAR, MOVED, ANCHORED, PREV_I, PREV_V, PREV_S, PREV_VRC = range(18)
N_STATE = 18
N_X = 4  # filter states: the first four columns
# Options array.
(O_SIGMA_V, O_SENSOR_V, O_SIGMA_I, O_GAIN_STD, O_Q_OFFSET, O_ANCHOR_STD, O_MIN_MOVED, O_FADE, O_STEP_C,
 O_Q_RHO, O_PRIOR_S_VAR, O_SOC_MIN, O_SOC_MAX, O_MAX_CHARGE_C, O_MAX_DISCHARGE_C, O_V_MIN, O_V_MAX, O_GATE,
 O_CORRELATION_S, O_Q_CAPACITY, O_ADAPT_RESISTANCE, O_JOINT_VAR) = range(22)
N_OPTIONS = 22
# Health outputs.
OUT_OFFSET, OUT_HYST, OUT_CAPACITY_SCALE, OUT_CAPACITY_SCALE_STD, OUT_RHO, OUT_RHO_STD = range(6)
N_HEALTH = 6
# Limit outputs per horizon: max charge current, max discharge current (both ≥ 0), their powers.
N_LIMITS = 4
SIGMA_H = np.sqrt(3.0)  # central-difference step (Plett's CDKF), weights (h²−n)/h² and 1/2h²
BISECTIONS = 18


@njit(cache=True, inline="always")
def _lerp(table, k, u, col):
    return table[k, col] + u * (table[k + 1, col] - table[k, col]) if table.shape[0] > 1 else table[0, col]


@njit(cache=True, inline="always")
def _resistance(table, k, u, offset, z, knots):
    """R(z, T) from its knot columns, bilinear."""
    n_k = knots.shape[0]
    if n_k == 1:
        return _lerp(table, k, u, offset)
    j, w = _axis_position(knots, z)
    return _lerp(table, k, u, offset + j) * (1.0 - w) + _lerp(table, k, u, offset + j + 1) * w


@njit(cache=True, inline="always")
def _static_part(z, t, i, s, i_rc, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tab, rho, n_rc):
    """(OCV + M0·s + ρ·R0·i + Σ ρ·R_j·i_Rj, ρ·ΣR) at SoC z: the voltage without h and b."""
    n_k = knots.shape[0]
    base = N_FIXED + n_rc
    r0 = _resistance(tab, kt, ut, base, z, knots)
    v = ocv_at(z, t, ocv_t, z0, dz, ocv_tab) + _lerp(tab, kt, ut, 3) * s + rho * r0 * i
    r_sum = r0
    for j in range(n_rc):
        rj = _resistance(tab, kt, ut, base + (j + 1) * n_k, z, knots)
        v += rho * rj * i_rc[j]
        r_sum += rj
    return v, rho * r_sum


@njit(cache=True, inline="always")
def _cholesky(P, L):
    """Lower Cholesky factor of a small covariance, each pivot floored so it never fails."""
    n = P.shape[0]
    for j in range(n):
        acc = P[j, j]
        for f in range(j):
            acc -= L[j, f] * L[j, f]
        L[j, j] = np.sqrt(max(acc, 1e-16))
        for r in range(j + 1, n):
            acc = P[r, j]
            for f in range(j):
                acc -= L[r, f] * L[j, f]
            L[r, j] = acc / L[j, j]
        for r in range(j):
            L[r, j] = 0.0


@njit(cache=True)
def _predict_voltage(I, horizon, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tab, rho, q_ah, n_rc):
    """Voltage and SoC after holding current I for `horizon` seconds from the present state."""
    eta = _lerp(tab, kt, ut, 1) if I > 0 else 1.0
    moved = eta * I * horizon / (3600.0 * q_ah)
    z_end = z + moved
    decay = np.exp(-abs(moved) * _lerp(tab, kt, ut, 2))
    sign = 1.0 if I > 0 else (-1.0 if I < 0 else 0.0)
    h_end = decay * h + (1.0 - decay) * sign
    n_k = knots.shape[0]
    base = N_FIXED + n_rc
    v = ocv_at(z_end, t, ocv_t, z0, dz, ocv_tab) + _lerp(tab, kt, ut, 3) * sign + _lerp(tab, kt, ut, 4) * h_end
    v += rho * _resistance(tab, kt, ut, base, z_end, knots) * I
    for j in range(n_rc):
        a = np.exp(-horizon / _lerp(tab, kt, ut, N_FIXED + j))
        v += rho * _resistance(tab, kt, ut, base + (j + 1) * n_k, z_end, knots) * (a * i_rc[j] + (1.0 - a) * I)
    return v, z_end


@njit(cache=True)
def _limit(direction, i_max, horizon, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tab, rho, q_ah, n_rc, opt):
    """Largest |I| in `direction` (+1 charge, −1 discharge) that keeps voltage and SoC in bounds
    at the start and at the end of the horizon, and the power at the lower of those voltages."""
    lo, hi = 0.0, i_max
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        v0, _ = _predict_voltage(direction * mid, 1e-9, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz,
                                 ocv_tab, rho, q_ah, n_rc)
        v1, z_end = _predict_voltage(direction * mid, horizon, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz,
                                     ocv_tab, rho, q_ah, n_rc)
        if direction > 0:
            ok = max(v0, v1) <= opt[O_V_MAX] and z_end <= opt[O_SOC_MAX]
        else:
            ok = min(v0, v1) >= opt[O_V_MIN] and z_end >= opt[O_SOC_MIN]
        if ok:
            lo = mid
        else:
            hi = mid
    v0, _ = _predict_voltage(direction * lo, 1e-9, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tab,
                             rho, q_ah, n_rc)
    v1, _ = _predict_voltage(direction * lo, horizon, z, h, i_rc, t, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tab,
                             rho, q_ah, n_rc)
    return lo, lo * min(v0, v1)


@njit(cache=True)
def estimate_kernel(time_s, current, voltage, temperature, model_index, axis, tables, knots, ocv_t, z0, dz,
                    ocv_tables, opt, sigma_points, with_health, adapt, horizons,
                    state, cov, i_rc, soc_out, std_out, health_out, limits_out):
    """Run the estimator over (time, cells); `state`, `cov` and `i_rc` carry over between calls."""
    n_time, n_cells = current.shape
    n_rc = i_rc.shape[1]
    n_h = horizons.shape[0]
    record_limits = limits_out.shape[0] == n_time
    Xz = np.empty(3)
    Gv = np.empty(3)
    Rv = np.empty(3)
    L = np.empty((N_X, N_X))
    Y = np.empty((N_X, 2))
    pxy = np.empty(N_X)
    Hrow = np.empty(N_X)
    FP = np.empty((N_X, N_X))
    for k in range(n_time):
        dt = time_s[k + 1] - time_s[k] if k + 1 < time_s.shape[0] else 0.0  # time_s may run one past
        for c in range(n_cells):
            m = model_index[c]
            tab = tables[m]
            t = temperature[k, c]
            kt, ut = _axis_position(axis, t)
            st = state[c]
            P = cov[c]
            i = current[k, c]
            v_meas = voltage[k, c]
            if abs(i) > SIGN_THRESHOLD_A:
                st[S] = 1.0 if i > 0 else -1.0
            rho = st[RHO] if adapt and opt[O_ADAPT_RESISTANCE] > 0 else 1.0
            m_v = _lerp(tab, kt, ut, 4)
            # --- measurement update -------------------------------------------------
            if sigma_points:
                _cholesky(P, L)
                Xz[0] = st[Z]
                Xz[1] = st[Z] + SIGMA_H * L[0, 0]
                Xz[2] = st[Z] - SIGMA_H * L[0, 0]
                for q in range(3):
                    Gv[q], Rv[q] = _static_part(Xz[q], t, i, st[S], i_rc[c], tab, kt, ut, knots, ocv_t, z0, dz,
                                                ocv_tables[m], rho, n_rc)
                w0 = (SIGMA_H * SIGMA_H - N_X) / (SIGMA_H * SIGMA_H)
                w = 1.0 / (2.0 * SIGMA_H * SIGMA_H)
                y0 = Gv[0] + m_v * st[H] - Rv[0] * st[B]
                y_mean = w0 * y0
                for j in range(N_X):  # y along each sigma point x ± h·L[:, j]
                    for side in range(2):
                        sgn = 1.0 if side == 0 else -1.0
                        q = (1 + side) if j == 0 else 0
                        Y[j, side] = (Gv[q] + m_v * (st[H] + sgn * SIGMA_H * L[1, j])
                                      - Rv[q] * (st[B] + sgn * SIGMA_H * L[2, j]))
                        y_mean += w * Y[j, side]
                pyy = w0 * (y0 - y_mean) ** 2
                for d in range(N_X):
                    pxy[d] = 0.0
                for j in range(N_X):
                    for side in range(2):
                        sgn = 1.0 if side == 0 else -1.0
                        e = Y[j, side] - y_mean
                        pyy += w * e * e
                        for d in range(N_X):
                            pxy[d] += w * sgn * SIGMA_H * L[d, j] * e
            else:
                g0, r_sum = _static_part(st[Z], t, i, st[S], i_rc[c], tab, kt, ut, knots, ocv_t, z0, dz,
                                         ocv_tables[m], rho, n_rc)
                g1, _ = _static_part(st[Z] + 1e-3, t, i, st[S], i_rc[c], tab, kt, ut, knots, ocv_t, z0, dz,
                                     ocv_tables[m], rho, n_rc)
                Hrow[0] = (g1 - g0) / 1e-3
                Hrow[1] = m_v
                Hrow[2] = -r_sum
                Hrow[3] = 0.0
                y_mean = g0 + m_v * st[H] - r_sum * st[B]
                pyy = 0.0
                for d in range(N_X):
                    pxy[d] = 0.0
                    for e2 in range(N_X):
                        pxy[d] += P[d, e2] * Hrow[e2]
                    pyy += Hrow[d] * pxy[d]
            # Model error is slow and correlated: one independent look per correlation time.
            if k + 1 < time_s.shape[0]:
                step = time_s[k + 1] - time_s[k]
            else:
                step = time_s[k] - time_s[k - 1] if k > 0 else 1.0
            pyy += opt[O_SIGMA_V] ** 2 * max(1.0, opt[O_CORRELATION_S] / step)
            innovation = v_meas - y_mean
            gate = opt[O_GATE]
            if innovation * innovation > gate * gate * pyy:  # beyond the model: trust it less, not more
                pyy = innovation * innovation / (gate * gate)
            for d in range(N_X):
                st[d] += pxy[d] / pyy * innovation
            st[H] = min(1.0, max(-1.0, st[H]))
            st[G] = min(2.0, max(0.5, st[G]))
            for d in range(N_X):
                for e2 in range(N_X):
                    P[d, e2] -= pxy[d] * pxy[e2] / pyy
            for d in range(N_X):
                P[d, d] = max(P[d, d], 1e-12)
            soc_out[k, c] = st[Z]
            std_out[k, c] = np.sqrt(P[0, 0])
            q_model = _lerp(tab, kt, ut, 0)
            # --- health: resistance from steps, capacity from confident SoC pairs ----------
            if with_health:
                # The model's one-sample voltage change at a current step, as the fresh cell showed it: ρ times this.
                base = N_FIXED + n_rc
                v_rc = 0.0
                for j in range(n_rc):
                    v_rc += _resistance(tab, kt, ut, base + (j + 1) * knots.shape[0], st[Z], knots) * i_rc[c, j]
                if k > 0 and abs(i - st[PREV_I]) > opt[O_STEP_C] * q_model and time_s[k] - time_s[k - 1] < 2.5:
                    hr = _lerp(tab, kt, ut, 5) * (_resistance(tab, kt, ut, base, st[Z], knots) * (i - st[PREV_I])
                                                  + v_rc - st[PREV_VRC])
                    dv = v_meas - st[PREV_V] - _lerp(tab, kt, ut, 3) * (st[S] - st[PREV_S])
                    noise = 2.0 * opt[O_SENSOR_V] ** 2 + (0.05 * hr) ** 2
                    gain = st[RHO_VAR] * hr / (hr * hr * st[RHO_VAR] + noise)
                    st[RHO] = min(5.0, max(0.2, st[RHO] + gain * (dv - st[RHO] * hr)))
                    st[RHO_VAR] *= 1.0 - gain * hr
                st[PREV_VRC] = v_rc
                st[RHO_VAR] += opt[O_Q_RHO] * dt
                var_z = P[0, 0]
                if var_z < opt[O_ANCHOR_STD] ** 2:
                    if st[ANCHORED] == 0.0:
                        st[ANCHORED] = 1.0
                        st[ANCHOR_Z] = st[Z]
                        st[ANCHOR_VAR] = var_z
                        st[MOVED] = 0.0
                    elif abs(st[MOVED]) >= opt[O_MIN_MOVED]:
                        x = st[MOVED]
                        y = st[Z] - st[ANCHOR_Z]
                        var_x = (opt[O_GAIN_STD] * x) ** 2
                        weight = 1.0 / (var_z + st[ANCHOR_VAR] + st[S_INV] ** 2 * var_x)
                        st[SXX] = opt[O_FADE] * st[SXX] + weight * x * x
                        st[SXY] = opt[O_FADE] * st[SXY] + weight * x * y
                        prior = 1.0 / opt[O_PRIOR_S_VAR]
                        st[S_INV] = (st[SXY] + prior) / (st[SXX] + prior)
                        if adapt:  # the filter's capacity restarts from the certified estimate
                            st[G] = st[S_INV]
                            for d in range(N_X):
                                P[3, d] = 0.0
                                P[d, 3] = 0.0
                            P[3, 3] = max(1.0 / (st[SXX] + prior), opt[O_JOINT_VAR])
                        st[ANCHOR_Z] = st[Z]
                        st[ANCHOR_VAR] = var_z
                        st[MOVED] = 0.0
                prior = 1.0 / opt[O_PRIOR_S_VAR]
                s_var = 1.0 / (st[SXX] + prior)
                health_out[k, c, OUT_OFFSET] = st[B]
                health_out[k, c, OUT_HYST] = st[H]
                health_out[k, c, OUT_CAPACITY_SCALE] = 1.0 / st[S_INV]
                health_out[k, c, OUT_CAPACITY_SCALE_STD] = np.sqrt(s_var) / st[S_INV] ** 2
                health_out[k, c, OUT_RHO] = st[RHO]
                health_out[k, c, OUT_RHO_STD] = np.sqrt(st[RHO_VAR])
            if record_limits:
                q_now = q_model / (st[G] if adapt else 1.0)
                # Horizons ascend; a longer pulse also has to hold over the shorter one's span.
                ic_cap, idis_cap = opt[O_MAX_CHARGE_C] * q_model, opt[O_MAX_DISCHARGE_C] * q_model
                pc_cap, pdis_cap = np.inf, np.inf
                for n in range(n_h):
                    ic, pc = _limit(1.0, ic_cap, horizons[n], st[Z], st[H], i_rc[c], t, tab,
                                    kt, ut, knots, ocv_t, z0, dz, ocv_tables[m], st[RHO], q_now, n_rc, opt)
                    idis, pdis = _limit(-1.0, idis_cap, horizons[n], st[Z], st[H], i_rc[c],
                                        t, tab, kt, ut, knots, ocv_t, z0, dz, ocv_tables[m], st[RHO], q_now, n_rc, opt)
                    ic_cap, idis_cap = ic, idis
                    pc_cap, pdis_cap = min(pc, pc_cap), min(pdis, pdis_cap)
                    limits_out[k, c, n * N_LIMITS + 0] = ic
                    limits_out[k, c, n * N_LIMITS + 1] = idis
                    limits_out[k, c, n * N_LIMITS + 2] = pc_cap
                    limits_out[k, c, n * N_LIMITS + 3] = pdis_cap
            st[PREV_I] = i
            st[PREV_V] = v_meas
            st[PREV_S] = st[S]
            # --- time update to the next sample ------------------------------------------
            if dt > 0.0:
                eta = _lerp(tab, kt, ut, 1) if i > 0 else 1.0
                g = st[G] if adapt else 1.0
                c0 = eta * dt / (3600.0 * q_model)
                moved = c0 * g * (i - st[B])
                decay = np.exp(-abs(c0 * g * i) * _lerp(tab, kt, ut, 2))
                sign = 1.0 if i > 0 else (-1.0 if i < 0 else 0.0)
                st[Z] += moved
                st[H] = decay * st[H] + (1.0 - decay) * sign
                if with_health:
                    st[MOVED] += moved / g
                # P = F P F' + Q, where F is the identity but for dz/db = a, dz/dg = b and dh/dh = decay.
                a = -c0 * g
                b = c0 * (i - st[B]) if adapt else 0.0
                for e2 in range(N_X):
                    FP[0, e2] = P[0, e2] + a * P[2, e2] + b * P[3, e2]
                    FP[1, e2] = decay * P[1, e2]
                    FP[2, e2] = P[2, e2]
                    FP[3, e2] = P[3, e2]
                for d in range(N_X):
                    P[d, 0] = FP[d, 0] + a * FP[d, 2] + b * FP[d, 3]
                    P[d, 1] = decay * FP[d, 1]
                    P[d, 2] = FP[d, 2]
                    P[d, 3] = FP[d, 3]
                # Moved charge is uncertain by the gain error, and by the capacity unless the filter tracks it.
                relative_var = opt[O_GAIN_STD] ** 2
                if opt[O_JOINT_VAR] == 0.0:
                    relative_var += 1.0 / (st[SXX] + 1.0 / opt[O_PRIOR_S_VAR])
                P[0, 0] += (c0 * g * opt[O_SIGMA_I] * q_model) ** 2 + relative_var * moved * moved
                P[1, 1] += (0.2 * (1.0 - decay)) ** 2
                P[2, 2] += opt[O_Q_OFFSET] * q_model * q_model * dt
                P[3, 3] += opt[O_Q_CAPACITY] * dt if opt[O_JOINT_VAR] > 0 else 0.0
                for j in range(n_rc):
                    a = np.exp(-dt / _lerp(tab, kt, ut, N_FIXED + j))
                    i_rc[c, j] = a * i_rc[c, j] + (1.0 - a) * i
