"""Per-cell "delta" filters of Plett's bar-delta method: each cell as the pack's mean cell plus differences.

In a series string every cell carries the same current, so what tells one cell from the
others is slow: its SoC offset Δz, a leakage current ℓ (an internal short drains it while
the others do not), a relative capacity difference Δc (it moves faster or slower under the
same current) and a relative resistance difference δ. Measured against the mean cell at the
same instant, the model errors common to all cells cancel, so an extended Kalman filter on

    y = V_i − V_mean = OCV(z̄ + Δz) − mean OCV + (δ − mean δ)·η̄ − (η_bleed − mean η_bleed)
        (η̄: the mean cell's modelled overpotential, η_bleed: that of the cell's own bleed current)
    Δz ← Δz − dt/(3600 Q)·(I·Δc + ℓ + bleed_i − mean bleed)

sees millivolt-level differences that a full per-cell filter has to trust less. The leakage
state is the internal-short detector's evidence. Being differences from the mean cell, Δz, ℓ
and Δc sum to zero over the cells; each step keeps them so.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..cell.kernels import CAPACITY_AH, N_FIXED, ocv_at, params_at, rc_step, resistance_at, soc_per_amp

DZ, LEAK, DC, DR = range(4)
N_DELTA = 4
SLOPE_STEP = 2e-3  # SoC step of the OCV slope's central difference
MEAN_SPREAD = np.sqrt(3.0)  # the mean cell's SoC stds over which a cell's slope difference is also taken


@njit(cache=True)
def delta_kernel(
    time_s,
    dv,
    current,
    bleed,
    zbar,
    zbar_std,
    tbar,
    axis,
    table,
    knots,
    ocv_t,
    z0,
    dz,
    ocv_tab,
    noise_v,
    q_leak,
    q_dz,
    gate,
    zbar_corr_s,
    i_rc,
    bleed_rc,
    x,
    P,
    x_out,
    std_out,
):
    """Run the delta filters over (time, cells); x (cells, 4) and P (cells, 4, 4) carry over between calls.

    dv: V_i − V_mean (NaN skips a cell's update: a sensor flagged as faulty); current: (time,) string
    current, + = charging; bleed: (time, cells) balancing current drawn from each cell (A); zbar, zbar_std,
    tbar: the mean cell's SoC, its std and temperature; i_rc: the mean cell's RC branch currents, bleed_rc (cells,
    n_rc) those of each cell's bleed beyond the mean bleed (both carried over).
    Where the OCV slope differs between cells, an error in zbar looks like a difference between them: its
    std enters each cell's measurement noise, as an error that stays alike for zbar_corr_s (hours on
    LFP's plateau), so hours of it do not add up to a leak. The slope difference is the larger of the local
    one and the one across ±√3 stds of zbar: an uncertain mean cell on the plateau may really be at a knee.
    time_s runs one past the samples.
    """
    n_time, n_cells = dv.shape
    n_rc = i_rc.shape[0]
    H = np.zeros(N_DELTA)
    PH = np.empty(N_DELTA)
    ocv = np.empty(n_cells)
    slope = np.empty(n_cells)
    wide = np.empty(n_cells)
    drop = np.empty(n_cells)
    r = np.empty(n_rc + 1)
    p = np.empty(table.shape[1])
    for k in range(n_time):
        dt = time_s[k + 1] - time_s[k]
        i = current[k]
        # the mean cell's modelled overpotential: a cell with (1 + δ) times its resistances shows δ times it more
        params_at(tbar[k], axis, table, p)
        q_ah = p[CAPACITY_AH]
        r[0] = resistance_at(p, N_FIXED + n_rc, zbar[k], knots)
        eta = r[0] * i
        for j in range(n_rc):
            r[j + 1] = resistance_at(p, N_FIXED + n_rc + (j + 1) * knots.shape[0], zbar[k], knots)
            eta += r[j + 1] * i_rc[j]
        mean_bleed = 0.0
        for c in range(n_cells):
            mean_bleed += bleed[k, c]
        mean_bleed /= n_cells
        # A bleeding cell carries its bleed through its own resistances too: LFP's slow diffusion branch holds
        # millivolts of it for an hour, which on the plateau would read as a leak.
        mean_drop = 0.0
        for c in range(n_cells):
            drop[c] = r[0] * (bleed[k, c] - mean_bleed)
            for j in range(n_rc):
                drop[c] += r[j + 1] * bleed_rc[c, j]
            if dv[k, c] == dv[k, c]:
                mean_drop += drop[c]
        a = -soc_per_amp(-1.0, 1.0, dt, 1.0 / (3600.0 * q_ah))  # what a drain (leak, bleed) moves per amp
        # The measured mean is the mean of the cells' voltages, not the voltage at the mean SoC: predict it so.
        mean_ocv, mean_slope, mean_wide, mean_dr, n_valid = 0.0, 0.0, 0.0, 0.0, 0
        span = max(SLOPE_STEP, MEAN_SPREAD * zbar_std[k])
        for c in range(n_cells):
            z = zbar[k] + x[c, DZ]
            ocv[c] = ocv_at(z, tbar[k], ocv_t, z0, dz, ocv_tab)
            slope[c] = (
                ocv_at(z + SLOPE_STEP, tbar[k], ocv_t, z0, dz, ocv_tab)
                - ocv_at(z - SLOPE_STEP, tbar[k], ocv_t, z0, dz, ocv_tab)
            ) / (2.0 * SLOPE_STEP)
            wide[c] = (
                ocv_at(z + span, tbar[k], ocv_t, z0, dz, ocv_tab) - ocv_at(z - span, tbar[k], ocv_t, z0, dz, ocv_tab)
            ) / (2.0 * span)
            if dv[k, c] == dv[k, c]:
                mean_ocv += ocv[c]
                mean_slope += slope[c]
                mean_wide += wide[c]
                mean_dr += x[c, DR]
                n_valid += 1
        mean_ocv /= max(n_valid, 1)
        mean_slope /= max(n_valid, 1)
        mean_wide /= max(n_valid, 1)
        mean_dr /= max(n_valid, 1)
        mean_drop /= max(n_valid, 1)
        H[DR] = eta
        for c in range(n_cells):
            xc = x[c]
            Pc = P[c]
            y = dv[k, c]
            if y == y:  # NaN: a sensor flagged as faulty, no update
                H[DZ] = slope[c]
                innovation = y - (ocv[c] - mean_ocv + (xc[DR] - mean_dr) * eta - (drop[c] - mean_drop))
                exposure = max(abs(slope[c] - mean_slope), abs(wide[c] - mean_wide))
                s = noise_v * noise_v + (exposure * zbar_std[k]) ** 2 * max(1.0, zbar_corr_s / dt)
                for d in range(N_DELTA):
                    acc = 0.0
                    for e in range(N_DELTA):
                        acc += Pc[d, e] * H[e]
                    PH[d] = acc
                    s += H[d] * acc
                if innovation * innovation > gate * gate * s:  # a transient the model does not share: trust it less
                    s = innovation * innovation / (gate * gate)
                for d in range(N_DELTA):
                    xc[d] += PH[d] / s * innovation
                for d in range(N_DELTA):
                    for e in range(N_DELTA):
                        Pc[d, e] -= PH[d] * PH[e] / s
            x_out[k, c, :] = xc
            for d in range(N_DELTA):
                std_out[k, c, d] = np.sqrt(max(Pc[d, d], 0.0))
            # time update: Δz moves by the leak, the capacity difference under current, and the bleed
            xc[DZ] += a * (i * xc[DC] + xc[LEAK] + bleed[k, c] - mean_bleed)
            # P = F P F' with F = I + a·e_z·(e_leak + i·e_c)', then the random walks
            for e in range(N_DELTA):
                Pc[DZ, e] += a * (Pc[LEAK, e] + i * Pc[DC, e])
            for d in range(N_DELTA):
                Pc[d, DZ] += a * (Pc[d, LEAK] + i * Pc[d, DC])
            Pc[LEAK, LEAK] += q_leak * dt
            Pc[DZ, DZ] += q_dz * dt
        # The differences are from the mean cell, so they sum to zero. The voltages barely see their common part
        # (through the OCV's curvature only), and left free it drifts and moves every cell along the curve together.
        for d in (DZ, LEAK, DC):
            common = 0.0
            for c in range(n_cells):
                if dv[k, c] == dv[k, c]:
                    common += x[c, d]
            common /= max(n_valid, 1)  # the same cells as the means above
            for c in range(n_cells):
                x[c, d] -= common
        for j in range(n_rc):
            decay = np.exp(-dt / p[N_FIXED + j])
            i_rc[j] = rc_step(i_rc[j], decay, i)
            for c in range(n_cells):
                bleed_rc[c, j] = rc_step(bleed_rc[c, j], decay, bleed[k, c] - mean_bleed)
