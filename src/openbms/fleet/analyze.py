"""One vehicle's telemetry through the pack's safety monitor, day by day; the fleet mapped over Dask workers.

Each task reads one vehicle-day at a time and keeps only summaries (per day, per hour, the
events) and, for the replay, the cell voltages as float32 (tens of MB a vehicle-week), so memory
does not grow with the fleet's size. The monitor is the one the vehicle runs
(`safety.monitor.PackMonitor`: plausibility, bar-delta estimation, shorts), tuned for a fleet,
which looks back over days, not minutes (`FleetTuning`). The capacity reported is the fleet's
own, offline: the cell model replayed over the vehicle's whole record (`estimate.replay`), which
the car's filter, deciding as it drives on LFP's flat plateau, cannot afford.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..cell import load_cell
from ..estimate.replay import fit_capacity_by_replay
from ..io import DataError
from ..io.columns import TIME
from ..pack.estimator import MEAN_CELL_OPTIONS, DeltaOptions
from ..safety.monitor import MonitorConfig, PackMonitor
from ..safety.short import ShortRule
from .cluster import map_with_progress
from .dataset import FleetInfo, read_day, vehicle_days
from .rank import rank_vehicles

HOUR_S = 3600.0


@dataclass(frozen=True)
class FleetTuning:
    """What a fleet's look back over days changes in the car's monitor: the short rule (a day of averaging,
    thresholds as fractions of 1C, cell size free), how long the mean cell's voltage errors are taken to last,
    and the OCV error behind the replayed capacity's bound."""

    short_average_s: float = 24 * 3600.0
    short_warning_c: float = 0.0011
    short_critical_c: float = 0.01
    # On LFP's plateau the model's voltage error outlasts a park; counting it as one look per 8 h in the mean
    # cell's filter and the delta filters (the car's: 30 min and 4 h, to follow SoC as it drives) keeps them from
    # reading the mean cell's plateau error as a leak: of 36 healthy vehicles the 30 min flagged, none are.
    error_correlation_s: float = 8 * 3600.0
    ocv_std_v: float = 0.003  # how well the model's OCV knows a rested cell: the replayed capacity's bound
    # Cells of one pack differ by a few %: the cells' own replayed capacities scattering more (a robust std) say
    # the record is too short to tell them apart, and the fit of their median voltage is kept instead.
    cell_capacity_scatter: float = 0.05

    def monitor_config(self) -> MonitorConfig:
        """The car's monitor, less the power limits and energy it computes for the driver at every sample."""
        return MonitorConfig(
            short=ShortRule(
                average_s=self.short_average_s, warning_c=self.short_warning_c, critical_c=self.short_critical_c
            ),
            estimate=replace(
                MEAN_CELL_OPTIONS, limits=False, energy=False, error_correlation_s=self.error_correlation_s
            ),
            delta=DeltaOptions(mean_error_s=self.error_correlation_s),
        )


@dataclass
class VehicleAnalysis:
    summary: dict
    days: list[dict]
    hourly: pd.DataFrame
    events: list[dict]
    samples: int
    series: int


@dataclass
class FleetAnalysis:
    vehicles: pd.DataFrame  # one row per vehicle, ranked: who needs service first
    days: pd.DataFrame  # health per vehicle-day: the trends
    hourly: pd.DataFrame  # per vehicle-hour: SoC, every cell's SoC, capacity (the drill-down)
    events: pd.DataFrame  # every event the monitors reported
    meta: dict = field(default_factory=dict)


def analyze_fleet(root, client, cell: str | None = None, tuning: FleetTuning = FleetTuning()) -> FleetAnalysis:
    """Every vehicle of the dataset at `root`, one Dask task each; the fleet's cell from _fleet.json unless given."""
    fleet = vehicle_days(root)
    cell = cell or FleetInfo.load(root).cell
    load_cell(cell)  # a wrong cell name fails here, not on every worker
    started = time.perf_counter()
    tasks = [(vehicle, [str(p) for p in paths]) for vehicle, paths in fleet.items()]
    results = map_with_progress(
        client, analyze_vehicle, tasks, cell, tuning, description=f"analysing {len(fleet)} vehicles"
    )
    wall_s = time.perf_counter() - started
    samples = sum(r.samples for r in results)
    cell_steps = sum(r.samples * r.series for r in results)
    vehicles = rank_vehicles(pd.DataFrame([r.summary for r in results]))
    meta = {
        "dataset": str(root),
        "cell": cell,
        "vehicles": len(results),
        "samples": samples,
        "cell_steps": cell_steps,
        "wall_s": wall_s,
        "cell_steps_per_s": cell_steps / wall_s,
        "workers": len(client.scheduler_info()["workers"]),
        "tuning": vars(tuning),
    }
    return FleetAnalysis(
        vehicles,
        pd.DataFrame([d for r in results for d in r.days]),
        pd.concat([r.hourly for r in results], ignore_index=True),
        pd.DataFrame([e for r in results for e in r.events]),
        meta,
    )


def analyze_vehicle(vehicle: str, paths: list[str], cell: str, tuning: FleetTuning = FleetTuning()) -> VehicleAnalysis:
    """The monitor over the vehicle's days in order (its filters carry state from one day to the next)."""
    model = load_cell(cell)
    monitor = series = sensors = None
    days, hourly, events, samples, last_time = [], [], [], 0, None
    record = []  # (time, current, cell voltages, mean temperature) per day, for the replay
    soc0_guess = None  # where the replay starts looking: the filter's SoC at the first sample
    for path in paths:
        data = read_day(path, vehicle, series)
        if monitor is None:
            series, sensors = data.cell_voltage_v.shape[1], data.temperature_c.shape[1]
            monitor = PackMonitor(model, series, sensors, config=tuning.monitor_config())
        elif data.temperature_c.shape[1] != sensors:
            raise DataError(path, f"has {data.temperature_c.shape[1]} temperature columns, the days before {sensors}")
        if last_time is not None and data.time_s[0] <= last_time:
            raise DataError(
                path,
                f"time must continue from the day before (which ended at {last_time} s), starts at {data.time_s[0]} s",
                TIME,
                1,
            )
        last_time = data.time_s[-1]
        found, est = monitor.update(data.time_s, data.current_a, data.cell_voltage_v, data.temperature_c)
        day = Path(path).parent.name.removeprefix("day=")
        events += [{"Vehicle": vehicle, "Day": day} | e.record() for e in found]
        days.append(_day_row(vehicle, day, est))
        hourly.append(_hourly(vehicle, est))
        soc0_guess = float(np.mean(est.cell_soc[0])) if soc0_guess is None else soc0_guess
        record.append(
            (
                data.time_s,
                data.current_a,
                data.cell_voltage_v.astype(np.float32),
                np.nanmean(data.temperature_c, axis=1),
            )
        )
        samples += len(data.time_s)
    summary = _summary(vehicle, days, events) | _replayed_capacity(model, record, soc0_guess, tuning)
    return VehicleAnalysis(summary, days, pd.concat(hourly, ignore_index=True), events, samples, series)


def _replayed_capacity(model, record: list, soc0_guess: float, tuning: FleetTuning) -> dict:
    """The capacity from the whole record (the filter's last estimate stays if it has under two rests): the
    median of every cell's own replay, or of a replay of their median voltage when the cells' fits scatter.
    Each cell on its own: the median of 16 voltages is not one cell's on LFP's stepped OCV, and read capacity
    2-4 % low on a week of the simulated fleet. The median of the cells, not their mean: a shorted cell seems
    to hold more than it does, and a broken sense wire reads nonsense."""
    time_s, current, voltage, temperature = (np.concatenate(column) for column in zip(*record))
    median_cell = fit_capacity_by_replay(
        model, time_s, current, np.nanmedian(voltage, axis=1), temperature, soc0_guess, tuning.ocv_std_v
    )
    if median_cell is None:
        return {"Capacity Method": "filter"}
    cells = fit_capacity_by_replay(
        model, time_s, current, voltage, temperature, soc0_guess, tuning.ocv_std_v, start_from=median_cell
    )
    capacity = float(np.median(cells.capacity_ah))
    scatter = 1.4826 * float(np.median(np.abs(cells.capacity_ah - capacity))) / capacity  # a robust std
    if scatter <= tuning.cell_capacity_scatter:
        bound, rmse, used = np.median(cells.capacity_bound_ah), np.median(cells.rmse_v), "median of the cells"
    else:
        capacity, bound, rmse = median_cell.capacity_ah, median_cell.capacity_bound_ah, median_cell.rmse_v
        used = f"median cell (the cells' own scatter {scatter:.0%})"
    q = float(model.param("capacity_ah", 25.0))
    return {
        "Capacity / Ah": capacity,
        "Capacity Bound / Ah": float(bound),
        "SOH Capacity / 1": capacity / q,
        "Capacity Method": f"replay of {cells.rests} rests, {used}",
        "Replay RMSE / V": float(rmse),
    }


def _day_row(vehicle: str, day: str, est) -> dict:
    spread = est.cell_soc.max(axis=1) - est.cell_soc.min(axis=1)
    return {
        "Vehicle": vehicle,
        "Day": day,
        "Capacity / Ah": est.capacity_ah[-1],
        "Capacity Bound / Ah": est.capacity_bound_ah[-1],
        "SOH Capacity / 1": est.soh_capacity[-1],
        "SOH Resistance / 1": est.soh_resistance[-1],
        "Resistance / ohm": float(np.median(est.resistance_ohm)),
        "Cell SOC Spread / 1": spread[-1],
        "Weakest Cell": int(np.argmin(est.cell_soc[-1])) + 1,
        "Max Leak / A": float(np.max(est.leak_a.mean(axis=0) - np.median(est.leak_a.mean(axis=0)))),
    }


def _hourly(vehicle: str, est) -> pd.DataFrame:
    """Hour means of what the drill-down plots: the pack's SoC, each cell's, and the capacity estimate."""
    hour = (est.time_s // HOUR_S).astype(int)
    hours, index = np.unique(hour, return_inverse=True)
    count = np.bincount(index)

    def mean(values):
        return np.bincount(index, weights=values, minlength=len(hours)) / count

    columns = {
        "Vehicle": vehicle,
        TIME: hours * HOUR_S,
        "SOC / 1": mean(est.soc),
        "Capacity / Ah": mean(est.capacity_ah),
        "Capacity Bound / Ah": mean(est.capacity_bound_ah),
    }
    columns |= {f"Cell SOC {c + 1} / 1": mean(est.cell_soc[:, c]) for c in range(est.cell_soc.shape[1])}
    return pd.DataFrame(columns)


def _summary(vehicle: str, days: list[dict], events: list[dict]) -> dict:
    """The vehicle's state at the end of its record, how it moved per day, and what the monitor found."""
    last = days[-1]
    row = {k: v for k, v in last.items() if k not in ("Day", "Max Leak / A")} | {"Days": len(days)}
    for name in ("SOH Capacity / 1", "SOH Resistance / 1", "Cell SOC Spread / 1"):
        values = np.array([d[name] for d in days])
        row[name.replace(" / 1", " Trend / 1 per day")] = (
            float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else float("nan")
        )
    flagged: dict[int, float] = {}  # cell -> when its voltage sensor was first flagged
    for e in events:
        if e["kind"] == "sensor_fault" and "cell" in e and not e["cleared"]:
            flagged.setdefault(e["cell"], e["time_s"])
    faulty = sorted(flagged)
    shorts = [e for e in events if e["kind"] == "internal_short"]
    # a sensor already faulty fakes a leak on its cell; one flagged later may read a cell the short has drained
    believed = [e for e in shorts if e["time_s"] < flagged.get(e["cell"], float("inf"))]
    # critical first, then the lowest resistance; a short seen only at rest has no size yet
    worst = min(
        believed, key=lambda e: (e["severity"] != "critical", "value" not in e, e.get("value", 0.0)), default=None
    )
    row |= {
        "Short Cell": worst["cell"] if worst else None,
        "Short Resistance / ohm": worst.get("value") if worst else None,
        "Short Severity": worst["severity"] if worst else None,
        "Short Time / s": worst["time_s"] if worst else None,
        "Short Cells": ",".join(str(c) for c in sorted({e["cell"] for e in believed})),
        "Sensor Fault Cells": ",".join(str(c) for c in faulty),
        "Other Sensor Faults": sum(e["kind"] == "sensor_fault" and "cell" not in e for e in events),
        "Events": len(events),
    }
    return row
