"""Estimator throughput: openbms's compiled batched estimator against filterpy and plain numpy.

Measures cell-steps per second (one cell advanced by one sample) on one core for
1. `openbms.estimate`: the SoC filter alone (sigma-point and extended Kalman filter; health, energy
   and power limits off) on 1, 1 000 and 100 000 cells of the bundled `a123_lfp` cell; the SoC filter
   with each of health, energy and the 10 s / 30 s limits; and the full default estimate;
2. filterpy's UnscentedKalmanFilter (Merwe sigma points) and ExtendedKalmanFilter, one filter
   per cell in a Python loop, on the same ESC model read through the cell's own methods,
   state [z, h, b] (SoC, hysteresis, current offset) and openbms's default noise settings;
3. a plain numpy EKF vectorised over cells (one set of array operations per time step).
The input is a repeated drive cycle (random pulses that discharge half the capacity, then a
charge that puts it back) plus noise per cell, simulated by `openbms.simulate` for the true
SoC; the sensors add a per-cell current offset, current noise and 2 mV voltage noise. Compile
time is excluded (warm-up first); each figure is the median of 5 repeats, of wall-clock time and of
the process's CPU time (on a shared machine the wall clock also counts the waits for a core). The peak memory of
the 100 000-cell runs is the growth of the peak RSS (VmHWM) over the loaded inputs, in a fresh
process.
The SoC RMSE is against the simulated truth, first over each row's own run, then for every
filter on one identical input, to show that the compared filters are all sensible.

The goals (issue 19) are checked against this run's own figures: the full default estimate at
least 20 M cell-steps/s at 100 000 cells and 1 000x a per-cell filterpy EKF, the SoC filter alone
60 M.

Run: `.venv/bin/python bench/throughput.py` (about 15 minutes). Prints markdown tables. With `--stages`,
only the rows the stage table and the goals need: openbms at 100 000 cells (SoC filter, each stage, full)
and filterpy's EKF on one cell.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one core; must precede the numpy and numba imports

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
from filterpy.kalman import ExtendedKalmanFilter, MerweScaledSigmaPoints, UnscentedKalmanFilter

import openbms
from openbms.cell.kernels import SIGN_THRESHOLD_A, rc_current
from openbms.estimate import EstimateOptions, estimate
from openbms.estimate.api import voltage_error_std

CELL = openbms.load_cell("a123_lfp")
T_C = 25.0
DT = 1.0  # s
SOC0 = 0.9  # every filter's initial SoC; each true cell starts near it
CYCLE_STEPS = 3600
REPEATS = 5
MEMORY_CELLS = 100_000  # peak memory is measured for runs this wide
# (cells, time steps) per method: each openbms run takes 0.1-0.6 s, the others 1-10 s. The 100 000-cell
# runs are 200 steps long, so that the filter's start and the input checks do not dominate them.
CASES = {
    "openbms SPKF": [(1, 4_000_000), (1_000, 2_000), (100_000, 200)],
    "openbms EKF": [(1, 4_000_000), (1_000, 2_000), (100_000, 200)],
    "openbms SPKF + health": [(100_000, 200)],
    "openbms SPKF + energy": [(100_000, 200)],
    "openbms SPKF + limits": [(100_000, 200)],
    "openbms full (default)": [(1_000, 2_000), (100_000, 200)],
    "filterpy UKF": [(1, 4_000), (20, 200)],
    "filterpy EKF": [(1, 4_000), (20, 200)],
    "numpy EKF": [(1_000, 2_000), (100_000, 200)],
}
REFERENCE = ("filterpy EKF", 1)  # the ratio column divides by this row's throughput
GOALS = (("openbms full (default)", 20e6, 1000.0), ("openbms SPKF", 60e6, None))  # at the widest run of each
ACCURACY_CASE = (1, 4_000)  # every filter runs on this one input for a like-for-like RMSE


@dataclass(frozen=True)
class Inputs:
    """Measured current and voltage over (time, cells), and the true SoC they came from."""

    time_s: np.ndarray
    current: np.ndarray
    voltage: np.ndarray
    soc: np.ndarray

    def head(self, steps: int, cells: int) -> "Inputs":
        return Inputs(self.time_s[:steps], *(getattr(self, f.name)[:steps, :cells] for f in fields(self)[1:]))


def drive_cycle(rng, q_ah: float) -> np.ndarray:
    """One hour of drive-like current (A, + = charging): pulses of random level and length that
    discharge half the capacity, then a steady charge that puts exactly that charge back, so
    the SoC stays in range however often the cycle repeats."""
    half = CYCLE_STEPS // 2
    levels = np.clip(rng.normal(-1.0, 1.5, half), -4.0, 2.0) * q_ah
    drive = np.repeat(levels, rng.integers(5, 60, half))[:half]
    eta = float(CELL.param("coulombic_efficiency", T_C))  # its charging pulses count η times
    drive *= -0.5 * q_ah * 3600.0 / (np.sum(np.where(drive > 0, eta, 1.0) * drive) * DT)
    return np.concatenate([drive, np.full(CYCLE_STEPS - half, 0.5 * q_ah * 3600.0 / ((CYCLE_STEPS - half) * DT * eta))])


def make_inputs(n_cells: int, n_steps: int) -> Inputs:
    """The drive cycle repeated, with its own current noise (0.05 C) and start SoC per cell,
    through the cell model for the truth; the sensors add a per-cell offset (0.005 C),
    current noise (0.002 C) and 2 mV voltage noise."""
    rng = np.random.default_rng(n_cells * 7919 + n_steps)
    q = float(CELL.param("capacity_ah", T_C))
    time_s = np.arange(n_steps) * DT
    true_current = np.resize(drive_cycle(np.random.default_rng(0), q), n_steps)[:, None]
    true_current = true_current + rng.normal(0.0, 0.05 * q, (n_steps, n_cells))
    soc0 = np.clip(rng.normal(SOC0, 0.02, n_cells), 0.8, 0.97)
    sim = openbms.simulate(CELL, time_s, true_current, temperature_c=T_C, soc0=soc0)
    current = true_current + rng.normal(0.0, 0.005 * q, n_cells) + rng.normal(0.0, 0.002 * q, true_current.shape)
    voltage = sim.voltage_v + rng.normal(0.0, 0.002, true_current.shape)
    return Inputs(time_s, current, voltage, sim.soc)


class Esc:
    """The ESC model at one temperature, through the cell's own methods, with openbms's default
    noise settings: what filterpy and the numpy EKF filter is exactly what openbms filters."""

    def __init__(self, cell=CELL, t=T_C):
        self.cell, self.t = cell, t
        scalars = ("capacity_ah", "coulombic_efficiency", "hysteresis_rate", "m0_v", "m_v")
        self.q, self.eta, self.gamma, self.m0, self.m = (float(cell.param(name, t)) for name in scalars)
        self.tau = cell.param("rc_tau_s", t)  # (n_rc,)
        self.rc_r = cell.param("rc_r_ohm", t)  # (n_rc, n_knots)
        defaults = EstimateOptions()
        opt = defaults.to_kernel()
        self.sigma_i, self.q_offset = opt.sigma_i, opt.q_offset
        # Charge moved is uncertain by the gain error and, with health off, by the capacity prior.
        self.moved_var = opt.gain_std**2 + opt.prior_s_var
        self.var_v = float(voltage_error_std(cell, defaults, t)) ** 2
        self.inflation = max(1.0, opt.correlation_s / DT)  # correlated model error
        self.ocv_scale = opt.ocv_scale
        self.x0 = np.array([SOC0, 0.0, 0.0])
        self.p0 = np.diag([defaults.soc0_std**2, 0.6**2, (defaults.offset_std_c * self.q) ** 2])

    def voltage(self, z, h, b, i, s, i_rc):
        """hx = OCV(z) + M0·s + M·h + R0(z)·(i − b) + Σ R_j(z)·i_Rj, elementwise over cells."""
        v = self.cell.ocv(z, self.t) + self.m0 * s + self.m * h + self.cell.resistance_ohm(z, self.t) * (i - b)
        for j, r_knots in enumerate(self.rc_r):
            v = v + np.interp(z, self.cell.resistance_soc, r_knots) * i_rc[..., j]
        return v

    def linearise(self, z, h, b, i, s, i_rc):
        """(hx, dhx/d[z, h, b]): numerical in z (OCV and resistances), exact in h and b."""
        v = self.voltage(z, h, b, i, s, i_rc)
        dv_dz = (self.voltage(z + 1e-4, h, b, i, s, i_rc) - v) / 1e-4
        return v, np.stack(np.broadcast_arrays(dv_dz, self.m, -self.cell.resistance_ohm(z, self.t)), axis=-1)

    def r_v(self, z, dv_dz):
        """openbms's voltage error variance: the fit's, and the OCV's SoC scale seen through its slope."""
        return (self.var_v + (dv_dz * self.ocv_scale * (1.0 - z)) ** 2) * self.inflation

    def transition(self, b, i, dt):
        """x' = F·x + g and the process noise Q (openbms's) over dt; the ESC update is linear in
        [z, h, b] for a given current, so one form serves the UKF, both EKFs and any batch."""
        c = np.where(i > 0, self.eta, 1.0) * dt / (3600.0 * self.q)
        decay = np.exp(-np.abs(c * i) * self.gamma)
        F = np.zeros(np.shape(i) + (3, 3))
        F[..., 0, 0] = F[..., 2, 2] = 1.0
        F[..., 0, 2] = -c
        F[..., 1, 1] = decay
        g = np.stack(np.broadcast_arrays(c * i, (1.0 - decay) * np.sign(i), 0.0), axis=-1)
        Q = np.zeros_like(F)
        Q[..., 0, 0] = (c * self.sigma_i) ** 2 + self.moved_var * (c * (i - b)) ** 2
        Q[..., 1, 1] = (0.2 * (1.0 - decay)) ** 2
        Q[..., 2, 2] = self.q_offset * dt
        return F, g, Q

    def rc_currents(self, time_s, current):
        """RC branch currents of one cell from its measured current, as openbms follows them."""
        out = np.empty((len(current), len(self.tau)))
        for j, tau in enumerate(self.tau):
            rc_current(time_s, np.ascontiguousarray(current), float(tau), out[:, j])
        return out


def sign_memory(current: np.ndarray) -> np.ndarray:
    """s: the sign of the latest non-zero current per cell (0 before any), as openbms keeps it."""
    rows = np.arange(len(current))[:, None]
    latest = np.maximum.accumulate(np.where(np.abs(current) > SIGN_THRESHOLD_A, rows, -1), axis=0)
    return np.where(latest >= 0, np.sign(np.take_along_axis(current, np.maximum(latest, 0), axis=0)), 0.0)


def steps_dt(time_s: np.ndarray) -> np.ndarray:
    """Time to the next sample; 0 after the last, where openbms skips the time update."""
    return np.append(np.diff(time_s), 0.0)


def run_openbms(inp: Inputs, sigma_points: bool = True, **stages: bool) -> np.ndarray:
    """`openbms.estimate` with the stages asked for (all of them: the default estimate)."""
    options = EstimateOptions(sigma_points=sigma_points, **{"health": False, "limits": False, "energy": False} | stages)
    return estimate(CELL, inp.time_s, inp.current, inp.voltage, temperature_c=T_C, soc0=SOC0, options=options).soc


def _ukf(esc: Esc, i, s, i_rc):
    """filterpy's UKF on one cell; alpha = 1, kappa = 0 put the sigma points at ±√3 std, as openbms's CDKF."""
    f = UnscentedKalmanFilter(
        3,
        1,
        DT,
        hx=lambda x, **a: np.atleast_1d(esc.voltage(*x, **a)),
        fx=lambda x, dt, F, g: F @ x + g,
        points=MerweScaledSigmaPoints(3, 1.0, 2.0, 0.0),
    )
    f.x, f.P, f.Q = esc.x0.copy(), esc.p0.copy(), np.zeros((3, 3))
    f.predict(F=np.eye(3), g=np.zeros(3))  # filterpy's UKF needs sigma points before its first update

    def update(k, v):
        args = (i[k], s[k], i_rc[k])
        f.update(v, R=np.array([[esc.r_v(f.x[0], esc.linearise(*f.x, *args)[1][0])]]), i=i[k], s=s[k], i_rc=i_rc[k])

    def predict(F, g):
        f.predict(F=F, g=g)

    return f, update, predict


def _ekf(esc: Esc, i, s, i_rc):
    """filterpy's EKF on one cell; the ESC update is linear in the state for a given current, so
    filterpy's own x = F·x + B·u is exact with B = I and u = g."""
    f = ExtendedKalmanFilter(3, 1)
    f.x, f.P, f.B = esc.x0[:, None].copy(), esc.p0.copy(), np.eye(3)

    def hx(x, *args):
        return np.reshape(esc.voltage(*x[:, 0], *args), (1, 1))

    def jacobian(x, *args):
        return esc.linearise(*x[:, 0], *args)[1].reshape(1, 3)

    def update(k, v):
        args = (i[k], s[k], i_rc[k])
        f.R = np.array([[esc.r_v(f.x[0, 0], jacobian(f.x, *args)[0, 0])]])
        f.update(v, jacobian, hx, args=args, hx_args=args)

    def predict(F, g):
        f.F = F
        f.predict(u=g[:, None])

    return f, update, predict


def run_filterpy(inp: Inputs, unscented: bool) -> np.ndarray:
    """One filterpy filter per cell in a Python loop, the way filterpy serves a pack."""
    esc, soc, dt = Esc(), np.empty_like(inp.current), steps_dt(inp.time_s)
    for c, s in enumerate(sign_memory(inp.current).T):
        i, v = inp.current[:, c], inp.voltage[:, c]
        f, update, predict = (_ukf if unscented else _ekf)(esc, i, s, esc.rc_currents(inp.time_s, i))
        for k in range(len(i)):
            update(k, v[k])
            soc[k, c] = f.x.flat[0]
            F, g, f.Q = esc.transition(f.x.flat[2], i[k], dt[k])
            predict(F, g)
    return soc


def run_numpy_ekf(inp: Inputs) -> np.ndarray:
    """The EKF vectorised over cells: a few dozen numpy array operations per time step."""
    esc, dt = Esc(), steps_dt(inp.time_s)
    n_time, n_cells = inp.current.shape
    x, P = np.tile(esc.x0, (n_cells, 1)), np.tile(esc.p0, (n_cells, 1, 1))
    s, i_rc = np.zeros(n_cells), np.zeros((n_cells, len(esc.tau)))
    soc = np.empty_like(inp.current)
    for k in range(n_time):
        i = inp.current[k]
        s = np.where(np.abs(i) > SIGN_THRESHOLD_A, np.sign(i), s)
        y, H = esc.linearise(x[:, 0], x[:, 1], x[:, 2], i, s, i_rc)
        PH = np.einsum("nij,nj->ni", P, H)
        gain = PH / (np.einsum("ni,ni->n", H, PH) + esc.r_v(x[:, 0], H[:, 0]))[:, None]
        x += gain * (inp.voltage[k] - y)[:, None]
        P -= gain[:, :, None] * PH[:, None, :]
        soc[k] = x[:, 0]
        F, g, Q = esc.transition(x[:, 2], i, dt[k])
        x = np.einsum("nij,nj->ni", F, x) + g
        P = F @ P @ F.transpose(0, 2, 1) + Q
        a = np.exp(-dt[k] / esc.tau)
        i_rc = a * i_rc + (1.0 - a) * i[:, None]
    return soc


METHODS = {
    "openbms SPKF": partial(run_openbms, sigma_points=True),
    "openbms EKF": partial(run_openbms, sigma_points=False),
    "openbms SPKF + health": partial(run_openbms, health=True),
    "openbms SPKF + energy": partial(run_openbms, energy=True),
    "openbms SPKF + limits": partial(run_openbms, limits=True),
    "openbms full (default)": partial(run_openbms, health=True, energy=True, limits=True),
    "filterpy UKF": partial(run_filterpy, unscented=True),
    "filterpy EKF": partial(run_filterpy, unscented=False),
    "numpy EKF": run_numpy_ekf,
}


FILTERS = ("openbms SPKF", "openbms EKF", "filterpy UKF", "filterpy EKF", "numpy EKF", "openbms full (default)")
STAGES = ("openbms SPKF + health", "openbms SPKF + energy", "openbms SPKF + limits", "openbms full (default)")
# `--stages`: openbms at 100 000 cells (SoC filter, each stage, full) and the reference filter on one cell
STAGE_CASES = {method: [(MEMORY_CELLS, 200)] for method in ("openbms SPKF", *STAGES)} | {
    REFERENCE[0]: [(REFERENCE[1], 4_000)]
}


def print_stages(cpu_ns_of: dict) -> None:
    """What each stage adds to the SoC filter's cost, in CPU time per cell-step and as a multiple of the
    filter's, at the widest run that has both."""
    print("## Cost of each stage (CPU ns per cell-step, medians of this run)\n")
    print("| run | cells x steps | ns per cell-step | beyond the SoC filter | as a multiple of the filter |")
    print("|---|---:|---:|---:|---:|")
    for method in STAGES:
        case = max(c for m, c in cpu_ns_of if m == method and ("openbms SPKF", c) in cpu_ns_of)
        base, ns = cpu_ns_of[("openbms SPKF", case)], cpu_ns_of[(method, case)]
        print(
            f"| {method} | {case[0]:,} x {case[1]:,} | {ns:.1f} | {ns - base:+.1f} (filter {base:.1f}) | "
            f"{(ns - base) / base:.2f} |"
        )
    print()


def print_goals(rate_of: dict, cpu_ns_of: dict, reference: float, cpu_reference: float) -> None:
    """Each goal against the wall clock (met or not), and against CPU time, what a core of its own would give."""
    print("## Goals, from this run (each at its widest run)\n")
    print("| goal | cells x steps | measured (wall clock) | met | by CPU time |")
    print("|---|---:|---:|---|---:|")
    for method, floor, ratio in GOALS:
        case = max(c for m, c in rate_of if m == method)
        rate, cpu_rate = rate_of[(method, case)], 1e9 / cpu_ns_of[(method, case)]
        where = f"{case[0]:,} x {case[1]:,}"
        met = "yes" if rate >= floor else "no"
        print(
            f"| {method} >= {floor / 1e6:.0f} M cell-steps/s | {where} | {rate / 1e6:.2f} M | {met} | "
            f"{cpu_rate / 1e6:.2f} M |"
        )
        if ratio is not None:
            print(
                f"| {method} >= {ratio:,.0f}x {REFERENCE[0]} | {where} | {rate / reference:,.0f}x | "
                f"{'yes' if rate >= ratio * reference else 'no'} | {cpu_rate / cpu_reference:,.0f}x |"
            )
    print()


def rmse_pct(soc: np.ndarray, inp: Inputs) -> float:
    return 100.0 * float(np.sqrt(np.mean((soc - inp.soc) ** 2)))


def throughput(method: str, inp: Inputs) -> tuple[float, float, np.ndarray]:
    """Median cell-steps/s of the wall clock and CPU ns per cell-step over REPEATS runs (the machine is
    shared, so single runs wander)."""
    seconds, cpu_seconds = [], []
    for _ in range(REPEATS):
        start, cpu_start = time.perf_counter(), time.process_time()
        soc = METHODS[method](inp)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return inp.current.size / statistics.median(seconds), 1e9 * statistics.median(cpu_seconds) / inp.current.size, soc


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux keeps that across exec, so a
    spawned child would report its parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024.0  # kB


def _peak_child(method: str, path: str) -> float:
    """In a fresh process: load the inputs (no transient copies), warm up, run once; the growth of
    the peak RSS is what the run itself needed beyond its inputs."""
    inp = Inputs(**dict(np.load(path)))
    METHODS[method](inp.head(3, 2))
    before = _peak_rss_mb()
    METHODS[method](inp)
    return _peak_rss_mb() - before


def peak_mb(method: str, inp: Inputs, workdir: Path) -> float:
    path = workdir / f"inputs_{inp.current.shape[1]}x{len(inp.time_s)}.npz"
    if not path.exists():
        np.savez(path, **{f.name: getattr(inp, f.name) for f in fields(inp)})
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak_child, (method, str(path)))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", action="store_true", help="only the rows the stage table and the goals need")
    cases_to_run = STAGE_CASES if parser.parse_args(argv).stages else CASES
    started = time.perf_counter()
    inputs: dict[tuple[int, int], Inputs] = {}
    for method in METHODS:  # compile (or load numba's cache) before any timing
        METHODS[method](make_inputs(2, 3))
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for method, cases in cases_to_run.items():
            for case in cases:
                inp = inputs.setdefault(case, make_inputs(*case))
                rate, cpu_ns, soc = throughput(method, inp)
                peak = peak_mb(method, inp, Path(workdir)) if case[0] >= MEMORY_CELLS else None
                rows.append((method, case, rate, cpu_ns, rmse_pct(soc, inp), peak))
                print(
                    f"  {method:13s} {case[0]:>7,} cells x {case[1]:>9,} steps: {rate:>12,.0f} cell-steps/s",
                    file=sys.stderr,
                )
    wide = max(case for _, case, *_ in rows)
    rate_of = {(method, case): rate for method, case, rate, *_ in rows}
    cpu_ns_of = {(method, case): cpu_ns for method, case, _, cpu_ns, *_ in rows}
    reference = next(rate for (method, case), rate in rate_of.items() if (method, case[0]) == REFERENCE)
    cpu_reference = next(1e9 / ns for (method, case), ns in cpu_ns_of.items() if (method, case[0]) == REFERENCE)
    accuracy = inputs.setdefault(ACCURACY_CASE, make_inputs(*ACCURACY_CASE))
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); one thread. A shared, noisy machine: "
        f"expect tens of per cent run-to-run spread.\n"
    )
    print(f"## Estimator throughput (median of {REPEATS}; compile excluded)\n")
    print(
        "| method | cells | steps | cell-steps/s (median) | CPU ns per cell-step (median) | ratio to filterpy EKF "
        "| SoC RMSE % | peak MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for method, (cells, steps), rate, cpu_ns, rmse, peak in rows:
        print(
            f"| {method} | {cells:,} | {steps:,} | {rate:,.0f} | {cpu_ns:,.1f} | {rate / reference:,.1f} | "
            f"{rmse:.2f} | {'–' if peak is None else f'{peak:,.0f}'} |"
        )
    print(
        f"\nRatio: to filterpy EKF on {REFERENCE[1]} cell (its cost is per cell). SoC RMSE: against the "
        "simulated truth over each row's own run (short runs are dominated by the start error). Peak MB: "
        "growth of the peak RSS beyond the loaded inputs, in a fresh process (for scale: one float64 "
        f"array over {wide[0]:,} cells x {wide[1]} steps is {8 * wide[0] * wide[1] / 2**20:.0f} MB).\n"
    )
    print_stages(cpu_ns_of)
    print_goals(rate_of, cpu_ns_of, reference, cpu_reference)
    cells, steps = ACCURACY_CASE
    print(
        f"## SoC RMSE % on one identical input ({cells} cell x {steps:,} steps, start error "
        f"{100 * abs(accuracy.soc[0, 0] - SOC0):.1f} %)\n"
    )
    print("| " + " | ".join(FILTERS) + " |\n|" + "---:|" * len(FILTERS))
    print("| " + " | ".join(f"{rmse_pct(METHODS[name](accuracy), accuracy):.3f}" for name in FILTERS) + " |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
