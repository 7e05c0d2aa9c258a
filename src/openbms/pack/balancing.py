"""Passive balancing for LFP: by estimated SoC, not by mid-plateau voltage, plus top-of-charge balancing.

On LFP's flat plateau, cells 10 % apart in SoC differ by a few millivolts, so voltage-based
balancing bleeds the wrong cells. Balancing by the estimator's per-cell SoC (charge above the
emptiest cell) works anywhere; at the top of a charge, where the voltage is steep and
honest again, the cells above the lowest voltage are bled as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Balancer:
    bleed_resistance_ohm: float = 33.0  # ~0.1 A from an LFP cell
    threshold_soc: float = 0.02  # charge above the emptiest cell worth bleeding, as SoC: above the estimates' noise
    rest_current_a: float = 1.0  # balance at rest or while charging, not under driving loads
    top_voltage_v: float = 3.45  # above this the OCV is steep: balance by voltage too
    top_window_v: float = 0.01

    def __post_init__(self) -> None:
        for name in ("bleed_resistance_ohm", "threshold_soc", "rest_current_a", "top_window_v"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Balancer.{name} must be positive, got {getattr(self, name)}")

    def select(self, cell_soc, capacity_ah, cell_voltage_v, current_a: float) -> np.ndarray:
        """Which cells to bleed now (bool per cell)."""
        z = np.asarray(cell_soc, dtype=float)
        v = np.asarray(cell_voltage_v, dtype=float)
        if current_a < -self.rest_current_a:  # discharging hard: the heat and the charge are better saved
            return np.zeros(len(z), dtype=bool)
        q = np.broadcast_to(np.asarray(capacity_ah, dtype=float), z.shape)
        excess = (z * q - np.nanmin(z * q)) / np.mean(q)  # charge above the emptiest cell, in SoC of a mean cell
        by_soc = excess > self.threshold_soc
        top = (np.nanmax(v) > self.top_voltage_v) & (v > np.nanmin(v) + self.top_window_v)
        return (by_soc | top) & np.isfinite(v)

    def bleed_a(self, selected, cell_voltage_v) -> np.ndarray:
        """The current each selected cell loses through its resistor (A)."""
        return np.where(
            selected, np.nan_to_num(np.asarray(cell_voltage_v, dtype=float)) / self.bleed_resistance_ohm, 0.0
        )


def usable_ah(soc, capacity_ah) -> float:
    """What a series string can deliver from full to empty: the fullest cell stops the charge, the emptiest
    the discharge."""
    q = np.asarray(capacity_ah, dtype=float)
    z = np.asarray(soc, dtype=float)
    return float(np.min(q * z) + np.min(q * (1.0 - z)))
