"""Realistic measurement errors between the plant's truth and what a BMS reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io.columns import CELL_TEMPERATURE, CURRENT, TIME, VOLTAGE


@dataclass(frozen=True)
class Sensors:
    """Current offset and gain error, voltage noise and quantisation, temperature offset."""

    current_offset_a: float = 0.0
    current_gain_error: float = 0.0  # fraction: 0.01 reads 1 % high
    current_noise_a: float = 0.0
    voltage_noise_v: float = 0.002
    voltage_lsb_v: float = 0.001
    temperature_offset_c: float = 0.0
    seed: int = 0

    def validate(self) -> "Sensors":
        if self.voltage_noise_v < 0 or self.voltage_lsb_v < 0 or self.current_noise_a < 0:
            raise ValueError("sensor noise and quantisation must not be negative")
        if abs(self.current_gain_error) >= 0.5:
            raise ValueError(f"current gain error {self.current_gain_error} is not a sensor error (|gain| < 0.5)")
        return self

    def measure(self, time_s, current_a, voltage_v, temperature_c) -> pd.DataFrame:
        """BDF columns as a BMS would log them (+ = charging)."""
        rng = np.random.default_rng(self.seed)
        current = np.asarray(current_a, dtype=float)
        voltage = np.asarray(voltage_v, dtype=float)
        measured_i = current * (1.0 + self.current_gain_error) + self.current_offset_a
        if self.current_noise_a:
            measured_i = measured_i + rng.normal(0.0, self.current_noise_a, current.shape)
        measured_v = voltage + rng.normal(0.0, self.voltage_noise_v, voltage.shape) if self.voltage_noise_v else voltage
        if self.voltage_lsb_v:
            measured_v = np.round(measured_v / self.voltage_lsb_v) * self.voltage_lsb_v
        return pd.DataFrame(
            {
                TIME: np.asarray(time_s, dtype=float),
                CURRENT: measured_i,
                VOLTAGE: measured_v,
                CELL_TEMPERATURE: np.asarray(temperature_c, dtype=float) + self.temperature_offset_c,
            }
        )


IDEAL = Sensors(voltage_noise_v=0.0, voltage_lsb_v=0.0)
