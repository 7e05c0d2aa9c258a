"""Faults injected into a pack's measurements: thermal runaway, stuck and open-wire sensors.

Internal shorts are physical and live in the plant (`pack.plant.Short`); these act on what
the sensors report. Arrays are (time, cells) for voltages and (time, sensors) for temperatures.
"""

from __future__ import annotations

import numpy as np


def thermal_runaway(
    time_s,
    cell_voltage_v,
    temperature_c,
    cell: int,
    sensor: int,
    onset_s: float,
    heating_c_per_s: float = 2.0,
    collapse_s: float = 20.0,
) -> float:
    """From onset the sensor heats at heating_c_per_s (accelerating) and the cell's voltage collapses to
    a third over collapse_s; modifies the arrays in place and returns when the GB 38031 condition is
    first met (voltage drop > 25 % and dT/dt ≥ 1 degC/s for more than 3 s) in the truth."""
    after = time_s >= onset_s
    dt = np.where(after, time_s - onset_s, 0.0)
    temperature_c[:, sensor] += np.where(after, heating_c_per_s * dt * (1 + dt / 30.0), 0.0)
    drop = np.where(after, np.minimum(dt / collapse_s, 1.0) * (2.0 / 3.0), 0.0)
    cell_voltage_v[:, cell] *= 1.0 - drop
    rise_since = onset_s  # the heating rate is ≥ heating_c_per_s ≥ 1 degC/s from onset
    dropped = onset_s + collapse_s * 0.25 / (2.0 / 3.0)
    return max(rise_since + 3.0, dropped)


def stuck(values, column: int, onset_s: float, time_s) -> None:
    """The reading freezes at its value at onset."""
    k = int(np.searchsorted(time_s, onset_s))
    values[k:, column] = values[k, column]


def open_wire(cell_voltage_v, cell: int, onset_s: float, time_s) -> None:
    """A broken sense wire between cells `cell` and `cell + 1`: one reads near zero, the neighbour the sum."""
    k = int(np.searchsorted(time_s, onset_s))
    neighbour = cell + 1 if cell + 1 < cell_voltage_v.shape[1] else cell - 1
    cell_voltage_v[k:, neighbour] += cell_voltage_v[k:, cell] - 0.05
    cell_voltage_v[k:, cell] = 0.05
