"""Where the BMS's measurements come from: the simulated vehicle, a recorded pack file, or a CAN bus."""

from __future__ import annotations

from pathlib import Path

from ..io.pack import read_pack
from .sample import BmsOutput, Sample


class ReplaySource:
    """A recorded pack file (see `io.pack`), one row per sample; ends with the file."""

    finite = True
    obeys = False  # a recording cannot follow the BMS's balancing or charger requests

    def __init__(self, path: str | Path, temperature_c: float | None = None):
        self.data = read_pack(path, temperature_c)
        self.series, self.sensors = self.data.cell_voltage_v.shape[1], self.data.temperature_c.shape[1]
        self.k = 0

    def next_sample(self) -> Sample | None:
        d = self.data
        if self.k >= len(d.time_s):
            return None
        k, self.k = self.k, self.k + 1
        # A pack file has no charger column: plugged in is unknown, and regen is not a charger (never guessed).
        return Sample(float(d.time_s[k]), float(d.current_a[k]), d.cell_voltage_v[k], d.temperature_c[k])

    def apply(self, output: BmsOutput, bleed_a, conditioning: str) -> None:
        """A recording cannot obey: what the BMS decides is published, not fed back."""


class SimSource:
    """The simulated vehicle, which obeys the BMS: charger current, balancing, contactors, conditioning."""

    obeys = True

    def __init__(self, vehicle):
        self.vehicle = vehicle
        self.series, self.sensors = vehicle.plant.series, vehicle.sensors
        self.rated_consumption_wh_per_km = vehicle.rated_consumption_wh_per_km

    def next_sample(self) -> Sample:
        return self.vehicle.next_sample()

    def apply(self, output: BmsOutput, bleed_a, conditioning: str) -> None:
        v = self.vehicle
        v.charge_request_a = output.charge_request_a if output.contactor_state == "charge" else 0.0
        v.bleed_a = bleed_a
        v.conditioning = conditioning
