"""The compiled estimator: SoC (sigma-point or extended Kalman filter), current-sensor
offset, resistance and capacity, and power limits, batched over cells.

Per cell the filter state is x = [z, h, b, g, d]: SoC, dynamic hysteresis, the current
sensor's offset (measured = true + b), the inverse capacity scale g (the cell holds
Q/g), so a cell whose capacity differs from the model's is followed as it drives, and the
OCV curve's bias d (this cell's OCV less the model's, V), a slow random walk: on LFP's flat
plateau the voltage cannot tell d from z, and the bound widens instead of the SoC moving;
where the OCV is steep (near empty, near full) the voltage tells both. Only a relaxed rest's
voltage moves d (a Schmidt-Kalman "considered" state elsewhere): the model's dynamic errors
while driving would teach it a bias that it then carries onto the plateau. The
RC branch currents follow the measured current deterministically. The voltage is
nonlinear only in z (OCV and the SoC-dependent resistances), so the sigma points take
just three distinct z values and the rest of the sigma-point algebra has a closed form
in the covariance (the EKF evaluates the voltage at z alone, with its slope there). The
capacity reported as state of health comes from an effective-variance weighted total least
squares of SoC moved against charge counted between confident SoC estimates, with its own
bound, or from g where the filter knows it better; the resistance scale ρ from voltage steps
at current steps.

Speed: cells go through a chunk in blocks of CELL_BLOCK, so a block's state stays in cache
however many cells there are. Within a block each stage of a time step runs over all its
cells before the next, on rows of per-cell values (a structure of arrays), and every stage
but the OCV look-up is arithmetic only, so that LLVM compiles it to vector instructions
across the cells: the resistances are read through their knots' hat functions rather than
by finding the knot interval, and exp(−x) is a polynomial (numba has no vector exp). The
OCV table reads stay scalar: LLVM does not vectorise an indexed read from one array in a
loop that writes another, as it cannot check them for overlap. Each cell keeps its
parameters interpolated at its temperature until the temperature changes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ..cell.kernels import (
    CAPACITY_AH,
    EFFICIENCY,
    HYSTERESIS_RATE,
    M0_V,
    M_V,
    N_FIXED,
    STEP_RATIO,
    _axis_position,
    current_sign,
    exp_neg,
    hysteresis_step,
    params_at_position,
    rc_step,
    soc_per_amp,
)

# Per-cell scalar state columns; the RC branch currents follow.
(
    Z,
    H,
    B,
    G,
    D,
    S,
    RHO,
    RHO_VAR,
    S_INV,
    SXX,
    SXY,
    ANCHOR_Z,
    ANCHOR_VAR,
    MOVED,
    ANCHORED,
    PREV_I,
    PREV_V,
    PREV_S,
    PREV_VRC,
    PREV_T,
    REST_S,
    NIS,
) = range(22)
N_STATE = 22
N_X = 5  # filter states: the first five columns
# Health outputs: current-sensor offset (A), hysteresis state, capacity relative to the model's, capacity and
# its 3-sigma bound (Ah), resistance relative to the model's, R0 at the present SoC and temperature (ohm).
(
    OUT_OFFSET,
    OUT_HYST,
    OUT_SOH_CAPACITY,
    OUT_CAPACITY_AH,
    OUT_CAPACITY_BOUND_AH,
    OUT_SOH_RESISTANCE,
    OUT_RESISTANCE_OHM,
) = range(7)
N_HEALTH = 7
# Limit outputs per horizon: max charge current, max discharge current (both ≥ 0), their powers.
N_LIMITS = 4
SIGMA_H = np.sqrt(3.0)  # central-difference step (Plett's CDKF), weights (h²−n)/h² and 1/2h²
NEWTON_STEPS = 8  # at most this many end-voltage evaluations per limit beyond the one at no current
LIMIT_TOLERANCE = 1e-4  # of the cap: a bracket this narrow ends the search
CELL_BLOCK = 64  # cells advanced together through a chunk (fastest measured; 32 and 128-256 are slower)
CB = CELL_BLOCK
# Rows of a block's work array: cell b's value of row r is W[r * CB + b]. Rows at constant offsets
# of one array let the compiler see that they do not overlap, and so vectorise over the cells.
(
    W_Z,
    W_H,
    W_B,
    W_G,
    W_D,  # the filter state x
    W_P00,
    W_P01,
    W_P02,
    W_P03,
    W_P04,
    W_P11,
    W_P12,
    W_P13,
    W_P14,
    W_P22,
    W_P23,
    W_P24,
    W_P33,
    W_P34,
    W_P44,  # its covariance (upper triangle)
    W_SIGN,
    W_RHO,
    W_RHO_EXCESS,
    W_CHARGE_VAR,
    W_MOVED,  # sign memory, resistance scale used and its excess beyond ageing, counted charge's variance, SoC moved
    W_Q,
    W_PER_AS,
    W_ETA,
    W_GAMMA,
    W_M0,
    W_M,  # parameters at the cell's temperature (W_PER_AS: SoC per A·s)
    W_VAR_V,  # the model's voltage error variance there
    W_ENERGY_FLOOR,  # ∫OCV dz up to soc_min there
    W_V_MIN,
    W_V_MAX,  # the model's voltage limits
    # The voltage is evaluated at z, "up" and "dn": z ± the sigma-point spread (the EKF: at z alone).
    W_Z_UP,
    W_Z_DN,  # those SoCs
    W_OCV,
    W_OCV_UP,
    W_OCV_DN,  # OCV at each
    W_RI,
    W_RI_UP,
    W_RI_DN,  # Σ R·i over R0 (the measured current) and the RC branches (theirs) at each
    W_RS,
    W_RS_UP,
    W_RS_DN,  # ΣR at each
    W_REST_S,
    W_NIS,  # how long the current has been at rest (s); the innovations' consistency (mean NIS)
    W_V_RC,  # Σ R·i over the RC branches at z, for the health's resistance steps and the limits
    N_W,
) = range(50)
# The EKF evaluates at z alone and keeps the slopes dOCV/dz and dΣ(R·i)/dz in the "up" rows.
W_OCV_SLOPE, W_RI_SLOPE = W_OCV_UP, W_RI_UP
# Rows whose number depends on the model live in arrays of their own, laid out alike: the RC
# branch currents `irc` and their decays over the step; per knot the resistances' values
# `knot_r` (R0's, then each branch's, then their sum ΣR) and `knot_ri`, Σ R·i at this sample.
# A loop that writes rows at offsets known only at run time must not read the same array.


class Model(NamedTuple):
    """The cell models as the filter reads them (see `cell.packing.PackedModels`), with per model
    its voltage limits and its voltage error std on the parameters' temperature axis."""

    axis: np.ndarray  # (n_t,) temperature axis of the parameter tables
    tables: np.ndarray  # (n_models, n_t, n_columns): PARAM_COLUMNS, τ per branch, resistance knots
    knots: np.ndarray  # (n_k,) SoC knots of the resistances
    hats: np.ndarray  # (4, n_k): `knot_hats(knots)`
    ocv_axis: np.ndarray  # (n_ocv_t,)
    z0: float  # first SoC of the uniform OCV grid
    dz: float  # its step
    ocv_tables: np.ndarray  # (n_models, n_ocv_t, n_z)
    quads: np.ndarray  # `ocv_quads(ocv_tables)`
    energy_quads: np.ndarray  # `ocv_quads` of ∫OCV dz from the grid's first SoC (V per unit of SoC)
    model_index: np.ndarray  # (n_cells,) each cell's model
    sigma_v: np.ndarray  # (n_models, n_t) the model's voltage error std (V)
    v_min: np.ndarray  # (n_models,) voltage limits (V)
    v_max: np.ndarray


class Options(NamedTuple):
    """`EstimateOptions` as the kernel reads them (`EstimateOptions.to_kernel()`): options in C-rate
    are scaled by each cell's capacity in the kernel; drifts are per second."""

    sensor_v: float  # voltage sensor noise std (V), for resistance steps
    sigma_i: float  # current noise std, C
    gain_std: float  # relative current gain uncertainty
    q_offset: float  # offset random walk, C² per s
    anchor_std: float  # SoC std below which an estimate anchors a capacity measurement
    min_moved: float  # SoC moved between capacity anchors
    fade: float  # fading memory of capacity measurements
    step_c: float  # current step that measures resistance, C
    q_rho: float  # resistance-scale variance growth per s
    prior_s_var: float  # prior variance of the capacity scale
    soc_min: float
    soc_max: float
    max_charge_c: float
    max_discharge_c: float
    gate: float  # innovations beyond this many sigmas inflate the noise
    correlation_s: float  # how long model voltage errors stay alike
    q_capacity: float  # the filter's capacity random walk, per s
    joint_var: float  # prior variance of the capacity the filter tracks (0: the certified one only)
    rho_deadband: float  # the resistance step method's own bias
    rho_max: float  # the largest resistance scale ageing gives; beyond it the model is another cell's
    ocv_scale: float  # relative uncertainty of the OCV curve's SoC scale
    rest_c: float  # a current within this of zero (C) for rest_min_s is zero
    rest_min_s: float  # then the voltage counts one look per rest_correlation_s
    relaxed_s: float  # after this long at rest the voltage is the OCV, and tells the OCV bias
    rest_correlation_s: float
    nis_s: float  # memory of the innovation consistency (0: off)
    q_ocv_bias: float  # the OCV bias's random walk, V² per s
    ocv_bias_growth: float  # its variance's growth per unit of NIS beyond 1, in model error variances per nis_s
    sigma_points: bool  # False: extended Kalman filter
    health: bool  # capacity and resistance estimates (and their outputs)
    energy: bool  # the energy left down to soc_min (and its output)
    adapt: bool  # health fed back into the SoC filter
    adapt_resistance: bool  # ρ fed back too
    limits: bool  # power limits (and their outputs)
    horizons: np.ndarray  # ascending, s


class Filter(NamedTuple):
    """What carries over between calls, per cell: the state columns, x's covariance, the RC currents."""

    state: np.ndarray  # (n_cells, N_STATE)
    cov: np.ndarray  # (n_cells, N_X, N_X)
    i_rc: np.ndarray  # (n_cells, n_rc)


class Series(NamedTuple):
    """The samples, (time, cells); time_s runs one past them; temperature may be one row for all."""

    time_s: np.ndarray
    current: np.ndarray
    voltage: np.ndarray
    temperature: np.ndarray


class Outputs(NamedTuple):
    """Per sample and cell: SoC, its 3-sigma bound, health (N_HEALTH), energy and limits (N_LIMITS per horizon)."""

    soc: np.ndarray
    bound: np.ndarray
    health: np.ndarray  # (time, cells, N_HEALTH), or any shape when health is off
    energy: np.ndarray  # (time, cells) Wh down to soc_min at open circuit, or any 2-D shape when energy is off
    limits: np.ndarray  # (time, cells, N_LIMITS · n_horizons), or any shape when limits are off


class Block(NamedTuple):
    """Work arrays for one block of cells (see `block_arrays`)."""

    W: np.ndarray  # (N_W · CB,) the rows above
    irc: np.ndarray  # (n_rc, CB) RC branch currents
    rc_decay: np.ndarray  # (n_rc, CB) their decay over the step
    rc_horizon: np.ndarray  # (n_horizons · n_rc, CB) their decay over each limit horizon
    knot_r: np.ndarray  # ((n_rc + 2) · n_k, CB) knot values of R0, each branch's R and ΣR
    knot_ri: np.ndarray  # (n_k, CB) Σ R·i at each knot
    seen_t: np.ndarray  # (CB,) the temperature the cached values hold for
    seen_dt: np.ndarray  # (CB,) the step the RC decays hold for
    rows: np.ndarray  # (CB, n_columns) parameter rows at that temperature
    ocv_k: np.ndarray  # (CB,) int: OCV temperature interval
    ocv_u: np.ndarray  # (CB,) its weight
    ocv_start: np.ndarray  # (CB,) int: where the cell's OCV row starts in the quads
    ocv_at: np.ndarray  # (3, CB) int: the interval there at each evaluation SoC
    L: np.ndarray  # (N_L · CB,) the limits' rows
    r_now: np.ndarray  # (2 · (n_rc + 1), CB) each resistance and its slope in SoC at z (`_resistance_rows`)
    r_end: np.ndarray  # (2 · (n_rc + 1), CB) the same at the end SoC of a limit's pulse
    limit_at: np.ndarray  # (CB,) int: the OCV interval there


@njit(cache=True, inline="always")
def _grid_position(z, row, z0, inv_dz, n_z):
    """(interval index in `ocv_quads`, weight of its upper end) of SoC z on the uniform grid of the
    OCV row whose intervals start at `row`; the end intervals extend linearly beyond the grid."""
    pos = (z - z0) * inv_dz
    j = min(max(np.floor(pos), 0.0), n_z - 2.0)
    return row + int(j), pos - j


@njit(cache=True, inline="always")
def _bilinear_and_slope(quads, j, w, u, inv_dz):
    """OCV in interval j of `ocv_quads`, at weight w of its upper SoC and u of its upper temperature,
    and its slope dOCV/dz (grid step 1 / inv_dz), from one read of the interval's corners."""
    q = 4 * j
    q0, q1, q2, q3 = quads[q], quads[q + 1], quads[q + 2], quads[q + 3]
    at_lo = q0 + w * (q1 - q0)
    at_hi = q2 + w * (q3 - q2)
    return at_lo + u * (at_hi - at_lo), (q1 - q0 + u * (q3 - q2 - q1 + q0)) * inv_dz


@njit(cache=True, inline="always")
def _bilinear(quads, j, w, u):
    """The OCV alone (the compiler drops the slope)."""
    return _bilinear_and_slope(quads, j, w, u, 0.0)[0]


@njit(cache=True, inline="always")
def _hat(z, hat):
    """Weight at SoC z of a knot's value, from its hat function (a row of `knot_hats`)."""
    return max(0.0, min(z * hat[0] - hat[1], hat[3] - z * hat[2]))


@njit(cache=True, inline="always")
def _knot_range(knots, z_lo, z_hi):
    """The first and last knot whose hat function reaches into [z_lo, z_hi]: often 2 or 3 of them. A knot
    at z_hi stays: the slope to the right of it rises from it."""
    n_k = knots.shape[0]
    m_first, m_last = 0, n_k - 1
    while m_first < n_k - 1 and knots[m_first + 1] <= z_lo:
        m_first += 1
    while m_last > 0 and knots[m_last - 1] > z_hi:
        m_last -= 1
    return m_first, m_last


@njit(cache=True, inline="always")
def _hat_edge(z, hat, below, at, above):
    """The slope to the right of z of a knot's hat function (knot `at`, its neighbours `below` and `above`),
    its edge chosen by the knots themselves: the hats' edges differ in the last bit where they meet, so at
    a knot they would pick inconsistently. Zero beyond the end knots, where the resistances are held."""
    edge = hat[0] if z < at else -hat[2]
    return edge if below <= z < above else 0.0


def knot_hats(knots):
    """Per knot its hat function, the weight of the knot's value in piecewise-linear interpolation,
    as max(0, min(z·a − b, d − z·c)) with rows (a, b, c, d): a rising and a falling edge. The end
    knots' outer edge is 1 everywhere, so their weight stays 1 beyond the ends."""
    n = len(knots)
    a, b, c, d = np.zeros(n), -np.ones(n), np.zeros(n), np.ones(n)
    a[1:] = c[:-1] = 1.0 / np.diff(knots)
    b[1:] = knots[:-1] * a[1:]
    d[:-1] = knots[1:] * c[:-1]
    return np.array([a, b, c, d])


@njit(cache=True, inline="always")
def _sigma_point_moments(g0, r0, g_up, r_up, g_dn, r_dn, h, bias, m_v, W, b):
    """Mean and variance of the predicted voltage of the central-difference filter with sigma
    points x ± h·L[:, j] (L the Cholesky factor of P, cell b's covariance in W), and dy/dz such
    that P·[dy/dz, M, −R, 0, 1]' is its covariance with the state (g0, g_up, g_dn include the OCV
    bias d).

    The voltage is linear in h, b and d, so the eight points off the z axis contribute exactly
    what a linearisation at z would: a quadratic form in P. Only L's first column P[:, 0]/√P00
    is needed, not the factor itself.
    """
    p11, p12, p14 = W[W_P11 * CB + b], W[W_P12 * CB + b], W[W_P14 * CB + b]
    p22, p24, p44 = W[W_P22 * CB + b], W[W_P24 * CB + b], W[W_P44 * CB + b]
    inv_root = 1.0 / np.sqrt(max(W[W_P00 * CB + b], 1e-16))
    l1 = W[W_P01 * CB + b] * inv_root
    l2 = W[W_P02 * CB + b] * inv_root
    l4 = W[W_P04 * CB + b] * inv_root
    y0 = g0 + m_v * h - r0 * bias
    y_up = g_up + m_v * (h + SIGMA_H * l1) - r_up * (bias + SIGMA_H * l2) + SIGMA_H * l4
    y_dn = g_dn + m_v * (h - SIGMA_H * l1) - r_dn * (bias - SIGMA_H * l2) - SIGMA_H * l4
    w = 1.0 / (2.0 * SIGMA_H * SIGMA_H)  # weight of each of the 10 outer points; the centre and
    y_mean = (1.0 - 2.0 * w) * y0 + w * (y_up + y_dn)  # the 8 off-axis ones average to y0
    along_z = m_v * l1 - r0 * l2 + l4  # linear part of the z-axis pair, also counted by the quadratic form
    off_axis = (
        m_v * m_v * p11 - 2.0 * m_v * r0 * p12 + r0 * r0 * p22 + 2.0 * (m_v * p14 - r0 * p24) + p44 - along_z * along_z
    )
    e0 = y0 - y_mean
    pyy = (1.0 - 2.0 * w) * e0 * e0 + w * ((y_up - y_mean) ** 2 + (y_dn - y_mean) ** 2) + max(off_axis, 0.0)
    return y_mean, pyy, ((y_up - y_dn) * (0.5 / SIGMA_H) - along_z) * inv_root


@njit(cache=True, inline="always")
def _trusted_rho(rho, deadband):
    """ρ's departure from 1 beyond the step method's own bias.
    The step ratio reads a fresh cell 0.92-1.07 (sampling, the RC split); scaling by that costs SoC accuracy."""
    return 1.0 + max(0.0, rho - 1.0 - deadband) + min(0.0, rho - 1.0 + deadband)


@njit(cache=True, inline="always")
def _use_rho(W, b, rho, opt):
    """The resistance scale the filter applies to every branch, within what ageing gives, and its excess beyond.
    ρ reads a voltage step, R0's; a scale beyond ageing's says the model is another cell's, whose branches split
    differently: scaled by it, the slow branches' drop would drive the SoC and capacity away. The excess counts
    as model voltage error instead (`_update`)."""
    used, excess = 1.0, 0.0
    if opt.adapt_resistance:
        trusted = _trusted_rho(rho, opt.rho_deadband)
        used = min(opt.rho_max, max(1.0 / opt.rho_max, trusted))
        excess = trusted - used
    W[W_RHO * CB + b] = used
    W[W_RHO_EXCESS * CB + b] = excess


@njit(cache=True, inline="always")
def _counted_charge_var(sxx, opt):
    """Relative variance of counted charge: the gain error, and the capacity unless the filter tracks it."""
    relative_var = opt.gain_std**2
    if opt.joint_var == 0.0:
        relative_var += 1.0 / (sxx + 1.0 / opt.prior_s_var)
    return relative_var


@njit(cache=True, inline="always", error_model="numpy")
def _update_health(k, time_s, dt, i, v_meas, r0, v_rc, st, W, b, rows, adapt, opt, health_out):
    """Resistance scale from voltage steps at current steps; capacity from confident SoC pairs, reported
    as it or as the filter's own g, whichever is better known. r0: R0 at z; v_rc: Σ R·i over the RC branches."""
    # The model's one-sample voltage change at a current step, as the fresh cell showed it: ρ times this.
    # the previous sample may be the last of an earlier call: a BMS feeds one sample at a time
    if abs(i - st[PREV_I]) > opt.step_c * rows[b, CAPACITY_AH] and time_s[k] - st[PREV_T] < 2.5:
        hr = rows[b, STEP_RATIO] * (r0 * (i - st[PREV_I]) + v_rc - st[PREV_VRC])
        dv = v_meas - st[PREV_V] - rows[b, M0_V] * (st[S] - st[PREV_S])
        noise = 2.0 * opt.sensor_v**2 + (0.05 * hr) ** 2
        gain = st[RHO_VAR] * hr / (hr * hr * st[RHO_VAR] + noise)
        st[RHO] = min(5.0, max(0.2, st[RHO] + gain * (dv - st[RHO] * hr)))
        st[RHO_VAR] *= 1.0 - gain * hr
    st[PREV_VRC] = v_rc
    st[RHO_VAR] += opt.q_rho * dt
    st[MOVED] += W[W_MOVED * CB + b]  # over the time update before this sample
    W[W_MOVED * CB + b] = 0.0
    var_z = W[W_P00 * CB + b]
    if var_z < opt.anchor_std**2:
        if st[ANCHORED] == 0.0:
            st[ANCHORED] = 1.0
            st[ANCHOR_Z] = W[W_Z * CB + b]
            st[ANCHOR_VAR] = var_z
            st[MOVED] = 0.0
        elif abs(st[MOVED]) >= opt.min_moved:
            moved = st[MOVED]
            y = W[W_Z * CB + b] - st[ANCHOR_Z]
            var_moved = (opt.gain_std * moved) ** 2
            weight = 1.0 / (var_z + st[ANCHOR_VAR] + st[S_INV] ** 2 * var_moved)
            st[SXX] = opt.fade * st[SXX] + weight * moved * moved
            st[SXY] = opt.fade * st[SXY] + weight * moved * y
            prior = 1.0 / opt.prior_s_var
            st[S_INV] = (st[SXY] + prior) / (st[SXX] + prior)
            certified_var = 1.0 / (st[SXX] + prior)
            # the filter's capacity restarts from the certified estimate, unless it knows its own better
            if adapt and not (opt.joint_var > 0 and W[W_P33 * CB + b] < certified_var):
                W[W_G * CB + b] = st[S_INV]
                W[W_P03 * CB + b] = W[W_P13 * CB + b] = W[W_P23 * CB + b] = W[W_P34 * CB + b] = 0.0
                W[W_P33 * CB + b] = certified_var if opt.joint_var > 0 else 0.0
            st[ANCHOR_Z] = W[W_Z * CB + b]
            st[ANCHOR_VAR] = var_z
            st[MOVED] = 0.0
    s_inv, s_var = st[S_INV], 1.0 / (st[SXX] + 1.0 / opt.prior_s_var)
    if adapt and opt.joint_var > 0 and W[W_P33 * CB + b] < s_var:  # the filter knows its own capacity better
        s_inv, s_var = W[W_G * CB + b], W[W_P33 * CB + b]
    q_model, capacity_scale = rows[b, CAPACITY_AH], 1.0 / s_inv
    health_out[OUT_OFFSET] = W[W_B * CB + b]
    health_out[OUT_HYST] = W[W_H * CB + b]
    health_out[OUT_SOH_CAPACITY] = capacity_scale
    health_out[OUT_CAPACITY_AH] = capacity_scale * q_model
    health_out[OUT_CAPACITY_BOUND_AH] = 3.0 * (np.sqrt(s_var) / s_inv**2) * q_model
    health_out[OUT_SOH_RESISTANCE] = st[RHO]
    health_out[OUT_RESISTANCE_OHM] = st[RHO] * r0


# -- the stages of a time step, each over the block's cells ---------------------------------------------------


@njit(cache=True, inline="always")
def _load(first, n_b, filt, opt, work):
    """The block's cells from the carried-over state into the work rows."""
    W, state, cov = work.W, filt.state, filt.cov
    for b in range(n_b):
        c = first + b
        for d in range(N_X):
            W[d * CB + b] = state[c, d]
            for e in range(d, N_X):
                W[P_ROWS[d, e] * CB + b] = cov[c, d, e]
        for n in range(work.irc.shape[0]):
            work.irc[n, b] = filt.i_rc[c, n]
        W[W_SIGN * CB + b] = state[c, S]
        _use_rho(W, b, state[c, RHO], opt)
        W[W_CHARGE_VAR * CB + b] = _counted_charge_var(state[c, SXX], opt)
        W[W_MOVED * CB + b] = 0.0
        W[W_REST_S * CB + b] = state[c, REST_S]
        W[W_NIS * CB + b] = state[c, NIS]
        work.seen_t[b] = np.nan


@njit(cache=True, inline="always")
def _parameters(k, dt, dt_before, temperature_k, varying, first, n_b, model, opt, work):
    """Each cell's parameters at its temperature and its RC decays over this step, where either changed
    (`varying`: a temperature per sample). Returns the step the decays now hold for."""
    stale = 0  # cells whose cached parameters or RC decays are for another temperature or step
    if k == 0 or varying or (dt > 0.0 and dt != dt_before):  # else none can be
        for b in range(n_b):
            stale += (temperature_k[b] != work.seen_t[b]) | ((dt > 0.0) & (dt != work.seen_dt[b]))
    for b in range(n_b if stale > 0 else 0):
        t = temperature_k[b]
        if t != work.seen_t[b]:
            _cache_parameters(t, b, model.model_index[first + b], model, opt, work)
            work.seen_t[b] = t
            work.seen_dt[b] = np.nan
        if dt > 0.0 and dt != work.seen_dt[b]:
            for n in range(work.irc.shape[0]):
                work.rc_decay[n, b] = np.exp(-dt / work.rows[b, N_FIXED + n])
            work.seen_dt[b] = dt
    return dt if dt > 0.0 else dt_before


@njit(cache=True, inline="always")
def _cache_parameters(t, b, m, model, opt, work):
    """Cell b's parameters at temperature t, of model m: its row; the scalars (with the voltage error
    variance), the resistances' knot values and their sums in the work arrays; its OCV table position;
    with limits, its RC decays over each horizon."""
    axis, rows, W, knot_r = model.axis, work.rows, work.W, work.knot_r
    n_rc, n_k = work.irc.shape[0], model.knots.shape[0]
    n_ocv_t, n_z = model.ocv_tables.shape[1], model.ocv_tables.shape[2]
    k, u = _axis_position(axis, t)
    params_at_position(k, u, model.tables[m], rows[b])
    sigma_v = model.sigma_v[m]
    std = sigma_v[k] if axis.shape[0] == 1 else sigma_v[k] + u * (sigma_v[k + 1] - sigma_v[k])
    W[W_VAR_V * CB + b] = std * std
    W[W_V_MIN * CB + b], W[W_V_MAX * CB + b] = model.v_min[m], model.v_max[m]
    for row, col in ((W_Q, CAPACITY_AH), (W_ETA, EFFICIENCY), (W_GAMMA, HYSTERESIS_RATE), (W_M0, M0_V), (W_M, M_V)):
        W[row * CB + b] = rows[b, col]
    W[W_PER_AS * CB + b] = 1.0 / (3600.0 * rows[b, CAPACITY_AH])
    knot_sum = (1 + n_rc) * n_k
    for j in range(n_k):
        knot_r[knot_sum + j, b] = 0.0
        for n in range(1 + n_rc):
            r = rows[b, N_FIXED + n_rc + n * n_k + j]
            knot_r[n * n_k + j, b] = r
            knot_r[knot_sum + j, b] += r
    work.ocv_k[b], work.ocv_u[b] = _axis_position(model.ocv_axis, t)
    work.ocv_start[b] = (m * n_ocv_t + work.ocv_k[b]) * (n_z - 1)
    j, w = _grid_position(opt.soc_min, work.ocv_start[b], model.z0, 1.0 / model.dz, n_z)
    W[W_ENERGY_FLOOR * CB + b] = _bilinear(model.energy_quads, j, w, work.ocv_u[b])
    for n in range(opt.horizons.shape[0] if opt.limits else 0):
        for branch in range(n_rc):
            work.rc_horizon[n * n_rc + branch, b] = np.exp(-opt.horizons[n] / rows[b, N_FIXED + branch])


@njit(cache=True, inline="always")
def _voltage(current_k, n_b, model, sigma_points, work):
    """The sign memory, then the voltage's parts at each evaluation SoC (the EKF: at z, with its slope there):
    its resistive part through the knots' hat functions (vector loops, cells innermost); its OCV by a scalar
    look-up."""
    W, irc, knot_r, knot_ri, knots, hats = work.W, work.irc, work.knot_r, work.knot_ri, model.knots, model.hats
    n_rc, n_k, n_z = irc.shape[0], knots.shape[0], model.ocv_tables.shape[2]
    knot_sum = (1 + n_rc) * n_k  # first row of ΣR in knot_r
    inv_dz = 1.0 / model.dz
    for b in range(n_b):
        W[W_SIGN * CB + b] = current_sign(current_k[b], W[W_SIGN * CB + b])
    for b in range(n_b):
        z = W[W_Z * CB + b]
        spread = SIGMA_H * np.sqrt(max(W[W_P00 * CB + b], 1e-16)) if sigma_points else 0.0
        W[W_Z_UP * CB + b] = z + spread
        W[W_Z_DN * CB + b] = z - spread
        W[W_RI * CB + b] = W[W_RI_UP * CB + b] = W[W_RI_DN * CB + b] = 0.0  # sums over the knots follow
        W[W_RS * CB + b] = W[W_RS_UP * CB + b] = W[W_RS_DN * CB + b] = 0.0
    # Only the knots whose hat reaches into the block's SoC range contribute.
    z_lo, z_hi = np.inf, -np.inf
    for b in range(n_b):
        z_lo, z_hi = min(z_lo, W[W_Z_DN * CB + b]), max(z_hi, W[W_Z_UP * CB + b])
    m_first, m_last = _knot_range(knots, z_lo, z_hi)
    for m in range(m_first, m_last + 1):
        for b in range(n_b):
            knot_ri[m, b] = knot_r[m, b] * current_k[b]
        for n in range(n_rc):
            for b in range(n_b):
                knot_ri[m, b] += knot_r[(n + 1) * n_k + m, b] * irc[n, b]
    for m in range(m_first, m_last + 1 if not sigma_points else 0):  # the EKF: at z, and the slope
        hat = (hats[0, m], hats[1, m], hats[2, m], hats[3, m])
        below, at, above = knots[max(m - 1, 0)], knots[m], knots[min(m + 1, n_k - 1)]
        for b in range(n_b):
            ri = knot_ri[m, b]
            z = W[W_Z * CB + b]
            weight = _hat(z, hat)
            W[W_RI * CB + b] += weight * ri
            W[W_RS * CB + b] += weight * knot_r[knot_sum + m, b]
            W[W_RI_SLOPE * CB + b] += _hat_edge(z, hat, below, at, above) * ri
    for m in range(m_first, m_last + 1 if sigma_points else 0):  # sigma points: at z and z ± spread
        hat = (hats[0, m], hats[1, m], hats[2, m], hats[3, m])
        for b in range(n_b):
            ri, rs = knot_ri[m, b], knot_r[knot_sum + m, b]
            weight = _hat(W[W_Z * CB + b], hat)
            W[W_RI * CB + b] += weight * ri
            W[W_RS * CB + b] += weight * rs
            weight = _hat(W[W_Z_UP * CB + b], hat)
            W[W_RI_UP * CB + b] += weight * ri
            W[W_RS_UP * CB + b] += weight * rs
            weight = _hat(W[W_Z_DN * CB + b], hat)
            W[W_RI_DN * CB + b] += weight * ri
            W[W_RS_DN * CB + b] += weight * rs
    ocv_at, ocv_start, z0, quads = work.ocv_at, work.ocv_start, model.z0, model.quads
    for b in range(n_b):  # where on the OCV grid: the interval in the quads, the weight in the OCV rows
        ocv_at[0, b], W[W_OCV * CB + b] = _grid_position(W[W_Z * CB + b], ocv_start[b], z0, inv_dz, n_z)
    for b in range(n_b if sigma_points else 0):
        row = ocv_start[b]
        ocv_at[1, b], W[W_OCV_UP * CB + b] = _grid_position(W[W_Z_UP * CB + b], row, z0, inv_dz, n_z)
        ocv_at[2, b], W[W_OCV_DN * CB + b] = _grid_position(W[W_Z_DN * CB + b], row, z0, inv_dz, n_z)
    for b in range(n_b):  # the look-ups themselves: scalar, 4 adjacent values each
        u = work.ocv_u[b]
        if sigma_points:
            W[W_OCV * CB + b] = _bilinear(quads, ocv_at[0, b], W[W_OCV * CB + b], u)
            W[W_OCV_UP * CB + b] = _bilinear(quads, ocv_at[1, b], W[W_OCV_UP * CB + b], u)
            W[W_OCV_DN * CB + b] = _bilinear(quads, ocv_at[2, b], W[W_OCV_DN * CB + b], u)
        else:
            W[W_OCV * CB + b], W[W_OCV_SLOPE * CB + b] = _bilinear_and_slope(
                quads, ocv_at[0, b], W[W_OCV * CB + b], u, inv_dz
            )


@njit(cache=True, inline="always")
def _consistency(W, b, innovation, pyy_state, var_v, step, opt):
    """How many times larger the model's voltage error is than it says: the mean normalised innovation
    squared over `nis_s`, not below 1. A model that does not fit the cell widens the bound instead of
    driving the offset and capacity states many sigmas away."""
    if opt.nis_s <= 0.0:
        return 1.0
    nis = innovation * innovation / (pyy_state + var_v)
    W[W_NIS * CB + b] += min(1.0, step / opt.nis_s) * (nis - W[W_NIS * CB + b])
    return max(1.0, W[W_NIS * CB + b])


@njit(cache=True, inline="always")
def _correct(W, b, ph0, ph1, ph2, ph3, ph4, innovation, inv_s, learn_bias=1.0):
    """The Kalman correction of cell b by one scalar reading: x += K·innovation and P −= K·(P H')', with
    P H' = ph, K = ph / s; the hysteresis kept within ±1 and the capacity scale within 0.5-2. With
    learn_bias = 0 the OCV bias is a considered state (Schmidt-Kalman): its uncertainty weighs the reading and
    the other states' covariance with it stays right, but the reading moves neither it nor its variance."""
    gain = innovation * inv_s
    W[W_Z * CB + b] += ph0 * gain
    W[W_H * CB + b] = min(1.0, max(-1.0, W[W_H * CB + b] + ph1 * gain))
    W[W_B * CB + b] += ph2 * gain
    W[W_G * CB + b] = min(2.0, max(0.5, W[W_G * CB + b] + ph3 * gain))
    W[W_D * CB + b] += learn_bias * ph4 * gain
    W[W_P00 * CB + b] = max(W[W_P00 * CB + b] - ph0 * ph0 * inv_s, 1e-12)
    W[W_P01 * CB + b] -= ph0 * ph1 * inv_s
    W[W_P02 * CB + b] -= ph0 * ph2 * inv_s
    W[W_P03 * CB + b] -= ph0 * ph3 * inv_s
    W[W_P04 * CB + b] -= ph0 * ph4 * inv_s
    W[W_P11 * CB + b] = max(W[W_P11 * CB + b] - ph1 * ph1 * inv_s, 1e-12)
    W[W_P12 * CB + b] -= ph1 * ph2 * inv_s
    W[W_P13 * CB + b] -= ph1 * ph3 * inv_s
    W[W_P14 * CB + b] -= ph1 * ph4 * inv_s
    W[W_P22 * CB + b] = max(W[W_P22 * CB + b] - ph2 * ph2 * inv_s, 1e-12)
    W[W_P23 * CB + b] -= ph2 * ph3 * inv_s
    W[W_P24 * CB + b] -= ph2 * ph4 * inv_s
    W[W_P33 * CB + b] = max(W[W_P33 * CB + b] - ph3 * ph3 * inv_s, 1e-12)
    W[W_P34 * CB + b] -= ph3 * ph4 * inv_s
    W[W_P44 * CB + b] = max(W[W_P44 * CB + b] - learn_bias * ph4 * ph4 * inv_s, 0.0)


@njit(cache=True, inline="always")
def _offset_reading(W, b, i, opt):
    """At rest the current sensor reads its own offset: a direct look at b (with the current's noise),
    which through their covariance also corrects what the SoC counted with the wrong offset."""
    p22 = W[W_P22 * CB + b]
    ph = (W[W_P02 * CB + b], W[W_P12 * CB + b], p22, W[W_P23 * CB + b], W[W_P24 * CB + b])
    inv_s = 1.0 / (p22 + (opt.sigma_i * W[W_Q * CB + b]) ** 2)
    _correct(W, b, ph[0], ph[1], ph[2], ph[3], ph[4], i - W[W_B * CB + b], inv_s)


@njit(cache=True, inline="always")
def _rest_s(W, b, i, opt):
    """How long cell b's current has been at rest before this sample (s), or −1 if it is not at rest now.
    A current within the rest band (wider than any offset in a sensor's spec) for at least `rest_min_s`
    is taken as zero: a parked car's contactors are open."""
    return W[W_REST_S * CB + b] if abs(i) <= opt.rest_c * W[W_Q * CB + b] else -1.0


@njit(cache=True, inline="always", error_model="numpy")
def _update(voltage_k, current_k, soc_k, bound_k, n_b, inflation, step, opt, W):
    """The Kalman update on the measured voltage (and at rest on the current sensor's offset): arithmetic
    only, over the block's cells at once."""
    sigma_points = opt.sigma_points
    inv_gate2 = 1.0 / opt.gate**2
    ocv_scale = opt.ocv_scale
    for b in range(n_b):
        h, bias = W[W_H * CB + b], W[W_B * CB + b]
        p00, p01, p02, p03 = W[W_P00 * CB + b], W[W_P01 * CB + b], W[W_P02 * CB + b], W[W_P03 * CB + b]
        p11, p12, p13 = W[W_P11 * CB + b], W[W_P12 * CB + b], W[W_P13 * CB + b]
        p22, p23 = W[W_P22 * CB + b], W[W_P23 * CB + b]
        p04, p14, p24 = W[W_P04 * CB + b], W[W_P14 * CB + b], W[W_P24 * CB + b]
        p34, p44 = W[W_P34 * CB + b], W[W_P44 * CB + b]
        m_v = W[W_M * CB + b]
        rho = W[W_RHO * CB + b]
        # the OCV bias and the instantaneous hysteresis: the same at every evaluation SoC
        offset_v = W[W_D * CB + b] + W[W_M0 * CB + b] * W[W_SIGN * CB + b]
        # the voltage without h and b, and ρ·ΣR, at z and the other evaluation SoCs
        y0 = W[W_OCV * CB + b] + offset_v + rho * W[W_RI * CB + b]
        r = rho * W[W_RS * CB + b]
        if sigma_points:
            y_up = W[W_OCV_UP * CB + b] + offset_v + rho * W[W_RI_UP * CB + b]
            y_dn = W[W_OCV_DN * CB + b] + offset_v + rho * W[W_RI_DN * CB + b]
            y_mean, pyy, dv_dz = _sigma_point_moments(
                y0,
                r,
                y_up,
                rho * W[W_RS_UP * CB + b],
                y_dn,
                rho * W[W_RS_DN * CB + b],
                h,
                bias,
                m_v,
                W,
                b,
            )
        else:  # the slope of the interpolated OCV and resistances at z
            dv_dz = W[W_OCV_SLOPE * CB + b] + rho * W[W_RI_SLOPE * CB + b]
            y_mean = y0 + m_v * h - r * bias
            pyy = 0.0
        p_y0 = p00 * dv_dz + p01 * m_v - p02 * r + p04  # P·H', H = [dv/dz, M, −R, 0, 1]
        p_y1 = p01 * dv_dz + p11 * m_v - p12 * r + p14
        p_y2 = p02 * dv_dz + p12 * m_v - p22 * r + p24
        p_y3 = p03 * dv_dz + p13 * m_v - p23 * r + p34
        p_y4 = p04 * dv_dz + p14 * m_v - p24 * r + p44
        if not sigma_points:
            pyy = dv_dz * p_y0 + m_v * p_y1 - r * p_y2 + p_y4
        innovation = voltage_k[b] - y_mean
        # The model's voltage error: its fit, and its OCV curve's SoC scale, measured from full (the
        # capacity it was measured with is uncertain): a SoC error that grows towards empty, seen
        # through the OCV's slope. Beyond the gate the model is off: trust it less, not more.
        scale_error = dv_dz * ocv_scale * (1.0 - W[W_Z * CB + b])
        # A resistance scale beyond ageing's: the resistive drop is known only to that excess.
        misfit = W[W_RHO_EXCESS * CB + b] * W[W_RI * CB + b]
        var_v = W[W_VAR_V * CB + b] + scale_error * scale_error + misfit * misfit
        # At rest the model's error in the voltage is the same all rest long: the rest's readings count as one
        # look per rest correlation time (before it is relaxed too: the relaxation's error is alike all the while).
        rest_s = _rest_s(W, b, current_k[b], opt)
        looks = max(inflation, opt.rest_correlation_s / step) if rest_s >= opt.rest_min_s else inflation
        # Innovations larger than the model allows widen its error and free the OCV bias to take them up.
        consistency = _consistency(W, b, innovation, pyy, var_v, step, opt)
        W[W_P44 * CB + b] += opt.ocv_bias_growth * (consistency - 1.0) * var_v * min(1.0, step / max(opt.nis_s, 1.0))
        r_v = var_v * looks * consistency
        pyy = max(pyy + r_v, innovation * innovation * inv_gate2)
        # Only a relaxed rest's voltage is the OCV: elsewhere the bias is a considered state, weighing the reading
        # but not moved by it, as the model's dynamic errors there would teach it a bias it carries onto the plateau.
        learn_bias = 1.0 if rest_s >= opt.relaxed_s else 0.0
        _correct(W, b, p_y0, p_y1, p_y2, p_y3, p_y4, innovation, 1.0 / pyy, learn_bias)
        if rest_s >= opt.rest_min_s:
            _offset_reading(W, b, current_k[b], opt)
        soc_k[b] = W[W_Z * CB + b]
        bound_k[b] = 3.0 * np.sqrt(W[W_P00 * CB + b])


@njit(cache=True, inline="always")
def _health(k, dt, first, n_b, series, model, opt, filt, health_out, work):
    """Capacity and resistance per cell (see `_update_health`), and what the filter uses of them; from the
    resistances at z and the RC branches' voltage there (`_resistances_at_z`)."""
    W, r_now = work.W, work.r_now
    for b in range(n_b):
        c = first + b
        st = filt.state[c]
        i, v = series.current[k, c], series.voltage[k, c]
        st[S] = W[W_SIGN * CB + b]
        _update_health(
            k,
            series.time_s,
            dt,
            i,
            v,
            r_now[0, b],
            W[W_V_RC * CB + b],
            st,
            W,
            b,
            work.rows,
            opt.adapt,
            opt,
            health_out[k, c],
        )
        st[PREV_I] = i
        st[PREV_V] = v
        st[PREV_S] = st[S]
        st[PREV_T] = series.time_s[k]
        _use_rho(W, b, st[RHO], opt)
        W[W_CHARGE_VAR * CB + b] = _counted_charge_var(st[SXX], opt)


@njit(cache=True, inline="always", error_model="numpy")
def _energy(k, first, n_b, model, opt, out, work):
    """Energy down to soc_min at open circuit, Q·∫OCV dz (Wh), at the capacity the cell is estimated to hold."""
    W, n_z, inv_dz = work.W, model.ocv_tables.shape[2], 1.0 / model.dz
    for b in range(n_b):
        c = first + b
        j, w = _grid_position(W[W_Z * CB + b], work.ocv_start[b], model.z0, inv_dz, n_z)
        above = max(_bilinear(model.energy_quads, j, w, work.ocv_u[b]) - W[W_ENERGY_FLOOR * CB + b], 0.0)
        out.energy[k, c] = above * W[W_Q * CB + b] * (out.health[k, c, OUT_SOH_CAPACITY] if opt.health else 1.0)


# -- power limits, over the block's cells at once -------------------------------------------------------------

# Rows of a block's limit work array, laid out as W's: cell b's value of row r is L[r * CB + b].
(
    L_PER_AS,  # SoC per A·s at the capacity the SoC is counted with
    L_RHO,  # the measured resistance scale
    L_OCV,
    L_OCV_SLOPE,  # OCV (with the cell's OCV bias) at z and its slope in SoC: every limit's end voltage at no current
    L_V_REST,  # the voltage now without a pulse's own drop ρ·R0·I and its sign's hysteresis M0
    L_R0,  # ρ·R0 at z: a pulse's drop at its start, per amp
    L_PER_AMP,  # SoC moved per amp over the horizon, in the side's direction
    L_TOP,  # the largest current the start voltage, the end SoC and the cap allow
    L_CURRENT,  # the current evaluated, its end SoC, and the OCV and slope there
    L_Z_END,
    L_OCV_END,
    L_OCV_SLOPE_END,
    L_EXCESS,  # sign·(v − v_limit) at the end of the horizon, and its derivative in the current
    L_SLOPE,
    L_SEARCHING,  # 1 while the search for the cell goes on
    L_LO,  # the bracket: the largest current known within the limit, the smallest known beyond
    L_EXCESS_LO,
    L_HI,
    L_EXCESS_HI,  # nan until a current beyond the limit is evaluated
    L_WEIGHT,  # a knot's hat weight at the end SoC, and its slope
    L_EDGE,
    L_CHARGE_CAP,  # per side, the limit of the last horizon (the next one's cap), and the lowest power
    L_DISCHARGE_CAP,
    L_CHARGE_POWER,
    L_DISCHARGE_POWER,
    N_L,
) = range(26)


class Side(NamedTuple):
    """A direction of current and the limits it runs into."""

    sign: float  # +1 charge, −1 discharge
    soc_limit: float  # soc_max, soc_min
    v_limit: int  # the W row of the model's v_max, v_min
    cap: int  # the L rows of its current cap and its power
    power: int


@njit(cache=True, inline="always")
def _ocv_rows(z, z_row, ocv_row, slope_row, every, n_b, model, work):
    """OCV with the cell's OCV bias, and its slope in SoC, at the SoC in row z_row of z (W or L) into rows
    of L, for every cell or those whose search goes on: a position pass the compiler vectorises, then the
    look-ups."""
    W, L, at = work.W, work.L, work.limit_at
    inv_dz, n_z = 1.0 / model.dz, model.ocv_tables.shape[2]
    for b in range(n_b):
        at[b], L[ocv_row * CB + b] = _grid_position(z[z_row * CB + b], work.ocv_start[b], model.z0, inv_dz, n_z)
    for b in range(n_b):
        if every or L[L_SEARCHING * CB + b] > 0.0:
            ocv, slope = _bilinear_and_slope(model.quads, at[b], L[ocv_row * CB + b], work.ocv_u[b], inv_dz)
            L[ocv_row * CB + b] = ocv + W[W_D * CB + b]
            L[slope_row * CB + b] = slope


@njit(cache=True, inline="always")
def _resistance_rows(z, z_row, n_b, model, work, r):
    """Each resistance at the SoC in row z_row of z (W or L), R0 then each RC branch's, in r's first rows,
    and its slope in SoC in the rows after them: through the knots' hat functions, cells innermost."""
    L, knots, hats, knot_r = work.L, model.knots, model.hats, work.knot_r
    n_k, n_res = knots.shape[0], work.irc.shape[0] + 1
    z_lo, z_hi = np.inf, -np.inf
    for b in range(n_b):
        z_lo, z_hi = min(z_lo, z[z_row * CB + b]), max(z_hi, z[z_row * CB + b])
    for row in range(2 * n_res):
        for b in range(n_b):
            r[row, b] = 0.0
    m_first, m_last = _knot_range(knots, z_lo, z_hi)
    for m in range(m_first, m_last + 1):
        hat = (hats[0, m], hats[1, m], hats[2, m], hats[3, m])
        below, at, above = knots[max(m - 1, 0)], knots[m], knots[min(m + 1, n_k - 1)]
        for b in range(n_b):
            L[L_WEIGHT * CB + b] = _hat(z[z_row * CB + b], hat)
            L[L_EDGE * CB + b] = _hat_edge(z[z_row * CB + b], hat, below, at, above)
        for branch in range(n_res):
            for b in range(n_b):
                value = knot_r[branch * n_k + m, b]
                r[branch, b] += L[L_WEIGHT * CB + b] * value
                r[n_res + branch, b] += L[L_EDGE * CB + b] * value


@njit(cache=True, inline="always")
def _resistances_at_z(n_b, model, work):
    """The resistances and their slopes at the updated z into r_now, and the RC branches' voltage there,
    Σ R·i, into W_V_RC: once per step for both the health's resistance steps and the limits."""
    W, r_now, irc = work.W, work.r_now, work.irc
    _resistance_rows(W, W_Z, n_b, model, work, r_now)
    for b in range(n_b):
        W[W_V_RC * CB + b] = 0.0
    for branch in range(irc.shape[0]):
        for b in range(n_b):
            W[W_V_RC * CB + b] += r_now[branch + 1, b] * irc[branch, b]


@njit(cache=True, inline="always", error_model="numpy")
def _end_excess(n, side, ocv_row, slope_row, r, n_b, work):
    """How far the voltage is beyond its limit, sign·(v − v_limit), at the end of horizon n while the
    current L_CURRENT (a magnitude) flows in side's direction from the present state, and its derivative
    in the current, into L_EXCESS and L_SLOPE; from the OCV and its slope (rows ocv_row, slope_row of L)
    and the resistances and their slopes (r, see `_resistance_rows`) at the end SoC. The voltage is affine
    in the current but for the SoC dependence of the OCV and the resistances and for the hysteresis: the
    derivative has them all."""
    W, L, irc, sign = work.W, work.L, work.irc, side.sign
    n_rc = irc.shape[0]
    for b in range(n_b):
        current, per_amp, rho = L[L_CURRENT * CB + b], L[L_PER_AMP * CB + b], L[L_RHO * CB + b]
        h, m, gamma = W[W_H * CB + b], W[W_M * CB + b], W[W_GAMMA * CB + b]
        decay = exp_neg(gamma * per_amp * current)
        # R0 carries the pulse's current at once
        L[L_EXCESS * CB + b] = (
            L[ocv_row * CB + b] + W[W_M0 * CB + b] * sign + m * (sign + (h - sign) * decay)
        ) + rho * r[0, b] * sign * current
        L[L_SLOPE * CB + b] = (L[slope_row * CB + b] + m * gamma * (1.0 - sign * h) * decay) * per_amp + rho * (
            r[0, b] + r[n_rc + 1, b] * per_amp * sign * current
        )
    for branch in range(n_rc):  # each RC branch's current moves towards the pulse's over the horizon
        for b in range(n_b):
            current, per_amp, rho = L[L_CURRENT * CB + b], L[L_PER_AMP * CB + b], L[L_RHO * CB + b]
            a = work.rc_horizon[n * n_rc + branch, b]
            i_end = rc_step(irc[branch, b], a, sign * current)
            resistance, slope = r[branch + 1, b], r[n_rc + 2 + branch, b]
            L[L_EXCESS * CB + b] += rho * resistance * i_end
            L[L_SLOPE * CB + b] += rho * (resistance * (1.0 - a) + slope * per_amp * i_end)
    for b in range(n_b):
        L[L_EXCESS * CB + b] = sign * (L[L_EXCESS * CB + b] - W[side.v_limit * CB + b])


@njit(cache=True, inline="always", error_model="numpy")
def _newton_step(top, lo, hi, excess_lo, excess_hi, current, excess, slope):
    """One step of the search for the largest current within the limit: the bracket with the current just
    evaluated, and the next current to evaluate (nan: the search is done). Newton's step where it falls
    inside the bracket, else a secant step in it, else its top: so the first crossing is found where the
    voltage is not monotone in the current (near empty)."""
    if excess <= 0.0:
        lo, excess_lo = current, excess
    else:
        hi, excess_hi = current, excess
    step = current - excess / slope if slope > 0.0 else np.nan
    if lo == top or hi - lo <= LIMIT_TOLERANCE * top or abs(step - current) <= LIMIT_TOLERANCE * top:
        following = np.nan
    elif lo < step < hi:
        following = step
    elif excess_hi > 0.0:
        following = lo + (hi - lo) * excess_lo / (excess_lo - excess_hi)
    else:
        following = hi
    return lo, hi, excess_lo, excess_hi, following


@njit(cache=True, inline="always", error_model="numpy")
def _current_limit(n, side, n_b, model, opt, work):
    """Per cell, the largest current magnitude up to its cap (L row side.cap) in side's direction that keeps
    the voltage within its limit at the start of horizon n and at its end, and the SoC at its end within
    its limit; it replaces the cap, and the power at it (at the lower of the two voltages) lowers side's
    power.

    SoC and start voltage are affine in the current: their limits are closed-form. The end voltage is
    solved by Newton's method from no current (`_newton_step`), over every cell still searching at once;
    the usual cell, far from its voltage limits, is done at its cap after one evaluation there. The answer
    is the secant root of the last bracket, or the largest current seen within the limit."""
    W, L, sign = work.W, work.L, side.sign
    horizon = opt.horizons[n]
    searching = 0
    for b in range(n_b):  # closed forms, and the end voltage at no current from the OCV and resistances at z
        per_amp = soc_per_amp(sign, W[W_ETA * CB + b], horizon, L[L_PER_AS * CB + b])
        L[L_PER_AMP * CB + b] = per_amp
        room = sign * (W[side.v_limit * CB + b] - (L[L_V_REST * CB + b] + sign * W[W_M0 * CB + b]))
        r0 = L[L_R0 * CB + b]
        by_start = room / r0 if r0 > 0.0 else (np.inf if room >= 0.0 else 0.0)
        soc_room = sign * (side.soc_limit - W[W_Z * CB + b]) / per_amp
        L[L_TOP * CB + b] = max(0.0, min(L[side.cap * CB + b], soc_room, by_start))
        L[L_CURRENT * CB + b] = 0.0
    _end_excess(n, side, L_OCV, L_OCV_SLOPE, work.r_now, n_b, work)
    for b in range(n_b):
        top, excess, slope = L[L_TOP * CB + b], L[L_EXCESS * CB + b], L[L_SLOPE * CB + b]
        search = excess <= 0.0 and top > 0.0
        searching += search
        L[L_SEARCHING * CB + b] = 1.0 if search else 0.0
        L[L_LO * CB + b], L[L_EXCESS_LO * CB + b] = 0.0, excess  # no current: within, or the answer is 0
        L[L_HI * CB + b], L[L_EXCESS_HI * CB + b] = top, np.nan
        L[L_CURRENT * CB + b] = (top if slope <= 0.0 else min(top, -excess / slope)) if search else 0.0
    for _ in range(NEWTON_STEPS if searching > 0 else 0):
        for b in range(n_b):
            L[L_Z_END * CB + b] = W[W_Z * CB + b] + sign * L[L_PER_AMP * CB + b] * L[L_CURRENT * CB + b]
        _ocv_rows(L, L_Z_END, L_OCV_END, L_OCV_SLOPE_END, False, n_b, model, work)
        _resistance_rows(L, L_Z_END, n_b, model, work, work.r_end)
        _end_excess(n, side, L_OCV_END, L_OCV_SLOPE_END, work.r_end, n_b, work)
        searching = 0
        for b in range(n_b):
            lo, hi, excess_lo, excess_hi, following = _newton_step(
                L[L_TOP * CB + b],
                L[L_LO * CB + b],
                L[L_HI * CB + b],
                L[L_EXCESS_LO * CB + b],
                L[L_EXCESS_HI * CB + b],
                L[L_CURRENT * CB + b],
                L[L_EXCESS * CB + b],
                L[L_SLOPE * CB + b],
            )
            search = L[L_SEARCHING * CB + b] > 0.0  # a cell done keeps its bracket (selects, not branches)
            still = search and following == following
            L[L_LO * CB + b] = lo if search else L[L_LO * CB + b]
            L[L_HI * CB + b] = hi if search else L[L_HI * CB + b]
            L[L_EXCESS_LO * CB + b] = excess_lo if search else L[L_EXCESS_LO * CB + b]
            L[L_EXCESS_HI * CB + b] = excess_hi if search else L[L_EXCESS_HI * CB + b]
            L[L_CURRENT * CB + b] = following if still else L[L_CURRENT * CB + b]
            L[L_SEARCHING * CB + b] = 1.0 if still else 0.0
            searching += still
        if searching == 0:
            break
    for b in range(n_b):
        lo, hi, excess_lo, excess_hi = (
            L[L_LO * CB + b],
            L[L_HI * CB + b],
            L[L_EXCESS_LO * CB + b],
            L[L_EXCESS_HI * CB + b],
        )
        current = lo + (hi - lo) * excess_lo / (excess_lo - excess_hi) if excess_hi > 0.0 else lo
        # at the secant root the end voltage is at its limit; at lo it is what was computed there
        v_end = W[side.v_limit * CB + b] + sign * (0.0 if excess_hi > 0.0 else excess_lo)
        v_start = L[L_V_REST * CB + b] + sign * W[W_M0 * CB + b] + sign * L[L_R0 * CB + b] * current
        L[side.cap * CB + b] = current
        L[side.power * CB + b] = min(L[side.power * CB + b], current * min(v_start, v_end))


@njit(cache=True, inline="always", error_model="numpy")
def _limits(k, first, n_b, model, opt, filt, limits_out, work):
    """The largest charge and discharge current and power per horizon, with the resistances scaled by
    the measured ρ and the OCV by the cell's OCV bias, as the filter sees the voltage. Horizons ascend: a
    longer pulse also has to hold over a shorter one's span, so its limits are capped by the shorter one's.
    The resistances at z and the RC branches' voltage there are in r_now and W_V_RC (`_resistances_at_z`)."""
    W, L, r_now = work.W, work.L, work.r_now
    for b in range(n_b):
        L[L_RHO * CB + b] = filt.state[first + b, RHO]
        L[L_PER_AS * CB + b] = W[W_PER_AS * CB + b] * (W[W_G * CB + b] if opt.adapt else 1.0)
        L[L_CHARGE_CAP * CB + b] = opt.max_charge_c * W[W_Q * CB + b]
        L[L_DISCHARGE_CAP * CB + b] = opt.max_discharge_c * W[W_Q * CB + b]
        L[L_CHARGE_POWER * CB + b] = L[L_DISCHARGE_POWER * CB + b] = np.inf
    _ocv_rows(W, W_Z, L_OCV, L_OCV_SLOPE, True, n_b, model, work)
    for b in range(n_b):
        v_rc = L[L_RHO * CB + b] * W[W_V_RC * CB + b]
        L[L_V_REST * CB + b] = L[L_OCV * CB + b] + W[W_M * CB + b] * W[W_H * CB + b] + v_rc
        L[L_R0 * CB + b] = L[L_RHO * CB + b] * r_now[0, b]
    charge = Side(1.0, opt.soc_max, W_V_MAX, L_CHARGE_CAP, L_CHARGE_POWER)
    discharge = Side(-1.0, opt.soc_min, W_V_MIN, L_DISCHARGE_CAP, L_DISCHARGE_POWER)
    for n in range(opt.horizons.shape[0]):
        _current_limit(n, charge, n_b, model, opt, work)
        _current_limit(n, discharge, n_b, model, opt, work)
        for b in range(n_b):
            out = limits_out[k, first + b]
            out[n * N_LIMITS + 0] = L[L_CHARGE_CAP * CB + b]
            out[n * N_LIMITS + 1] = L[L_DISCHARGE_CAP * CB + b]
            out[n * N_LIMITS + 2] = L[L_CHARGE_POWER * CB + b]
            out[n * N_LIMITS + 3] = L[L_DISCHARGE_POWER * CB + b]


@njit(cache=True, inline="always", error_model="numpy")
def _predict(current_k, dt, n_b, opt, work):
    """The time update to the next sample, the current held for dt, over the block's cells at once:
    x by the ESC step, P = F P F' + Q, and the RC branch currents."""
    W = work.W
    adapt, joint = opt.adapt, opt.joint_var > 0
    for b in range(n_b):
        i = current_k[b]
        q_model = W[W_Q * CB + b]
        g = W[W_G * CB + b] if adapt else 1.0
        bias = W[W_B * CB + b]
        # at rest the true current is zero: the SoC holds, whatever the sensor's offset reads
        rest_s = _rest_s(W, b, i, opt)
        c0 = 0.0 if rest_s >= opt.rest_min_s else soc_per_amp(i, W[W_ETA * CB + b], dt, W[W_PER_AS * CB + b])
        W[W_REST_S * CB + b] = rest_s + dt if rest_s >= 0.0 else 0.0
        moved = c0 * g * (i - bias)
        W[W_Z * CB + b] += moved
        W[W_H * CB + b], decay = hysteresis_step(W[W_H * CB + b], c0 * g * i, W[W_GAMMA * CB + b], i)
        W[W_MOVED * CB + b] += c0 * (i - bias)  # moved / g
        # F is the identity but for dz/db = a, dz/dg = f and dh/dh = decay.
        a = -c0 * g
        f = c0 * (i - bias) if adapt else 0.0
        p02, p03, p22, p23, p33 = (
            W[W_P02 * CB + b],
            W[W_P03 * CB + b],
            W[W_P22 * CB + b],
            W[W_P23 * CB + b],
            W[W_P33 * CB + b],
        )
        W[W_P04 * CB + b] += a * W[W_P24 * CB + b] + f * W[W_P34 * CB + b]
        W[W_P14 * CB + b] *= decay
        W[W_P44 * CB + b] += opt.q_ocv_bias * dt
        f00 = W[W_P00 * CB + b] + a * p02 + f * p03
        f01 = W[W_P01 * CB + b] + a * W[W_P12 * CB + b] + f * W[W_P13 * CB + b]
        f02 = p02 + a * p22 + f * p23
        f03 = p03 + a * p23 + f * p33
        W[W_P00 * CB + b] = (
            f00 + a * f02 + f * f03 + ((c0 * g * opt.sigma_i * q_model) ** 2 + W[W_CHARGE_VAR * CB + b] * moved * moved)
        )
        W[W_P01 * CB + b] = decay * f01
        W[W_P02 * CB + b] = f02
        W[W_P03 * CB + b] = f03
        W[W_P11 * CB + b] = decay * (decay * W[W_P11 * CB + b]) + (0.2 * (1.0 - decay)) ** 2
        W[W_P12 * CB + b] *= decay
        W[W_P13 * CB + b] *= decay
        W[W_P22 * CB + b] = p22 + opt.q_offset * q_model * q_model * dt
        W[W_P33 * CB + b] = p33 + (opt.q_capacity * dt if joint else 0.0)
    for n in range(work.irc.shape[0]):
        for b in range(n_b):
            work.irc[n, b] = rc_step(work.irc[n, b], work.rc_decay[n, b], current_k[b])


@njit(cache=True, inline="always")
def _store(first, n_b, series, filt, work):
    """The block's cells back into the carried-over state, with the last sample for the next call."""
    W, state, n_time = work.W, filt.state, series.current.shape[0]
    for b in range(n_b):
        c = first + b
        for d in range(N_X):
            state[c, d] = W[d * CB + b]
            for e in range(N_X):
                filt.cov[c, d, e] = W[P_ROWS[d, e] * CB + b]
        for n in range(work.irc.shape[0]):
            filt.i_rc[c, n] = work.irc[n, b]
        state[c, S] = W[W_SIGN * CB + b]
        state[c, MOVED] += W[W_MOVED * CB + b]
        state[c, REST_S] = W[W_REST_S * CB + b]
        state[c, NIS] = W[W_NIS * CB + b]
        state[c, PREV_I] = series.current[n_time - 1, c]
        state[c, PREV_V] = series.voltage[n_time - 1, c]
        state[c, PREV_S] = W[W_SIGN * CB + b]
        state[c, PREV_T] = series.time_s[n_time - 1]


# Covariance rows of the 5 × 5 state covariance, by (row, column).
P_ROWS = np.array(
    [
        [W_P00, W_P01, W_P02, W_P03, W_P04],
        [W_P01, W_P11, W_P12, W_P13, W_P14],
        [W_P02, W_P12, W_P22, W_P23, W_P24],
        [W_P03, W_P13, W_P23, W_P33, W_P34],
        [W_P04, W_P14, W_P24, W_P34, W_P44],
    ]
)


# Without the runtime's reference counting: every inlined helper that takes an array would
# otherwise count references to it on each call, an atomic operation that costs more than the
# arithmetic. Nothing here allocates; the work arrays come from `block_arrays`. The numpy error
# model (a division by zero gives inf, not an exception) keeps branches out of the vector loops.
@njit(cache=True, _nrt=False, error_model="numpy")  # type: ignore[call-overload]  # _nrt: numba's own flag
def _run_blocks(series, model, opt, filt, out, work):
    """Each block of cells through every sample, stage by stage."""
    n_time, n_cells = series.current.shape
    varying = series.temperature.shape[0] > 1
    for first in range(0, n_cells, CB):
        n_b = min(CB, n_cells - first)
        last = first + n_b
        _load(first, n_b, filt, opt, work)
        dt_before = np.nan
        for k in range(n_time):
            time_s = series.time_s
            dt = time_s[k + 1] - time_s[k] if k + 1 < time_s.shape[0] else 0.0  # time_s may run one past
            # Model error is slow and correlated: one independent look per correlation time.
            step = dt if dt > 0.0 else (time_s[k] - time_s[k - 1] if k > 0 else 1.0)
            inflation = max(1.0, opt.correlation_s / step)
            # this sample's rows of the block's cells: indexed from 0, the compiler sees contiguous runs
            current_k = series.current[k, first:last]
            temperature_k = series.temperature[k if varying else 0, first:last]
            dt_before = _parameters(k, dt, dt_before, temperature_k, varying, first, n_b, model, opt, work)
            _voltage(current_k, n_b, model, opt.sigma_points, work)
            _update(
                series.voltage[k, first:last],
                current_k,
                out.soc[k, first:last],
                out.bound[k, first:last],
                n_b,
                inflation,
                step,
                opt,
                work.W,
            )
            if opt.health or opt.limits:
                _resistances_at_z(n_b, model, work)
            if opt.health:
                _health(k, dt, first, n_b, series, model, opt, filt, out.health, work)
            if opt.energy:
                _energy(k, first, n_b, model, opt, out, work)
            if opt.limits:
                _limits(k, first, n_b, model, opt, filt, out.limits, work)
            if dt > 0.0:
                _predict(current_k, dt, n_b, opt, work)
        _store(first, n_b, series, filt, work)


def estimate_kernel(series: Series, model: Model, opt: Options, filt: Filter, out: Outputs) -> None:
    """Run the estimator over (time, cells): SoC and its 3-sigma bound, and health, energy and limits where
    the options ask for them; `filt` carries over between calls."""
    work = block_arrays(filt.i_rc.shape[1], len(model.knots), model.tables.shape[2], len(opt.horizons))
    _run_blocks(series, model, opt, filt, out, work)


def block_arrays(n_rc: int, n_k: int, n_columns: int, n_horizons: int) -> Block:
    """Work arrays for one block of cells: the rows of W; the RC currents and their decays over the step
    and over each limit horizon; per cell the temperature and step its cached values hold for, the
    parameter row and OCV table position at that temperature, where its OCV row starts in the OCV quads,
    and the interval there at each evaluation SoC; the limits' rows, resistances and OCV interval."""
    return Block(
        np.empty(N_W * CB),
        np.empty((n_rc, CB)),
        np.empty((n_rc, CB)),
        np.empty((n_horizons * n_rc, CB)),
        np.empty(((n_rc + 2) * n_k, CB)),
        np.empty((n_k, CB)),
        np.empty(CB),
        np.empty(CB),
        np.empty((CB, n_columns)),
        np.empty(CB, dtype=np.int64),
        np.empty(CB),
        np.empty(CB, dtype=np.int64),
        np.empty((3, CB), dtype=np.int64),
        np.empty(N_L * CB),
        np.empty((2 * (n_rc + 1), CB)),
        np.empty((2 * (n_rc + 1), CB)),
        np.empty(CB, dtype=np.int64),
    )


@njit(cache=True)
def first_outside(a, lo, hi):
    """(row, column) of the first value of the 2-D `a` that is not finite or lies outside [lo, hi],
    or None. A counting pass the compiler vectorises, then a search only if it counted any: the
    inputs checked can be hundreds of MB."""
    n_bad = 0
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            x = a[r, c]
            n_bad += (x < lo) | (x > hi) | (x != x) | (x == np.inf) | (x == -np.inf)
    if n_bad:
        for r in range(a.shape[0]):
            for c in range(a.shape[1]):
                x = a[r, c]
                if not (lo <= x <= hi and np.isfinite(x)):
                    return r, c
    return None


def ocv_quads(ocv_tables):
    """The (n_models, n_t, n_z) OCV tables as the filter reads them: per grid interval the four
    corners of its bilinear cell side by side, (T_k, z_j), (T_k, z_j+1), (T_k+1, z_j), (T_k+1, z_j+1),
    so one look-up reads 32 adjacent bytes. Rows run (model, temperature), n_z - 1 intervals each."""
    upper = np.concatenate([ocv_tables[:, 1:], ocv_tables[:, -1:]], axis=1)  # the next temperature's row
    corners = (ocv_tables[:, :, :-1], ocv_tables[:, :, 1:], upper[:, :, :-1], upper[:, :, 1:])
    return np.stack(corners, axis=-1).reshape(-1)
