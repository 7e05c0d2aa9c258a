"""The built-in simulated vehicle: a blade-cell LFP pack on days of driving, parking and charging.

The pack is the project's ESC plant (`pack.plant.PackPlant`) with cell-to-cell variation;
the days are FASTSim EPA cycles (`sim.day`). Charging is closed loop: while plugged in, the
pack carries what the BMS asks the charger for; balancing bleeds what the BMS switches on.
The cell temperatures follow a lumped thermal model with the conditioning mode's target.
"""

from __future__ import annotations

import numpy as np

from ..cell import CellModel
from ..pack.plant import PackPlant, Spread
from ..safety.runaway import sensor_of_cell
from ..sim.day import CHARGE, DRIVE, plan_days
from .sample import Sample

HEAT_CAPACITY_J_PER_K_AH = 22.0  # an LFP cell: ~1 J/(g K) at ~22 g per Ah
NOMINAL_CELL_V = 3.3  # the drive power is scaled to the cell's energy at this voltage
CONDITIONING_TARGET_C = {"INACTIVE": None, "FAST_CHARGING_PREPARATION": 30.0, "DRIVING_PREPARATION": 25.0}


class SimulatedVehicle:
    def __init__(
        self,
        model: CellModel,
        series: int = 100,
        sensors: int = 10,
        days: int = 7,
        soc0: float = 0.8,
        ambient_c: float = 20.0,
        seed: int = 0,
        noise_v: float = 0.002,
        plugged_at_start: bool = False,
        spread: Spread = Spread(),
    ):
        self.sensor_of_cell = sensor_of_cell(sensors, series)
        self.q_ah = float(model.param("capacity_ah", 25.0))
        self.plan = plan_days(self.q_ah, days, nominal_v=NOMINAL_CELL_V, seed=seed)
        driving = self.plan.phase == DRIVE
        # The car's own figure, as a spec sheet gives it: what it draws per km on the cycles it drives.
        self.rated_consumption_wh_per_km = float(
            -np.sum(self.plan.current_a[driving])
            * NOMINAL_CELL_V
            * series
            / np.sum(self.plan.speed_ms[driving])
            * 1000.0
            / 3600.0
        )
        self.plant = PackPlant(model, series, spread, soc0=soc0, seed=seed)
        self.rng = np.random.default_rng(seed + 1)
        self.sensors, self.ambient_c, self.noise_v = sensors, ambient_c, noise_v
        self.temperature_c = np.full(sensors, ambient_c) + self.rng.normal(0, 0.5, sensors)
        # Plugged in from the plan's charge start (or from the start, if so) until the next drive.
        plugged = np.zeros(len(self.plan.phase), dtype=bool)
        on = plugged_at_start
        for k, phase in enumerate(self.plan.phase):
            on = (on or phase == CHARGE) and phase != DRIVE
            plugged[k] = on
        self.plugged = plugged
        # Start a minute before the first drive (or plugged in, at once): something happens from the first look.
        self.k = 0 if plugged_at_start else max(0, int(np.argmax(self.plan.phase == DRIVE)) - 60)
        self.charge_request_a = 0.0
        self.bleed_a = np.zeros(series)
        self.conditioning = "INACTIVE"

    @property
    def time_s(self) -> float:
        return float(
            self.plan.time_s[self.k % len(self.plan.time_s)] + len(self.plan.time_s) * (self.k // len(self.plan.time_s))
        )

    def next_sample(self) -> Sample:
        """The measurements now; then the plant advances one second with the present requests."""
        k = self.k % len(self.plan.time_s)
        plugged = bool(self.plugged[k])
        current = (
            self.charge_request_a if plugged else float(self.plan.current_a[k] if self.plan.phase[k] == DRIVE else 0.0)
        )
        v = self.plant.step(current, 1.0, self._cell_temperatures(), self.bleed_a)
        self._heat(current, 1.0)
        measured = np.round((v + self.rng.normal(0, self.noise_v, v.shape)) / 0.001) * 0.001
        sample = Sample(
            self.time_s,
            current,
            measured,
            self.temperature_c + self.rng.normal(0, 0.1, self.sensors),
            plugged_in=plugged,
            speed_kmh=3.6 * float(self.plan.speed_ms[k]),
        )
        self.k += 1
        return sample

    def _cell_temperatures(self) -> np.ndarray:
        return self.temperature_c[self.sensor_of_cell]

    def _heat(self, current: float, dt: float) -> None:
        """Joule heat of the cell against cooling to ambient, or to the conditioning target when one is set."""
        target = CONDITIONING_TARGET_C[self.conditioning]
        sink, tau = (self.ambient_c, 3600.0) if target is None else (target, 900.0)
        r = float(self.plant.cells[0].r0_ohm.mean())
        heat_c_per_s = current**2 * r / (HEAT_CAPACITY_J_PER_K_AH * self.q_ah)
        self.temperature_c += dt * (heat_c_per_s + (sink - self.temperature_c) / tau)
