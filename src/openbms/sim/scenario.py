"""Named scenarios: a plant, what drives it, and its sensors — measured data and truth out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .drive import CYCLES, cell_power
from .plant import Plant
from .run import EXPERIMENTS, Truth, run_experiment, run_power
from .sensors import Sensors


@dataclass(frozen=True)
class Scenario:
    plant: Plant = field(default_factory=Plant)
    experiment: str = "drive"  # "ocv", "hppc" or "drive"
    cycles: tuple[str, ...] = ("udds", "hwfet")
    repeat: int = 3
    soc0: float | None = None  # default: 1 for the characterisation tests, 0.9 for a drive
    sensors: Sensors = field(default_factory=Sensors)

    def validate(self) -> "Scenario":
        if self.experiment not in (*EXPERIMENTS, "drive"):
            raise ValueError(f"unknown experiment {self.experiment!r}: choose from {[*EXPERIMENTS, 'drive']}")
        unknown = [c for c in self.cycles if c not in CYCLES]
        if unknown:
            raise ValueError(f"unknown drive cycle(s) {unknown}: choose from {sorted(CYCLES)}")
        if self.repeat < 1:
            raise ValueError("repeat must be at least 1")
        if self.soc0 is not None and not 0 <= self.soc0 <= 1:
            raise ValueError(f"soc0 must be a fraction in [0, 1], got {self.soc0}")
        self.sensors.validate()
        return self

    def run(self) -> tuple[pd.DataFrame, Truth]:
        """(measured BDF frame, truth)."""
        self.validate()
        if self.experiment == "drive":
            spec = self.plant.spec
            energy_wh = self.plant.capacity_ah() * spec.nominal_voltage_v
            time_s, power_w = cell_power(list(self.cycles) * self.repeat, energy_wh)
            truth = run_power(self.plant, time_s, power_w, 0.9 if self.soc0 is None else self.soc0)
        else:
            steps = EXPERIMENTS[self.experiment](self.plant)
            truth = run_experiment(self.plant, steps, 1.0 if self.soc0 is None else self.soc0)
        measured = self.sensors.measure(truth.time_s, truth.current_a, truth.voltage_v, truth.temperature_c)
        measured["Ambient Temperature / degC"] = self.plant.temperature_c
        measured.attrs["source"] = f"plant {self.plant.name} ({self.experiment})"
        return measured, truth
