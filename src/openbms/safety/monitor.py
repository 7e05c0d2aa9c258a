"""The pack's safety supervisor: every check on every sample, one stream of events.

Per sample: sensor plausibility (which readings to trust), the pack estimator (bar-delta),
the safe operating area, thermal runaway; per chunk: internal shorts from the estimator's
leak evidence and the current sensor's offset. The same object serves a file
(`openbms monitor`) and the live runtime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..cell import CellModel
from ..estimate import EstimateOptions
from ..pack.estimator import DeltaOptions, PackEstimate, PackEstimator
from .events import Event
from .plausibility import PlausibilityChecker, PlausibilityRule
from .runaway import RunawayDetector, RunawayRule
from .short import ShortDetector, ShortRule
from .soa import SoaLimits, SoaMonitor


@dataclass(frozen=True)
class MonitorConfig:
    soa: SoaLimits | None = None  # default: LFP limits scaled to the cell's capacity
    plausibility: PlausibilityRule = field(default_factory=PlausibilityRule)
    runaway: RunawayRule = field(default_factory=RunawayRule)
    short: ShortRule = field(default_factory=ShortRule)
    estimate: EstimateOptions | None = None  # the mean cell's filter; default pack.estimator.MEAN_CELL_OPTIONS
    delta: DeltaOptions = field(default_factory=DeltaOptions)


class PackMonitor:
    def __init__(
        self, model: CellModel, series: int, n_sensors: int, soc0=None, config: MonitorConfig = MonitorConfig()
    ):
        q = float(model.param("capacity_ah", 25.0))
        self.series = series
        self.estimator = PackEstimator(model, series, soc0, config.estimate, config.delta)
        self.soa = SoaMonitor(config.soa or SoaLimits(capacity_ah=q), sensor_temperatures=True)
        self.plausibility = PlausibilityChecker(series, n_sensors, q, config.plausibility)
        self.runaway = RunawayDetector(series, n_sensors, config.runaway)
        self.shorts = ShortDetector(series, q, config.short)
        self.sensor_of_cell = self.runaway.sensor  # one map for the estimator, the SOA and the charger
        self.counts: Counter = Counter()

    def update(
        self, time_s, current_a, cell_voltage_v, temperature_c, bleed_a=None
    ) -> tuple[list[Event], PackEstimate]:
        """A chunk of samples: time (time,), current (time,), cell voltages (time, cells), sensors (time, sensors)."""
        time_s = np.atleast_1d(np.asarray(time_s, dtype=float))
        current = np.atleast_1d(np.asarray(current_a, dtype=float))
        v = np.asarray(cell_voltage_v, dtype=float).reshape(len(time_s), self.series)
        temps = np.asarray(temperature_c, dtype=float).reshape(len(time_s), -1)
        events, valid, bad_t = self.plausibility.update(time_s, v, temps, current)
        trusted_t = np.where(bad_t, np.nan, temps)  # a sensor judged implausible neither trips nor clears a limit
        quiet = self.soa.quiet(v, temps, current) & valid.all(axis=1)
        for k, t in enumerate(time_s):
            if not (quiet[k] and self.soa.idle):
                events += self.soa.update(t, np.where(valid[k], v[k], np.nan), trusted_t[k], current[k])
        events += self.runaway.update(time_s, v, trusted_t)
        self.trusted_temperature_c = trusted_t[-1]  # the last sample's sensors, NaN where implausible
        cell_temps = trusted_t[:, self.sensor_of_cell]
        est = self.estimator.update(time_s, current, v, cell_temps, bleed_a, valid)
        events += self.shorts.update(time_s, current, est.leak_a, v, valid, bleed_a)
        events += self.plausibility.check_offset(time_s[-1], est.current_offset_a[-1])
        events.sort(key=lambda e: e.time_s)
        self.counts.update((e.kind, e.severity) for e in events if not e.cleared)
        return events, est
