"""`openbms.estimate`: state of charge with its bound, health and power limits from measurements."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Sequence, get_type_hints

import numpy as np
import pandas as pd

from ..cell.model import CellModel
from ..cell.packing import PackedModels, pack
from ..cell.simulate import _broadcast
from . import kernel as K

CHUNK_STEPS = 4096


# The kernel's scalar options and their types, which to_kernel() keeps whatever number type it is given.
KERNEL_SCALARS = {name: kind for name, kind in get_type_hints(K.Options).items() if kind in (float, bool)}


@dataclass(frozen=True)
class EstimateOptions:
    """Noise levels, limits and switches; defaults suit a cell-level BMS at 1 Hz."""

    voltage_std_v: float | None = None  # model error; default: see voltage_error_std
    # relative uncertainty of the SoC scale the OCV curve was measured on (its test's capacity): OCV(z) is
    # misplaced by up to this times 1 - z, which near empty the steep OCV turns into volts
    ocv_scale_std: float = 0.01
    error_correlation_s: float = 1800.0  # how long model voltage errors stay alike (weights each sample)
    sensor_voltage_std_v: float = 0.002  # voltage sensor noise, for resistance steps
    current_std_c: float = 0.002  # current noise, fraction of 1C
    current_gain_std: float = 0.02  # relative current gain uncertainty
    offset_std_c: float = 0.005  # prior std of the current-sensor offset, fraction of 1C
    offset_drift_c: float = 1e-3  # offset random walk, fraction of 1C per sqrt(hour)
    soc0_std: float = 0.05  # prior std when soc0 is given
    hysteresis0: float | None = None  # known initial hysteresis state (−1..1); default unknown
    anchor_std: float = 0.02  # SoC std below which an estimate anchors a capacity measurement
    min_soc_moved: float = 0.1  # SoC moved between capacity anchors
    capacity_memory: float = 0.95  # fading memory of capacity measurements
    capacity_prior_std: float = 0.1  # relative std of the model's capacity for this cell
    # prior std of a capacity the filter also tracks itself, between certified estimates (0: the certified only);
    # on an aged cell it keeps a current-sensor offset from absorbing the capacity's share of the SoC's drift
    joint_capacity_std: float = 0.1
    capacity_drift: float = 0.002  # relative capacity random walk in the filter, per sqrt(hour)
    resistance_step_c: float = 0.2  # current step, fraction of 1C, that measures resistance
    resistance_drift: float = 1e-8  # resistance-scale variance growth per second
    innovation_gate: float = 3.0  # innovations beyond this many sigmas inflate the noise
    soc_min: float = 0.0
    soc_max: float = 1.0
    max_charge_c: float = 1.0
    max_discharge_c: float = 3.0
    horizons_s: tuple[float, ...] = (10.0, 30.0)
    sigma_points: bool = True  # False: extended Kalman filter
    health: bool = True
    energy: bool = True  # remaining energy to soc_min (two OCV-table lookups per sample)
    adapt: bool = True  # feed the capacity estimate back into the SoC filter
    adapt_resistance: bool = True  # scale the filter's resistances by ρ, as far as it is beyond resistance_deadband
    resistance_deadband: float = 0.1  # the step method's own bias: a fresh cell reads 0.92-1.07
    # the largest resistance scale ageing gives (the life benchmark's cells 50 % slower read up to 2.9); beyond it
    # the model is another cell's: the filter scales by this much and counts the excess as model voltage error
    resistance_scale_max: float = 3.0
    limits: bool = True
    # Rests: a current within rest_current_c of zero for rest_min_s is zero (the sensor reads its offset), and
    # the voltage's readings count one look per rest_correlation_s; after relaxed_s the voltage is the OCV and
    # teaches the OCV bias (nothing else does).
    rest_current_c: float = 0.01
    rest_min_s: float = 600.0
    relaxed_s: float = 3600.0
    rest_correlation_s: float = 14400.0
    # How far the OCV curve may be from this cell's (another cell of the same kind, its ageing): a state of the
    # filter, the OCV bias, that relaxed rests where the OCV is steep tell and the flat plateau cannot. Its prior,
    # its drift per sqrt(day), and how fast its variance grows where the innovations are inconsistent (mean NIS
    # > 1): by ocv_bias_growth · (NIS − 1) · the model's error variance per consistency_s. Learnt while driving
    # too, a 6 mV prior cost the A123 drives 0.14-0.29 % RMSE; learnt at relaxed rests only, 0.0-0.1 %
    # (README: a week of life).
    ocv_bias_std_v: float = 0.006
    ocv_bias_drift_v: float = 0.003
    ocv_bias_growth: float = 10.0
    consistency_s: float = 21600.0  # memory of the innovation consistency that widens the model's error (0: off)

    def validate(self) -> "EstimateOptions":
        positive = (
            "error_correlation_s",
            "sensor_voltage_std_v",
            "current_std_c",
            "current_gain_std",
            "offset_std_c",
            "soc0_std",
            "anchor_std",
            "min_soc_moved",
            "capacity_prior_std",
            "resistance_step_c",
            "innovation_gate",
            "max_charge_c",
            "max_discharge_c",
        )
        for name in positive:
            if not 0 < getattr(self, name) < np.inf:
                raise ValueError(f"estimate option {name} must be positive and finite, got {getattr(self, name)}")
        if self.voltage_std_v is not None and not 0 < self.voltage_std_v < np.inf:
            raise ValueError(f"estimate option voltage_std_v must be positive and finite, got {self.voltage_std_v}")
        if not 1 <= self.resistance_scale_max < np.inf:
            raise ValueError(
                f"estimate option resistance_scale_max must be finite and at least 1, got {self.resistance_scale_max}"
            )
        if not 0 < self.capacity_memory <= 1:
            raise ValueError("estimate option capacity_memory must be in (0, 1]")
        if not 0 <= self.soc_min < self.soc_max <= 1:
            raise ValueError("estimate options need 0 <= soc_min < soc_max <= 1")
        for name in (
            "offset_drift_c",
            "capacity_drift",
            "joint_capacity_std",
            "resistance_drift",
            "resistance_deadband",
            "ocv_scale_std",
            "rest_current_c",
            "rest_min_s",
            "relaxed_s",
            "rest_correlation_s",
            "consistency_s",
            "ocv_bias_std_v",
            "ocv_bias_drift_v",
            "ocv_bias_growth",
        ):
            if not 0 <= getattr(self, name) < np.inf:
                raise ValueError(f"estimate option {name} must be finite and not negative, got {getattr(self, name)}")
        if (
            np.ndim(self.horizons_s) != 1
            or not len(self.horizons_s)
            or not all(np.isfinite(h) and h > 0 for h in self.horizons_s)
        ):
            raise ValueError(
                f"estimate option horizons_s needs a sequence of positive horizons, got {self.horizons_s!r}"
            )
        if self.hysteresis0 is not None and not -1 <= self.hysteresis0 <= 1:
            raise ValueError("estimate option hysteresis0 must be in [-1, 1]")
        return self

    def to_kernel(self) -> K.Options:
        """The options as the compiled kernel reads them (drifts per second), each of its declared type:
        numba compiles the kernel once per argument type, so an int given for a float would compile it again."""
        options = K.Options(
            sensor_v=self.sensor_voltage_std_v,
            sigma_i=self.current_std_c,
            gain_std=self.current_gain_std,
            q_offset=self.offset_drift_c**2 / 3600.0,
            anchor_std=self.anchor_std,
            min_moved=self.min_soc_moved,
            fade=self.capacity_memory,
            step_c=self.resistance_step_c,
            q_rho=self.resistance_drift,
            prior_s_var=self.capacity_prior_std**2,
            soc_min=self.soc_min,
            soc_max=self.soc_max,
            max_charge_c=self.max_charge_c,
            max_discharge_c=self.max_discharge_c,
            gate=self.innovation_gate,
            correlation_s=self.error_correlation_s,
            q_capacity=self.capacity_drift**2 / 3600.0,
            joint_var=self.joint_capacity_std**2,
            rho_deadband=self.resistance_deadband,
            rho_max=self.resistance_scale_max,
            ocv_scale=self.ocv_scale_std,
            rest_c=self.rest_current_c,
            rest_min_s=self.rest_min_s,
            relaxed_s=self.relaxed_s,
            rest_correlation_s=self.rest_correlation_s,
            nis_s=self.consistency_s,
            q_ocv_bias=self.ocv_bias_drift_v**2 / 86400.0,
            ocv_bias_growth=self.ocv_bias_growth,
            sigma_points=self.sigma_points,
            health=self.health,
            energy=self.energy,
            adapt=self.health and self.adapt,
            adapt_resistance=self.health and self.adapt and self.adapt_resistance,
            limits=self.limits,
            horizons=np.sort(np.asarray(self.horizons_s, dtype=float)),
        )
        return options._replace(**{name: kind(getattr(options, name)) for name, kind in KERNEL_SCALARS.items()})


@dataclass
class Limits:
    """Largest sustained current and power (magnitudes, ≥ 0) over one horizon."""

    charge_current_a: np.ndarray
    discharge_current_a: np.ndarray
    charge_power_w: np.ndarray
    discharge_power_w: np.ndarray


@dataclass
class Estimate:
    """Estimator outputs shaped like the current given: (time,) or (time, cells)."""

    time_s: np.ndarray
    soc: np.ndarray
    soc_bound: np.ndarray  # 3 sigma
    current_offset_a: np.ndarray | None = None
    hysteresis: np.ndarray | None = None
    capacity_ah: np.ndarray | None = None
    capacity_bound_ah: np.ndarray | None = None  # 3 sigma
    soh_capacity: np.ndarray | None = None  # capacity relative to the cell model's
    resistance_ohm: np.ndarray | None = None  # R0 at the present SoC and temperature
    soh_resistance: np.ndarray | None = None  # resistance relative to the cell model's
    energy_wh: np.ndarray | None = None  # available down to soc_min
    limits: dict[float, Limits] = field(default_factory=dict)

    @property
    def soc_band(self) -> tuple[np.ndarray, np.ndarray]:
        """The 3-sigma band as SoC can be, within 0-1: a wide bound near empty or full reaches past them."""
        return np.clip(self.soc - self.soc_bound, 0.0, 1.0), np.clip(self.soc + self.soc_bound, 0.0, 1.0)

    def frame(self, cell: int = 0) -> pd.DataFrame:
        """One cell's estimates as BDF-style columns (powers and currents as magnitudes)."""
        pick = (lambda a: a) if self.soc.ndim == 1 else (lambda a: a[:, cell])
        lower, upper = self.soc_band
        columns = {
            "Test Time / s": self.time_s,
            "SOC / 1": pick(self.soc),
            "SOC Bound / 1": pick(self.soc_bound),
            "SOC Lower / 1": pick(lower),
            "SOC Upper / 1": pick(upper),
        }
        if self.capacity_ah is not None:
            columns |= {
                "Capacity / Ah": pick(self.capacity_ah),
                "Capacity Bound / Ah": pick(self.capacity_bound_ah),
                "Resistance / ohm": pick(self.resistance_ohm),
                "Current Offset / A": pick(self.current_offset_a),
            }
        if self.energy_wh is not None:
            columns["Energy / Wh"] = pick(self.energy_wh)
        for n, (horizon, lim) in enumerate(self.limits.items()):
            tag = "" if n == 0 else f" {horizon:g} s"
            columns |= {
                f"Max Charge Power{tag} / W": pick(lim.charge_power_w),
                f"Max Discharge Power{tag} / W": pick(lim.discharge_power_w),
                f"Max Charge Current{tag} / A": pick(lim.charge_current_a),
                f"Max Discharge Current{tag} / A": pick(lim.discharge_current_a),
            }
        return pd.DataFrame(columns)


def estimate(
    model: CellModel | Sequence[CellModel],
    time_s,
    current_a,
    voltage_v,
    temperature_c=25.0,
    soc0=None,
    options: EstimateOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Estimate:
    """Estimate SoC (with a 3-sigma bound), health and power limits of one or many cells.

    current_a, voltage_v: (time,) or (time, cells), + = charging. temperature_c and soc0
    broadcast. soc0=None starts from the first voltage with a wide prior.
    """
    current = np.asarray(current_a, dtype=float)
    n_cells = current.shape[1] if current.ndim == 2 else 1
    out = Estimator(model, n_cells, soc0, options).update(time_s, current_a, voltage_v, temperature_c, on_progress)
    if current.ndim <= 1:
        _squeeze(out)
    return out


class Estimator:
    """The estimator as a running object for a BMS loop: feed samples as they arrive; states carry over.

    The last sample of each update is held for the interval before it (a steady sample rate
    makes this exact), so the next update starts from the right SoC.
    """

    def __init__(
        self, model: CellModel | Sequence[CellModel], n_cells: int, soc0=None, options: EstimateOptions | None = None
    ):
        self.model = model
        self.n_cells = n_cells
        self.soc0 = _checked_soc0(soc0, n_cells)
        self.options = (options or EstimateOptions()).validate()
        self.packed = pack(model, n_cells)
        self.kernel_model = kernel_model(self.packed, self.options)
        self.kernel_options = self.options.to_kernel()
        self.horizons = self.kernel_options.horizons
        models = self.packed.models
        # beyond these a value is in another unit (mA, mV)
        self.max_current_a = MAX_C_RATE * max(float(m.param("capacity_ah", 25.0)) for m in models)
        self.max_voltage_v = 2.0 * max(m.voltage_max_v for m in models)
        self.state: np.ndarray | None = None  # (cells, N_STATE), set by the first update or restore
        self.cov: np.ndarray | None = None
        self.i_rc: np.ndarray | None = None
        self.last_time_s: float | None = None
        self.last_dt_s: float | None = None

    def update(
        self, time_s, current_a, voltage_v, temperature_c=25.0, on_progress: Callable[[int, int], None] | None = None
    ) -> Estimate:
        """Estimates at these samples, (time, cells); current_a and voltage_v are (time, cells) or (cells,) for one sample."""
        time_s, current, voltage = self._checked(time_s, current_a, voltage_v)
        n_time, n_cells = current.shape
        # one temperature for every sample is passed as a single row: the kernel reads row 0 throughout
        steady = np.ndim(temperature_c) == 0
        temperature = _broadcast(temperature_c, (1 if steady else n_time, n_cells), "temperature_c")
        _check_range("temperature_c", temperature, TEMPERATURE_RANGE_C, "degC (is it in kelvin?)")
        # Everything an update changes is committed together once its last chunk is done: interrupted
        # before (Ctrl-C, a failing progress callback), it leaves the filter as it was.
        if self.state is None or self.cov is None or self.i_rc is None:
            state, cov, i_rc = initial_state(
                self.packed, current[0], voltage[0], temperature[0], self.soc0, self.options
            )
        elif n_time <= CHUNK_STEPS:  # one chunk: no copy, the progress callback comes after the commit
            state, cov, i_rc = self.state, self.cov, self.i_rc
        else:
            state, cov, i_rc = self.state.copy(), self.cov.copy(), self.i_rc.copy()
        hold_dt = self._hold_dt(time_s)
        times = np.append(time_s, time_s[-1] + hold_dt)
        o = self.options
        soc = np.empty((n_time, n_cells))
        bound = np.empty((n_time, n_cells))
        health = np.empty((n_time, n_cells, K.N_HEALTH) if o.health else (1, 1, K.N_HEALTH))
        energy = np.empty((n_time, n_cells) if o.energy else (1, 1))
        limits = np.empty((n_time, n_cells, K.N_LIMITS * len(self.horizons)) if o.limits else (1, 1, 1))
        for start in range(0, n_time, CHUNK_STEPS):
            stop = min(start + CHUNK_STEPS, n_time)
            series = K.Series(
                times[start : stop + 1],
                current[start:stop],
                voltage[start:stop],
                temperature if steady else temperature[start:stop],
            )
            outputs = K.Outputs(
                soc[start:stop],
                bound[start:stop],
                health[start:stop] if o.health else health,
                energy[start:stop] if o.energy else energy,
                limits[start:stop] if o.limits else limits,
            )
            K.estimate_kernel(series, self.kernel_model, self.kernel_options, K.Filter(state, cov, i_rc), outputs)
            if stop == n_time:
                self.state, self.cov, self.i_rc = state, cov, i_rc
                self.last_time_s, self.last_dt_s = time_s[-1], hold_dt
            if on_progress:
                on_progress(stop, n_time)
        return self._result(time_s, soc, bound, health, energy, limits)

    def held_times(self, time_s: np.ndarray) -> np.ndarray:
        """time_s and one more: the last sample is held for the interval before it (that of the last call
        when this one has a single sample), so the time update after it assumes a steady rate."""
        return np.append(time_s, time_s[-1] + self._hold_dt(time_s))

    def _hold_dt(self, time_s: np.ndarray) -> float:
        if len(time_s) > 1:
            return float(time_s[-1] - time_s[-2])
        if self.last_time_s is not None:
            return float(time_s[0] - self.last_time_s)
        return self.last_dt_s if self.last_dt_s is not None else 1.0

    def snapshot(self) -> dict | None:
        """Everything the filter has learned (SoC, hysteresis, offset, capacity, resistance), JSON-ready."""
        if self.state is None or self.cov is None or self.i_rc is None:
            return None
        return {
            "model": self.packed.name,
            "state": self.state.tolist(),
            "cov": self.cov.tolist(),
            "i_rc": self.i_rc.tolist(),
        }

    def restore(self, snapshot: dict) -> None:
        """Resume from `snapshot()` of a filter for the same cells and model, instead of the first voltage.
        The snapshot is copied: the filter never writes into the caller's data."""
        if not isinstance(snapshot, dict):
            raise ValueError(
                f"no saved filter state to restore (got {type(snapshot).__name__}): "
                "a filter saved before its first sample has none"
            )
        missing = [k for k in ("state", "cov", "i_rc") if k not in snapshot]
        if missing:
            raise ValueError(f"the saved filter state lacks {missing}")
        if snapshot.get("model", self.packed.name) != self.packed.name:
            raise ValueError(
                f"the saved filter state is for cell model {snapshot['model']!r}, this filter runs {self.packed.name!r}"
            )
        state, cov, i_rc = (np.array(snapshot[k], dtype=float) for k in ("state", "cov", "i_rc"))
        if (
            state.shape != (self.n_cells, K.N_STATE)
            or cov.shape != (self.n_cells, K.N_X, K.N_X)
            or i_rc.shape != (self.n_cells, self.packed.n_rc)
        ):
            raise ValueError(
                f"the saved filter state is for another pack or model version: state {state.shape}, "
                f"expected {(self.n_cells, K.N_STATE)}"
            )
        # NaN marks the time of a previous sample not yet seen; anything else must be a number
        if not (
            np.isfinite(np.delete(state, K.PREV_T, axis=1)).all() and np.isfinite(cov).all() and np.isfinite(i_rc).all()
        ) or not np.all(np.abs(state[:, K.Z] - 0.5) <= 1.0):
            raise ValueError("the saved filter state is corrupt: non-finite values or a SoC far outside 0-1")
        self.state, self.cov, self.i_rc = state, cov, i_rc

    def _checked(self, time_s, current_a, voltage_v):
        time_s = np.atleast_1d(np.asarray(time_s, dtype=float))
        current = np.atleast_1d(np.asarray(current_a, dtype=float))
        voltage = np.atleast_1d(np.asarray(voltage_v, dtype=float))
        if len(time_s) < 1 or current.size < 1:
            raise ValueError(f"time_s and current_a need at least one sample, got {time_s.shape} and {current.shape}")
        if current.ndim == 1 and len(time_s) == 1 and self.n_cells > 1:  # one sample of every cell
            current, voltage = current[None, :], voltage[None, :]
        current = np.ascontiguousarray(current.reshape(len(current), -1))
        voltage = np.ascontiguousarray(voltage.reshape(len(voltage), -1))
        if current.ndim != 2 or current.shape[1] != self.n_cells:
            raise ValueError(f"current_a must be (time, {self.n_cells} cells), got {np.shape(current_a)}")
        if voltage.shape != current.shape:
            raise ValueError(
                f"voltage_v {np.shape(voltage_v)} and current_a {np.shape(current_a)} must have the same shape"
            )
        if time_s.ndim != 1 or len(time_s) != len(current):
            raise ValueError(f"time_s must be 1-D with one entry per row; got {time_s.shape} for {current.shape}")
        if self.last_time_s is not None and time_s[0] <= self.last_time_s:
            raise ValueError(
                f"time_s must increase, also from one update to the next: it starts at {time_s[0]:g}, "
                f"the last update ended at {self.last_time_s:g}"
            )
        if np.any(np.diff(time_s) <= 0):
            k = int(np.argmax(np.diff(time_s) <= 0)) + 1
            raise ValueError(
                f"time_s must increase: row {k} ({time_s[k]:g}) does not come after row {k - 1} ({time_s[k - 1]:g})"
            )
        _check_range("time_s", time_s, (-np.inf, np.inf), "s")
        _check_range(
            "current_a",
            current,
            (-self.max_current_a, self.max_current_a),
            f"A, {MAX_C_RATE:g}C of the largest cell (is it in mA?)",
        )
        _check_range(
            "voltage_v",
            voltage,
            (-self.max_voltage_v / 2.0, self.max_voltage_v),
            "V, twice the cell's maximum (is it in mV?)",
        )
        return time_s, current, voltage

    def _result(self, time_s, soc, bound, health, energy, limits) -> Estimate:
        o = self.options
        out = Estimate(time_s, soc, bound)
        if o.health:
            out.current_offset_a = health[..., K.OUT_OFFSET]
            out.hysteresis = health[..., K.OUT_HYST]
            out.soh_capacity = health[..., K.OUT_SOH_CAPACITY]
            out.capacity_ah = health[..., K.OUT_CAPACITY_AH]
            out.capacity_bound_ah = health[..., K.OUT_CAPACITY_BOUND_AH]
            out.soh_resistance = health[..., K.OUT_SOH_RESISTANCE]
            out.resistance_ohm = health[..., K.OUT_RESISTANCE_OHM]
        if o.energy:
            out.energy_wh = energy
        if o.limits:
            for n, horizon in enumerate(self.horizons):
                block = limits[..., n * K.N_LIMITS : (n + 1) * K.N_LIMITS]
                out.limits[float(horizon)] = Limits(*(block[..., j] for j in range(K.N_LIMITS)))
        return out


MAX_C_RATE = 100.0  # no cell carries a current beyond this: the value is in another unit
TEMPERATURE_RANGE_C = (-100.0, 150.0)


def _check_range(name, a, bounds, unit):
    """Refuse non-finite values and values no cell reads (most often another unit), naming the first."""
    bad_at = K.first_outside(np.ascontiguousarray(a).reshape(len(a), -1), *bounds)
    if bad_at is not None:
        row, cell = bad_at
        value = a[row] if a.ndim == 1 else a[row, cell]
        where = f"row {row}" + (f", cell {cell}" if a.ndim > 1 else "")
        what = (
            "is not finite"
            if not np.isfinite(value)
            else f"is {value:g}, outside {bounds[0]:g} to {bounds[1]:g} {unit}"
        )
        raise ValueError(f"{name} at {where} {what}")


def _checked_soc0(soc0, n_cells):
    if soc0 is None:
        return None
    z = np.asarray(soc0, dtype=float)
    if z.ndim > 1 or (z.ndim == 1 and len(z) not in (1, n_cells)):
        raise ValueError(f"soc0 must be one value or one per cell ({n_cells}), got shape {z.shape}")
    if not np.all((z >= 0) & (z <= 1)):
        raise ValueError(f"soc0 must lie within [0, 1], got {soc0}")
    return soc0


def initial_state(packed: PackedModels, i0, v0, t0, soc0, options: EstimateOptions):
    """Per-cell filter state and covariance at the first sample."""
    n_cells = len(i0)
    state = np.zeros((n_cells, K.N_STATE))
    cov = np.zeros((n_cells, K.N_X, K.N_X))
    t0 = np.asarray(t0, dtype=float)
    q = packed.per_cell("capacity_ah", t0[None, :])[0]
    if soc0 is None:
        # Rested-ish voltage less the resistive drop; hysteresis unknown and the OCV curve maybe biased, so the
        # OCV lies within ±(M + 2σ of the bias) of it: the SoC is anywhere in the range of SoCs (within 0-1)
        # those OCVs give, and the prior has that range's spread.
        for cell, cols in packed.cells_of():
            t = t0[cols]
            spread_v = cell.param("m_v", t) + 2.0 * options.ocv_bias_std_v
            ocv_guess = v0[cols] - cell.resistance_ohm(0.5, t) * i0[cols]
            z_hi = np.clip(cell.soc_from_ocv(ocv_guess + spread_v, t), 0.0, 1.0)
            z_lo = np.clip(cell.soc_from_ocv(ocv_guess - spread_v, t), 0.0, 1.0)
            state[cols, K.Z] = 0.5 * (z_hi + z_lo)
            cov[cols, 0, 0] = np.maximum((z_hi - z_lo) / np.sqrt(12.0), 0.05) ** 2
    else:
        state[:, K.Z] = np.broadcast_to(np.asarray(soc0, dtype=float), (n_cells,))  # checked by _checked_soc0
        cov[:, 0, 0] = options.soc0_std**2
    known_h = options.hysteresis0 is not None
    state[:, K.H] = options.hysteresis0 if known_h else 0.0
    cov[:, 1, 1] = 0.05**2 if known_h else 0.6**2
    state[:, K.S] = np.sign(state[:, K.H])
    cov[:, 2, 2] = (options.offset_std_c * q) ** 2
    state[:, K.RHO] = 1.0
    state[:, K.RHO_VAR] = 0.3**2
    state[:, K.S_INV] = 1.0
    state[:, K.G] = 1.0
    cov[:, 3, 3] = options.joint_capacity_std**2
    cov[:, 4, 4] = options.ocv_bias_std_v**2
    state[:, K.PREV_I] = i0
    state[:, K.PREV_T] = np.nan  # no sample before the first: no current step to measure
    state[:, K.PREV_V] = v0
    state[:, K.PREV_S] = state[:, K.S]
    state[:, K.NIS] = 1.0
    return state, cov, np.zeros((n_cells, packed.n_rc))


def voltage_error_std(cell: CellModel, o: EstimateOptions, temperature_c) -> np.ndarray:
    """The model's voltage error std (V) at these temperatures: `voltage_std_v` if given, else the
    cell's identification fit RMSE there, not below its fit at 25 degC nor 5 mV. The fits are
    in-sample: a temperature that happened to fit better is not trusted more, the cold that fit
    worse is trusted less."""
    t = np.asarray(temperature_c, dtype=float)
    if o.voltage_std_v is not None:
        return np.full(t.shape, o.voltage_std_v)
    fits = sorted((float(k), v) for k, v in cell.fit.get("rmse_mv", {}).items()) or [(25.0, 10.0)]
    at, rmse_mv = np.array(fits).T
    return 1e-3 * np.maximum(np.maximum(np.interp(t, at, rmse_mv), np.interp(25.0, at, rmse_mv)), 5.0)


def kernel_model(packed: PackedModels, o: EstimateOptions) -> K.Model:
    """The packed models as the kernel reads them, with each model's own voltage limits and error."""
    models = packed.models
    return K.Model(
        axis=packed.axis,
        tables=packed.tables,
        knots=packed.knots,
        hats=K.knot_hats(packed.knots),
        ocv_axis=packed.ocv_axis,
        z0=packed.z0,
        dz=packed.dz,
        ocv_tables=packed.ocv_tables,
        quads=K.ocv_quads(packed.ocv_tables),
        energy_quads=K.ocv_quads(ocv_integral(packed)),
        model_index=packed.model_index,
        sigma_v=np.stack([voltage_error_std(m, o, packed.axis) for m in models]),
        v_min=np.array([m.voltage_min_v for m in models]),
        v_max=np.array([m.voltage_max_v for m in models]),
    )


def ocv_integral(packed: PackedModels) -> np.ndarray:
    """∫OCV dz from the grid's first SoC, on the OCV tables' grid (V per unit of SoC): the energy's table."""
    z = packed.models[0].soc  # every packed model has this grid
    steps = 0.5 * (packed.ocv_tables[..., 1:] + packed.ocv_tables[..., :-1]) * np.diff(z)
    return np.concatenate([np.zeros(packed.ocv_tables.shape[:-1] + (1,)), np.cumsum(steps, axis=-1)], axis=-1)


def _squeeze(out: Estimate) -> None:
    for f in fields(out):
        value = getattr(out, f.name)
        if isinstance(value, np.ndarray) and value.ndim == 2:
            setattr(out, f.name, value[:, 0])
    for lim in out.limits.values():
        for f in fields(lim):
            setattr(lim, f.name, getattr(lim, f.name)[:, 0])
