"""What every measurement source delivers to the BMS loop, one sample at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    time_s: float
    current_a: float  # string current, + = charging
    cell_voltage_v: np.ndarray  # (cells,), NaN where a reading is missing
    temperature_c: np.ndarray  # (sensors,)
    plugged_in: bool = False  # a charger is connected and can deliver what the BMS requests
    speed_kmh: float = 0.0  # for range from recent consumption; 0 where unknown


@dataclass
class BmsOutput:
    """What the BMS tells the vehicle each sample: the CAN frames and the VSS signals are made from this."""

    time_s: float
    soc: float  # pack SoC as displayed, 0-1
    soh_capacity: float
    soh_resistance: float
    max_charge_current_a: float
    max_discharge_current_a: float
    max_charge_power_w: float
    max_discharge_power_w: float
    charge_request_a: float  # what the BMS asks the charger for (0 when not charging)
    contactor_state: str
    worst_severity: str  # info, warning, derate, critical
    alarms: tuple[str, ...] = ()  # kinds of the active events
