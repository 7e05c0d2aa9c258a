"""Vectorised simulation of the ESC model: one cell, or many cells at once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .kernels import simulate_kernel
from .model import CellModel
from .packing import pack


@dataclass
class Simulation:
    """Terminal voltage and SoC, shaped like the current given, plus the final states."""

    voltage_v: np.ndarray
    soc: np.ndarray
    final_soc: np.ndarray
    final_hysteresis: np.ndarray


class CellStepper:
    """Cells stepped forward one sample at a time, for closed loops (a charger, a balancer, a BMS).

    The same ESC model and kernel as `simulate`; the state carries over between steps.
    """

    def __init__(self, model: CellModel | Sequence[CellModel], n_cells: int = 1, soc0=1.0, hysteresis0=0.0):
        self.packed = pack(model, n_cells)
        self.soc = _broadcast(soc0, (n_cells,), "soc0").copy()
        self.hysteresis = _broadcast(hysteresis0, (n_cells,), "hysteresis0").copy()
        self._s = np.sign(self.hysteresis)
        self._i_rc = np.zeros((n_cells, self.packed.n_rc))
        self._time = np.array([0.0, 1.0])
        self._voltage = np.empty((2, n_cells))  # the kernel also evaluates the end of the step
        self._soc_out = np.empty((2, n_cells))

    def step(self, current_a, dt_s: float, temperature_c=25.0) -> np.ndarray:
        """Terminal voltages while `current_a` (+ = charging, per cell or one for all) flows, then advance dt_s."""
        if not dt_s > 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        n = len(self.soc)
        current = np.broadcast_to(_broadcast(current_a, (n,), "current_a"), (2, n))
        temperature = np.broadcast_to(_broadcast(temperature_c, (n,), "temperature_c"), (2, n))
        self._time[1] = dt_s
        p = self.packed
        simulate_kernel(
            self._time,
            current,
            temperature,
            p.model_index,
            p.axis,
            p.tables,
            p.knots,
            p.ocv_axis,
            p.z0,
            p.dz,
            p.ocv_tables,
            self.soc,
            self.hysteresis,
            self._s,
            self._i_rc,
            self._voltage,
            self._soc_out,
        )
        return self._voltage[0].copy()


def simulate(
    model: CellModel | Sequence[CellModel],
    time_s,
    current_a,
    temperature_c=25.0,
    soc0=1.0,
    hysteresis0=0.0,
    check_range: bool = True,
) -> Simulation:
    """Voltage of cells under a current (+ = charging) and temperature history.

    `current_a` is (time,) or (time, cells); temperature, soc0 and hysteresis0
    broadcast against it. `model` is one cell model or one per cell. A cell driven
    past empty or full raises a `CellLimitWarning` (fits that try guesses pass
    `check_range=False`).
    """
    time_s = np.asarray(time_s, dtype=float)
    current = np.asarray(current_a, dtype=float)
    squeeze = current.ndim == 1
    current = current.reshape(len(current), -1)
    if time_s.ndim != 1 or len(time_s) != len(current):
        raise ValueError(f"time_s must be 1-D with one entry per current row; got {time_s.shape} and {current.shape}")
    if len(time_s) > 1 and np.any(np.diff(time_s) < 0):
        raise ValueError("time_s must increase (it may repeat where one step ends and the next begins)")
    n_time, n_cells = current.shape
    temperature = _broadcast(temperature_c, (n_time, n_cells), "temperature_c")
    packed = pack(model, n_cells)
    soc = _broadcast(soc0, (n_cells,), "soc0").copy()
    h = _broadcast(hysteresis0, (n_cells,), "hysteresis0").copy()
    s = np.sign(h)
    i_rc = np.zeros((n_cells, packed.n_rc))
    voltage = np.empty((n_time, n_cells))
    soc_out = np.empty((n_time, n_cells))
    simulate_kernel(
        time_s,
        np.ascontiguousarray(current),
        temperature,
        packed.model_index,
        packed.axis,
        packed.tables,
        packed.knots,
        packed.ocv_axis,
        packed.z0,
        packed.dz,
        packed.ocv_tables,
        soc,
        h,
        s,
        i_rc,
        voltage,
        soc_out,
    )
    if check_range:
        _warn_outside_range(time_s, voltage, soc_out)
    if squeeze:
        voltage, soc_out = voltage[:, 0], soc_out[:, 0]
    return Simulation(voltage, soc_out, soc, h)


class CellLimitWarning(UserWarning):
    """A simulated cell was driven past empty or full: the model extrapolates there, where no real cell goes."""


SOC_MARGIN = 0.005  # a test run to exactly empty may end a little below 0 by the model's efficiency


def _warn_outside_range(time_s: np.ndarray, voltage: np.ndarray, soc: np.ndarray) -> None:
    """Say where the first cell left 0-1 SoC (or its voltage 0 V): the values past it are not physical."""
    outside = (soc < -SOC_MARGIN) | (soc > 1 + SOC_MARGIN) | (voltage <= 0)
    if not outside.any():
        return
    k, cell = np.unravel_index(np.argmax(outside), outside.shape)
    where = "full" if soc[k, cell] > 1 + SOC_MARGIN else "empty" if soc[k, cell] < -SOC_MARGIN else "0 V"
    warnings.warn(
        f"cell {cell + 1} was driven past {where} at sample {k + 1} (t = {time_s[k]:g} s): SoC "
        f"{soc[k, cell]:.3f}, {voltage[k, cell]:.3f} V; from there on the model extrapolates (stop the "
        "current at the cell's voltage limits)",
        CellLimitWarning,
        stacklevel=3,
    )


def _broadcast(value, shape, name) -> np.ndarray:
    """Broadcast to `shape`; a (time,) series given for (time, cells) applies to every cell."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 1 and len(shape) == 2 and a.shape[0] == shape[0]:
        a = a[:, None]
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to {shape}") from None
