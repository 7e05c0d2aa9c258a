"""A simulated series string of ESC cells: cell-to-cell variation, internal shorts and balancing bleed.

The project's own fast plant for closed loops and long campaigns (the PyBaMM plant in `sim`
is the independent reference). A short of R ohms drains V/R from its cell; the bleed
resistors of the balancer drain V/R_bleed from the cells they are switched onto.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cell import CellModel, CellStepper


@dataclass(frozen=True)
class Spread:
    """Cell-to-cell variation, as standard deviations (relative for capacity and resistance)."""

    capacity: float = 0.02
    resistance: float = 0.05
    soc: float = 0.02

    def draw(self, model: CellModel, n: int, soc0: float, rng) -> tuple[list[CellModel], np.ndarray]:
        cap = 1.0 + self.capacity * rng.standard_normal(n)
        res = 1.0 + self.resistance * rng.standard_normal(n)
        cells = [model.scaled(capacity=float(c), resistance=float(r)) for c, r in zip(cap, res)]
        return cells, np.clip(soc0 + self.soc * rng.standard_normal(n), 0.02, 0.98)


@dataclass
class Short:
    """An internal short: `resistance_ohm` across cell `cell` (0-based) from `onset_s` on."""

    cell: int
    resistance_ohm: float
    onset_s: float = 0.0


@dataclass
class PackPlant:
    model: CellModel
    series: int
    spread: Spread = field(default_factory=Spread)
    soc0: float = 0.9
    shorts: list[Short] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.series < 1:
            raise ValueError(f"series must be at least 1, got {self.series}")
        for s in self.shorts:
            if not (0 <= s.cell < self.series and s.resistance_ohm > 0):
                raise ValueError(f"short {s} needs a cell in 0..{self.series - 1} and a positive resistance")
        self.cells, soc = self.spread.draw(self.model, self.series, self.soc0, np.random.default_rng(self.seed))
        self.stepper = CellStepper(self.cells, self.series, soc0=soc)
        self.voltage_v = np.asarray(self.stepper.step(0.0, 1e-9))
        self.time_s = 0.0

    @property
    def soc(self) -> np.ndarray:
        return self.stepper.soc

    def leak_a(self) -> np.ndarray:
        """The current each cell loses to its internal short now (A)."""
        leak = np.zeros(self.series)
        for s in self.shorts:
            if self.time_s >= s.onset_s:
                leak[s.cell] += self.voltage_v[s.cell] / s.resistance_ohm
        return leak

    def step(self, current_a: float, dt_s: float, temperature_c=25.0, bleed_a=0.0) -> np.ndarray:
        """Cell voltages while the string carries `current_a` (+ = charging) and cells bleed `bleed_a`; advance dt_s."""
        cell_current = current_a - self.leak_a() - np.broadcast_to(bleed_a, (self.series,))
        self.voltage_v = self.stepper.step(cell_current, dt_s, temperature_c)
        self.time_s += dt_s
        return self.voltage_v

    def run(self, time_s: np.ndarray, current_a: np.ndarray, temperature_c=25.0) -> tuple[np.ndarray, np.ndarray]:
        """Open-loop (no balancing): cell voltages and SoCs, (time, cells), on a 1-D current profile."""
        v = np.empty((len(time_s), self.series))
        z = np.empty_like(v)
        dt = np.diff(time_s, append=time_s[-1] + (time_s[-1] - time_s[-2] if len(time_s) > 1 else 1.0))
        for k in range(len(time_s)):
            z[k] = self.soc
            v[k] = self.step(current_a[k], dt[k], temperature_c)
        return v, z
