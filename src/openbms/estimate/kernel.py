"""The compiled estimator: SoC (sigma-point or extended Kalman filter), current-sensor
offset, resistance and capacity, and power limits, batched over cells.

Per cell the filter state is x = [z, h, b, g]: SoC, dynamic hysteresis, the current
sensor's offset (measured = true + b) and the inverse capacity scale g (the cell holds
Q/g), so a cell whose capacity differs from the model's is followed as it drives. The
RC branch currents follow the measured current deterministically. The voltage is
nonlinear only in z (OCV and the SoC-dependent resistances), so the sigma points take
just three distinct z values and the rest of the sigma-point algebra has a closed form
in the covariance. The capacity reported as state of health comes from an
effective-variance weighted total least squares of SoC moved against charge counted
between confident SoC estimates, with its own bound; the resistance scale ρ from
voltage steps at current steps.

Speed: cells are advanced in blocks through a chunk's time steps, so a block's state stays
in cache however many cells there are, and each cell keeps its parameters interpolated at
its temperature until the temperature changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..cell.kernels import N_FIXED, SIGN_THRESHOLD_A, _axis_position, params_at

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
CELL_BLOCK = 32  # cells advanced together through a chunk: their state and parameters stay in L1


@njit(cache=True, inline="always")
def _resistance(p, offset, j, w, n_k):
    """R from its knot values p[offset:offset + n_k] at the knot position (j, w) of the SoC."""
    return p[offset] if n_k == 1 else p[offset + j] * (1.0 - w) + p[offset + j + 1] * w


@njit(cache=True, inline="always")
def _knot_position(knots, z):
    """(lower index, weight of the upper) on the short SoC axis of the resistances, exactly as
    `_axis_position` gives it, but by counting the knots below z: no search, no branches."""
    n = knots.shape[0]
    if n == 1:
        return 0, 0.0
    j = 0
    for m in range(1, n - 1):
        j += knots[m] < z
    return j, min(1.0, max(0.0, (z - knots[j]) / (knots[j + 1] - knots[j])))


@njit(cache=True, inline="always")
def _ocv(z, kt, ut, z0, dz, table):
    """OCV(z) at the temperature position (kt, ut), interpolated as `ocv_at` does; the
    position is found once per cell and temperature instead of once per call."""
    n_z = table.shape[1]
    pos = (z - z0) / dz
    j = int(np.floor(pos))
    if j < 0:
        j = 0
    elif j > n_z - 2:
        j = n_z - 2
    w = pos - j
    lo = table[kt, j] + w * (table[kt, j + 1] - table[kt, j])
    if table.shape[0] == 1:
        return lo
    hi = table[kt + 1, j] + w * (table[kt + 1, j + 1] - table[kt + 1, j])
    return lo + ut * (hi - lo)


@njit(cache=True, inline="always")
def _static_part(z, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho):
    """(OCV + M0·s + ρ·R0·i + Σ ρ·R_j·i_Rj, ρ·ΣR) at SoC z: the voltage without h and b."""
    n_k = knots.shape[0]
    n_rc = i_rc.shape[0]
    base = N_FIXED + n_rc
    j, w = _knot_position(knots, z)
    r0 = _resistance(p, base, j, w, n_k)
    v = _ocv(z, kt, ut, z0, dz, ocv_tab) + p[3] * s + rho * r0 * i
    r_sum = r0
    for n in range(n_rc):
        rn = _resistance(p, base + (n + 1) * n_k, j, w, n_k)
        v += rho * rn * i_rc[n]
        r_sum += rn
    return v, rho * r_sum


@njit(cache=True, inline="always")
def _sigma_point_moments(x, P, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho, pxy):
    """Mean and variance of the predicted voltage, and its covariance with the state (into pxy),
    of the central-difference filter with sigma points x ± h·L[:, j] (L the Cholesky factor of P).

    The voltage is linear in h and b, so the six points off the z axis contribute exactly what
    a linearisation at z would, and that is a quadratic form in P: only L's first column
    P[:, 0]/√P00 is needed, not the factor itself.
    """
    root = np.sqrt(max(P[0, 0], 1e-16))
    l1 = P[1, 0] / root
    l2 = P[2, 0] / root
    m_v = p[4]
    g0, r0 = _static_part(x[Z], i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho)
    g_up, r_up = _static_part(x[Z] + SIGMA_H * root, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho)
    g_dn, r_dn = _static_part(x[Z] - SIGMA_H * root, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho)
    y0 = g0 + m_v * x[H] - r0 * x[B]
    y_up = g_up + m_v * (x[H] + SIGMA_H * l1) - r_up * (x[B] + SIGMA_H * l2)
    y_dn = g_dn + m_v * (x[H] - SIGMA_H * l1) - r_dn * (x[B] - SIGMA_H * l2)
    w = 1.0 / (2.0 * SIGMA_H * SIGMA_H)  # weight of each of the 8 outer points; the centre and
    y_mean = (1.0 - 2.0 * w) * y0 + w * (y_up + y_dn)  # the 6 off-axis ones average to y0
    slope = (y_up - y_dn) / (2.0 * SIGMA_H)
    along_z = m_v * l1 - r0 * l2  # linear part of the z-axis pair, counted by the quadratic form too
    off_axis = m_v * m_v * P[1, 1] - 2.0 * m_v * r0 * P[1, 2] + r0 * r0 * P[2, 2] - along_z * along_z
    e0 = y0 - y_mean
    pyy = ((1.0 - 2.0 * w) * e0 * e0 + w * ((y_up - y_mean) ** 2 + (y_dn - y_mean) ** 2)
           + max(off_axis, 0.0))
    pxy[0] = root * slope
    for d in range(1, N_X):
        pxy[d] = P[d, 0] / root * (slope - along_z) + m_v * P[d, 1] - r0 * P[d, 2]
    return y_mean, pyy


@njit(cache=True, inline="always")
def _linearised_moments(x, P, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho, pxy):
    """The extended filter's predicted voltage, HPH' and PH' (into pxy), H numerical in z."""
    m_v = p[4]
    g0, r_sum = _static_part(x[Z], i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho)
    g1, _ = _static_part(x[Z] + 1e-3, i, s, i_rc, p, knots, kt, ut, z0, dz, ocv_tab, rho)
    dv_dz = (g1 - g0) / 1e-3
    for d in range(N_X):
        pxy[d] = P[d, 0] * dv_dz + P[d, 1] * m_v - P[d, 2] * r_sum
    pyy = dv_dz * pxy[0] + m_v * pxy[1] - r_sum * pxy[2]
    return g0 + m_v * x[H] - r_sum * x[B], pyy


@njit(cache=True)
def _predict_voltage(I, horizon, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz, ocv_tab, rho, q_ah):
    """Voltage and SoC after holding current I for `horizon` seconds from the present state."""
    eta = p[1] if I > 0 else 1.0
    moved = eta * I * horizon / (3600.0 * q_ah)
    z_end = z + moved
    decay = np.exp(-abs(moved) * p[2])
    sign = 1.0 if I > 0 else (-1.0 if I < 0 else 0.0)
    h_end = decay * h + (1.0 - decay) * sign
    n_k = knots.shape[0]
    n_rc = i_rc.shape[0]
    base = N_FIXED + n_rc
    j, w = _knot_position(knots, z_end)
    v = _ocv(z_end, ocv_k, ocv_u, z0, dz, ocv_tab) + p[3] * sign + p[4] * h_end
    v += rho * _resistance(p, base, j, w, n_k) * I
    for n in range(n_rc):
        a = np.exp(-horizon / p[N_FIXED + n])
        v += rho * _resistance(p, base + (n + 1) * n_k, j, w, n_k) * (a * i_rc[n] + (1.0 - a) * I)
    return v, z_end


@njit(cache=True)
def _limit(direction, i_max, horizon, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz, ocv_tab, rho, q_ah, opt):
    """Largest |I| in `direction` (+1 charge, −1 discharge) that keeps voltage and SoC in bounds
    at the start and at the end of the horizon, and the power at the lower of those voltages."""
    lo, hi = 0.0, i_max
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        v0, _ = _predict_voltage(direction * mid, 1e-9, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz, ocv_tab,
                                 rho, q_ah)
        v1, z_end = _predict_voltage(direction * mid, horizon, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz,
                                     ocv_tab, rho, q_ah)
        if direction > 0:
            ok = max(v0, v1) <= opt[O_V_MAX] and z_end <= opt[O_SOC_MAX]
        else:
            ok = min(v0, v1) >= opt[O_V_MIN] and z_end >= opt[O_SOC_MIN]
        if ok:
            lo = mid
        else:
            hi = mid
    v0, _ = _predict_voltage(direction * lo, 1e-9, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz, ocv_tab, rho, q_ah)
    v1, _ = _predict_voltage(direction * lo, horizon, z, h, i_rc, p, knots, ocv_k, ocv_u, z0, dz, ocv_tab, rho,
                             q_ah)
    return lo, lo * min(v0, v1)


@njit(cache=True, inline="always")
def _update_health(k, time_s, dt, i, v_meas, st, P, i_rc, p, knots, adapt, opt, health_out):
    """Resistance scale from voltage steps at current steps; capacity from confident SoC pairs."""
    # The model's one-sample voltage change at a current step, as the fresh cell showed it: ρ times this.
    n_k = knots.shape[0]
    n_rc = i_rc.shape[0]
    base = N_FIXED + n_rc
    j, w = _knot_position(knots, st[Z])
    v_rc = 0.0
    for n in range(n_rc):
        v_rc += _resistance(p, base + (n + 1) * n_k, j, w, n_k) * i_rc[n]
    if k > 0 and abs(i - st[PREV_I]) > opt[O_STEP_C] * p[0] and time_s[k] - time_s[k - 1] < 2.5:
        hr = p[5] * (_resistance(p, base, j, w, n_k) * (i - st[PREV_I]) + v_rc - st[PREV_VRC])
        dv = v_meas - st[PREV_V] - p[3] * (st[S] - st[PREV_S])
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
    health_out[OUT_OFFSET] = st[B]
    health_out[OUT_HYST] = st[H]
    health_out[OUT_CAPACITY_SCALE] = 1.0 / st[S_INV]
    health_out[OUT_CAPACITY_SCALE_STD] = np.sqrt(s_var) / st[S_INV] ** 2
    health_out[OUT_RHO] = st[RHO]
    health_out[OUT_RHO_STD] = np.sqrt(st[RHO_VAR])


@njit(cache=True, inline="always")
def _time_update(dt, i, st, P, i_rc, rc_decay, p, with_health, adapt, opt):
    """SoC, hysteresis and RC currents to the next sample; P = F P F' + Q."""
    q_model = p[0]
    eta = p[1] if i > 0 else 1.0
    g = st[G] if adapt else 1.0
    c0 = eta * dt / (3600.0 * q_model)
    moved = c0 * g * (i - st[B])
    decay = np.exp(-abs(c0 * g * i) * p[2])
    sign = 1.0 if i > 0 else (-1.0 if i < 0 else 0.0)
    st[Z] += moved
    st[H] = decay * st[H] + (1.0 - decay) * sign
    if with_health:
        st[MOVED] += moved / g
    # F is the identity but for dz/db = a, dz/dg = b and dh/dh = decay.
    a = -c0 * g
    b = c0 * (i - st[B]) if adapt else 0.0
    p00, p01, p02, p03 = P[0, 0], P[0, 1], P[0, 2], P[0, 3]
    p11, p12, p13, p22, p23, p33 = P[1, 1], P[1, 2], P[1, 3], P[2, 2], P[2, 3], P[3, 3]
    f0 = (p00 + a * p02 + b * p03, p01 + a * p12 + b * p13, p02 + a * p22 + b * p23, p03 + a * p23 + b * p33)
    P[0, 0] = f0[0] + a * f0[2] + b * f0[3]
    P[0, 1] = P[1, 0] = decay * f0[1]
    P[0, 2] = P[2, 0] = f0[2]
    P[0, 3] = P[3, 0] = f0[3]
    P[1, 1] = decay * (decay * p11)
    P[1, 2] = P[2, 1] = decay * p12
    P[1, 3] = P[3, 1] = decay * p13
    # Moved charge is uncertain by the gain error, and by the capacity unless the filter tracks it.
    relative_var = opt[O_GAIN_STD] ** 2
    if opt[O_JOINT_VAR] == 0.0:
        relative_var += 1.0 / (st[SXX] + 1.0 / opt[O_PRIOR_S_VAR])
    P[0, 0] += (c0 * g * opt[O_SIGMA_I] * q_model) ** 2 + relative_var * moved * moved
    P[1, 1] += (0.2 * (1.0 - decay)) ** 2
    P[2, 2] += opt[O_Q_OFFSET] * q_model * q_model * dt
    P[3, 3] += opt[O_Q_CAPACITY] * dt if opt[O_JOINT_VAR] > 0 else 0.0
    for n in range(i_rc.shape[0]):
        i_rc[n] = rc_decay[n] * i_rc[n] + (1.0 - rc_decay[n]) * i


@njit(cache=True)
def estimate_kernel(time_s, current, voltage, temperature, model_index, axis, tables, knots, ocv_t, z0, dz,
                    ocv_tables, opt, sigma_points, with_health, adapt, horizons,
                    state, cov, i_rc, soc_out, std_out, health_out, limits_out):
    """Run the estimator over (time, cells); `state`, `cov` and `i_rc` carry over between calls."""
    n_time, n_cells = current.shape
    n_rc = i_rc.shape[1]
    n_h = horizons.shape[0]
    record_limits = limits_out.shape[0] == n_time
    pxy = np.empty(N_X)
    # Per cell of a block: the temperature its cached values hold for, the parameter row and the
    # OCV table position there, and the RC decays over the step they were computed for.
    seen_t = np.empty(CELL_BLOCK)
    rows = np.empty((CELL_BLOCK, tables.shape[2]))
    ocv_k = np.empty(CELL_BLOCK, dtype=np.int64)
    ocv_u = np.empty(CELL_BLOCK)
    seen_dt = np.empty(CELL_BLOCK)
    rc_decay = np.empty((CELL_BLOCK, n_rc))
    for first in range(0, n_cells, CELL_BLOCK):
        seen_t[:] = np.nan
        seen_dt[:] = np.nan
        for k in range(n_time):
            dt = time_s[k + 1] - time_s[k] if k + 1 < time_s.shape[0] else 0.0  # time_s may run one past
            # Model error is slow and correlated: one independent look per correlation time.
            step = dt if dt > 0.0 else (time_s[k] - time_s[k - 1] if k > 0 else 1.0)
            r_v = opt[O_SIGMA_V] ** 2 * max(1.0, opt[O_CORRELATION_S] / step)
            for c in range(first, min(first + CELL_BLOCK, n_cells)):
                b = c - first
                m = model_index[c]
                t = temperature[k, c]
                p = rows[b]
                if t != seen_t[b]:
                    params_at(t, axis, tables[m], p)
                    ocv_k[b], ocv_u[b] = _axis_position(ocv_t, t)
                    seen_t[b] = t
                    seen_dt[b] = np.nan
                st = state[c]
                P = cov[c]
                i = current[k, c]
                v_meas = voltage[k, c]
                if abs(i) > SIGN_THRESHOLD_A:
                    st[S] = 1.0 if i > 0 else -1.0
                rho = st[RHO] if adapt and opt[O_ADAPT_RESISTANCE] > 0 else 1.0
                # --- measurement update -------------------------------------------------
                if sigma_points:
                    y_mean, pyy = _sigma_point_moments(st, P, i, st[S], i_rc[c], p, knots, ocv_k[b], ocv_u[b],
                                                       z0, dz, ocv_tables[m], rho, pxy)
                else:
                    y_mean, pyy = _linearised_moments(st, P, i, st[S], i_rc[c], p, knots, ocv_k[b], ocv_u[b],
                                                      z0, dz, ocv_tables[m], rho, pxy)
                pyy += r_v
                innovation = v_meas - y_mean
                gate = opt[O_GATE]
                if innovation * innovation > gate * gate * pyy:  # beyond the model: trust it less, not more
                    pyy = innovation * innovation / (gate * gate)
                inv_pyy = 1.0 / pyy
                for d in range(N_X):
                    st[d] += pxy[d] * inv_pyy * innovation
                st[H] = min(1.0, max(-1.0, st[H]))
                st[G] = min(2.0, max(0.5, st[G]))
                for d in range(N_X):
                    for e in range(N_X):
                        P[d, e] -= pxy[d] * pxy[e] * inv_pyy
                for d in range(N_X):
                    P[d, d] = max(P[d, d], 1e-12)
                soc_out[k, c] = st[Z]
                std_out[k, c] = np.sqrt(P[0, 0])
                if with_health:
                    _update_health(k, time_s, dt, i, v_meas, st, P, i_rc[c], p, knots, adapt, opt, health_out[k, c])
                if record_limits:
                    q_model = p[0]
                    q_now = q_model / (st[G] if adapt else 1.0)
                    # Horizons ascend; a longer pulse also has to hold over the shorter one's span.
                    ic_cap, idis_cap = opt[O_MAX_CHARGE_C] * q_model, opt[O_MAX_DISCHARGE_C] * q_model
                    pc_cap, pdis_cap = np.inf, np.inf
                    for n in range(n_h):
                        ic, pc = _limit(1.0, ic_cap, horizons[n], st[Z], st[H], i_rc[c], p, knots, ocv_k[b],
                                        ocv_u[b], z0, dz, ocv_tables[m], st[RHO], q_now, opt)
                        idis, pdis = _limit(-1.0, idis_cap, horizons[n], st[Z], st[H], i_rc[c], p, knots,
                                            ocv_k[b], ocv_u[b], z0, dz, ocv_tables[m], st[RHO], q_now, opt)
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
                    if dt != seen_dt[b]:
                        for n in range(n_rc):
                            rc_decay[b, n] = np.exp(-dt / p[N_FIXED + n])
                        seen_dt[b] = dt
                    _time_update(dt, i, st, P, i_rc[c], rc_decay[b], p, with_health, adapt, opt)
