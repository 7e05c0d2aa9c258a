"""Charging control for a series string: constant current, then constant voltage on the highest cell.

In a series string every cell carries the same current, so the string is full when
its fullest cell is: the BMS regulates the *highest* cell voltage, not the pack
voltage a charger sees. One law gives both phases,

    I_k = min(I_limit, I_{k-1} + (V_cv - V_max) / R_cell)

an integrator whose gain is the inverse cell resistance: while V_max is below V_cv
the current rises to the limit (CC), and once it reaches V_cv each tick removes
the current that the last overshoot needed (CV). An overestimated R_cell only makes
it slower. I_limit is the smallest of the derated SOA limit (temperature, SoC, SOA
level: no charge at or below 0 degC), the charger's current and its power over the
pack voltage. Charging ends at the SoC target or when the CV current falls to the
cut-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .events import rank
from .soa import SoaLimits, derating

TARGET_RANGE = (0.5, 1.0)


@dataclass(frozen=True)
class ChargeConfig:
    limits: SoaLimits
    cell_resistance_ohm: float  # DC resistance for the CV gain; err high (slower) rather than low (oscillates)
    charger_max_current_a: float
    charger_max_power_w: float
    cv_voltage_v: float = 3.55  # highest-cell regulation voltage: at or below the SOA warning threshold
    cutoff_c: float = 0.05  # CV termination current as a C-rate (C/20)

    def validate(self) -> "ChargeConfig":
        self.limits.validate()
        for name in ("cell_resistance_ohm", "charger_max_current_a", "charger_max_power_w", "cutoff_c"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ChargeConfig.{name} must be a positive number, got {value!r}")
        if not self.limits.undervoltage_v[0] < self.cv_voltage_v <= self.limits.overvoltage_v[0]:
            raise ValueError(
                f"ChargeConfig.cv_voltage_v must lie above the undervoltage warning and at or below "
                f"the overvoltage warning {self.limits.overvoltage_v[0]} V, got {self.cv_voltage_v!r}"
            )
        return self


@dataclass(frozen=True)
class ChargeCommand:
    current_a: float  # to request from the charger, >= 0 (positive = charging)
    state: str  # idle, cc, cv, derated, complete, stopped, fault
    reason: str
    time_to_complete_s: float  # inf while nothing flows, 0 when complete


class ChargeController:
    """CC-CV charging of a series string, ticked at the BMS rate with the present measurements.

    `fault` lasts while its cause does (the contactor machine latches real faults); `stopped` and
    `complete` last until `start()`.
    """

    def __init__(self, config: ChargeConfig, soc_target: float = 0.9):
        self.config = config.validate()
        self.soc_target = TARGET_RANGE[1]
        self.set_target(soc_target)
        self.state = "idle"
        self._current_a = 0.0

    def set_target(self, soc: float) -> str:
        """Set the SoC target, clamped into 0.5-1.0; return why it was changed ("" when accepted as is)."""
        if not math.isfinite(soc):
            raise ValueError(f"SoC target must be a number within {TARGET_RANGE}, got {soc!r}")
        self.soc_target = min(max(soc, TARGET_RANGE[0]), TARGET_RANGE[1])
        if self.soc_target == soc:
            return ""
        return f"SoC target {soc:.2f} outside {TARGET_RANGE[0]}-{TARGET_RANGE[1]}: set to {self.soc_target:.2f}"

    def start(self) -> None:
        self.state, self._current_a = "cc", 0.0

    def stop(self) -> None:
        self.state, self._current_a = "stopped", 0.0

    def tick(self, cell_voltages_v, cell_temperatures_c, soc, soa_level: str = "info") -> ChargeCommand:
        """The current to request now. `soc` is the pack's or one per cell (the fullest one counts);
        `soa_level` is e.g. `SoaMonitor.worst`."""
        cfg, lim = self.config, self.config.limits
        v = np.asarray(cell_voltages_v, dtype=float)
        z_max = float(np.max(soc))
        if self.state in ("idle", "stopped", "complete"):
            return self._hold(
                self.state,
                {"idle": "not started", "stopped": "stopped by request", "complete": "charge complete"}[self.state],
            )
        bad = [
            name
            for name, x in (("cell voltage", v), ("cell temperature", cell_temperatures_c), ("SoC", soc))
            if not np.all(np.isfinite(x))
        ]
        if bad or rank(soa_level) >= rank("critical"):
            return self._hold("fault", f"missing {', '.join(bad)}" if bad else f"SOA level {soa_level}")
        if z_max >= self.soc_target:
            return self._hold("complete", f"SoC {z_max:.3f} reached the target {self.soc_target:.2f}")

        d = derating(lim, cell_temperatures_c, soc, v, soa_level).charge
        nominal = min(
            lim.max_charge_c * lim.capacity_ah, cfg.charger_max_current_a, cfg.charger_max_power_w / float(np.sum(v))
        )
        limit = nominal * float(np.prod(list(d.values())))
        regulated = self._current_a + (cfg.cv_voltage_v - float(v.max())) / cfg.cell_resistance_ohm
        self._current_a = max(0.0, min(limit, regulated))
        cutoff_a = cfg.cutoff_c * lim.capacity_ah
        if regulated < limit and limit > cutoff_a:
            if self._current_a < cutoff_a:
                return self._hold("complete", f"CV current fell below the cut-off {cfg.cutoff_c:g} C")
            self.state, reason = "cv", f"highest cell held at {cfg.cv_voltage_v:g} V"
        elif limit < nominal or regulated < limit:
            cause = min(d, key=d.get)
            self.state, reason = "derated", f"{cause} derating to {limit:.3g} A"
        else:
            self.state, reason = "cc", f"constant current {limit:.3g} A"
        remaining_s = (self.soc_target - z_max) * lim.capacity_ah * 3600.0
        eta = remaining_s / self._current_a if self._current_a > 0 else math.inf
        return ChargeCommand(self._current_a, self.state, reason, eta)

    def _hold(self, state: str, reason: str) -> ChargeCommand:
        self.state, self._current_a = state, 0.0
        return ChargeCommand(0.0, state, reason, 0.0 if state == "complete" else math.inf)


__all__ = ["ChargeCommand", "ChargeConfig", "ChargeController", "TARGET_RANGE"]
