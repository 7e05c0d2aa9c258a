"""A simulated fleet with known truth: ageing, cell-to-cell spread, internal shorts and sensor faults.

Each vehicle is the project's fast plant (`pack.plant.PackPlant`) driven by its own commuting
days (`sim.day.plan_days`), its usage scaled from a commuter's to a heavy user's. Telemetry is
sampled as telematics units log it: every second while driving (the resistance estimate needs
current steps under 2.5 s apart) and every 10 s while parked or charging, the current of a 10 s
sample being its interval's mean so that no charge is lost. The plant steps on the same grid.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..cell import load_cell
from ..io.columns import CURRENT, TIME, UNIX_TIME
from ..pack.plant import PackPlant, Short, Spread
from ..sim import faults
from ..sim.day import DAY_S, DRIVE, plan_days
from .dataset import LABELS, FleetInfo, write_partition

SLOW_SAMPLE_S = 10
SAMPLING = "1 s while driving, 10 s while parked or charging (current: the interval's mean)"
SHORT_OHM_AH = (100.0 * 2.3, 2000.0 * 2.3)  # 100 ohm - 2 kohm across a 2.3 Ah cell, scaled inversely to capacity
VOLTAGE_NOISE_V, VOLTAGE_LSB_V = 0.002, 0.001
TEMPERATURE_NOISE_C, TEMPERATURE_LSB_C = 0.2, 0.1


@dataclass(frozen=True)
class VehicleSpec:
    """One vehicle's truth, drawn before it is simulated (cells 0-based here, 1-based in the labels)."""

    vehicle: str
    seed: int
    capacity_scale: float
    resistance_scale: float
    usage: float  # times a commuter's daily current
    soc0: float
    ambient_c: float
    short_cell: int | None = None
    short_ohm: float | None = None
    short_onset_s: float | None = None
    fault_kind: str | None = None  # "stuck" or "open_wire" on a cell voltage
    fault_cell: int | None = None
    fault_onset_s: float | None = None


def draw_fleet(
    vehicles: int,
    days: int,
    series: int,
    capacity_ah: float,
    seed: int = 0,
    short_fraction: float = 0.1,
    fault_fraction: float = 0.05,
) -> list[VehicleSpec]:
    """Vehicles of varied age and use; faults start in the first half of the record so there is time to see them."""
    if vehicles < 1 or days < 1 or series < 2:
        raise ValueError(f"need at least 1 vehicle, 1 day and 2 cells in series; got {vehicles}, {days}, {series}")
    if not (0 <= short_fraction <= 1 and 0 <= fault_fraction <= 1):
        raise ValueError("short and fault fractions must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    half = days * DAY_S / 2
    specs = []
    for n in range(vehicles):
        fade = rng.uniform(0.0, 0.2)
        spec = dict(
            vehicle=f"V{n + 1:04d}",
            seed=int(rng.integers(2**31)),
            capacity_scale=1.0 - fade,
            resistance_scale=float(1.0 + 2.5 * fade + rng.uniform(0.0, 0.1)),
            usage=rng.uniform(1.0, 1.5),
            soc0=rng.uniform(0.9, 0.97),
            ambient_c=rng.uniform(15.0, 30.0),
        )
        if rng.random() < short_fraction:
            lo, hi = np.log(SHORT_OHM_AH)
            spec |= dict(
                short_cell=int(rng.integers(series)),
                short_ohm=float(np.exp(rng.uniform(lo, hi)) / capacity_ah),
                short_onset_s=float(rng.uniform(0, half)),
            )
        if rng.random() < fault_fraction:
            spec |= dict(
                fault_kind=str(rng.choice(["stuck", "open_wire"])),
                fault_cell=int(rng.integers(series - 1)),
                fault_onset_s=float(rng.uniform(0, half)),
            )
        specs.append(VehicleSpec(**{k: float(v) if isinstance(v, np.floating) else v for k, v in spec.items()}))
    return specs


def telemetry_grid(phase: np.ndarray) -> np.ndarray:
    """Indices of the 1 s plan kept as samples: every second of driving, every 10th otherwise."""
    return np.flatnonzero((phase == DRIVE) | (np.arange(len(phase)) % SLOW_SAMPLE_S == 0))


def simulate_vehicle(spec: VehicleSpec, root: str, info: FleetInfo, days: int) -> dict:
    """Simulate, measure and write every day of one vehicle; return its ground-truth labels."""
    base = load_cell(info.cell)
    q = float(base.param("capacity_ah", 25.0))
    plan = plan_days(q, days, seed=spec.seed)
    keep = telemetry_grid(plan.phase)
    time_s = plan.time_s[keep]
    current = spec.usage * np.add.reduceat(plan.current_a, keep) / np.diff(np.append(keep, len(plan.time_s)))
    shorts = [] if spec.short_cell is None else [Short(spec.short_cell, spec.short_ohm, spec.short_onset_s)]
    plant = PackPlant(
        base.scaled(capacity=spec.capacity_scale, resistance=spec.resistance_scale),
        info.series,
        Spread(),
        spec.soc0,
        shorts,
        spec.seed,
    )
    voltage, soc = plant.run(time_s, current, spec.ambient_c)
    rng = np.random.default_rng(spec.seed + 1)
    voltage = _quantise(voltage + rng.normal(0.0, VOLTAGE_NOISE_V, voltage.shape), VOLTAGE_LSB_V)
    temperature = _quantise(
        spec.ambient_c + rng.normal(0.0, TEMPERATURE_NOISE_C, (len(time_s), info.sensors)), TEMPERATURE_LSB_C
    )
    if spec.fault_kind == "stuck":
        faults.stuck(voltage, spec.fault_cell, spec.fault_onset_s, time_s)
    elif spec.fault_kind == "open_wire":
        faults.open_wire(voltage, spec.fault_cell, spec.fault_onset_s, time_s)
    start = dt.date.fromisoformat(info.start)
    unix0 = dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp()
    frame = pd.DataFrame(
        {UNIX_TIME: unix0 + time_s, TIME: time_s, CURRENT: current}
        | {f"Cell Voltage {c + 1} / V": voltage[:, c] for c in range(info.series)}
        | {f"Cell Temperature {j + 1} / degC": temperature[:, j] for j in range(info.sensors)}
    )
    day_of = (time_s // DAY_S).astype(int)
    for d in range(days):
        write_partition(root, spec.vehicle, start + dt.timedelta(days=d), frame[day_of == d].reset_index(drop=True))
    return _labels(spec, plant, soc)


def write_labels(root, labels: list[dict]) -> Path:
    path = Path(root) / LABELS
    path.write_text(json.dumps({"vehicles": labels}, indent=1))
    return path


def _labels(spec: VehicleSpec, plant: PackPlant, soc: np.ndarray) -> dict:
    capacities = [float(c.param("capacity_ah", spec.ambient_c)) for c in plant.cells]
    truth = {k: v for k, v in asdict(spec).items() if not k.startswith(("short", "fault"))}
    truth |= {
        "true_capacity_ah": float(np.mean(capacities)),
        "cell_soc_end": soc[-1].round(4).tolist(),
        "short": None,
        "sensor_fault": None,
    }
    if spec.short_cell is not None:
        truth["short"] = {"cell": spec.short_cell + 1, "resistance_ohm": spec.short_ohm, "onset_s": spec.short_onset_s}
    if spec.fault_kind is not None:
        truth["sensor_fault"] = {"kind": spec.fault_kind, "cell": spec.fault_cell + 1, "onset_s": spec.fault_onset_s}
    return truth


def _quantise(values: np.ndarray, lsb: float) -> np.ndarray:
    return np.round(values / lsb) * lsb
