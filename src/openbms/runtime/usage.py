"""The battery's life as EU 2023/1542 Annex XIII asks for it: throughput, cycles, time at temperature and
state of charge, deep discharges and over-temperature events, kept across restarts.

Counted by the BMS sample by sample (positive current = charging) and saved in its non-volatile state;
the `health` purpose reads them (with the state of health and of certified energy) over VISS, and
`openbms passport` writes them out as the battery passport's usage document.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

TEMPERATURE_EDGES_C = (0.0, 10.0, 25.0, 35.0, 45.0)  # bands: below 0, 0-10, 10-25, 25-35, 35-45, above 45 degC
SOC_EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # ten bands of 10 %
DEEP_DISCHARGE_SOC = 0.05  # an event each time the pack goes below this
DEEP_DISCHARGE_REARM_SOC = 0.10  # and counts again only after climbing back above this
OVER_TEMPERATURE_C = 45.0  # the hottest sensor above this starts an event (LFP's usual charge limit)
OVER_TEMPERATURE_REARM_C = 40.0
MAX_GAP_S = 600.0  # a longer gap between samples (the car was off) counts no time in any band


def band_labels(edges: tuple[float, ...], unit: str, scale: float = 1.0) -> list[str]:
    """Readable names of the bands `edges` cut: "below 0 degC", "0-10 degC", ..., "above 45 degC"."""
    shown = [f"{edge * scale:g}" for edge in edges]
    return (
        [f"below {shown[0]} {unit}"]
        + [f"{a}-{b} {unit}" for a, b in itertools.pairwise(shown)]
        + [f"above {shown[-1]} {unit}"]
    )


def _band(edges: tuple[float, ...], x: float) -> int:
    return sum(x >= edge for edge in edges)


@dataclass
class Usage:
    """Counters since the battery was new (or since this BMS first ran on it)."""

    operating_s: float = 0.0
    charged_ah: float = 0.0
    discharged_ah: float = 0.0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0
    time_at_temperature_s: list[float] = field(default_factory=lambda: [0.0] * (len(TEMPERATURE_EDGES_C) + 1))
    time_at_soc_s: list[float] = field(default_factory=lambda: [0.0] * (len(SOC_EDGES) + 1))
    deep_discharge_events: int = 0
    over_temperature_events: int = 0
    in_deep_discharge: bool = False
    in_over_temperature: bool = False

    @classmethod
    def restore(cls, saved: dict | None) -> Usage:
        """From `as_dict()`; a saved record of another shape (another band layout) starts afresh rather than
        mixing bands."""
        fresh = cls()
        if not saved:
            return fresh
        try:
            usage = cls(**saved)
        except TypeError:
            return fresh
        if len(usage.time_at_temperature_s) != len(fresh.time_at_temperature_s) or len(usage.time_at_soc_s) != len(
            fresh.time_at_soc_s
        ):
            return fresh
        return usage

    def as_dict(self) -> dict:
        return asdict(self)

    def update(self, dt_s: float, current_a: float, pack_voltage_v: float, soc: float, hottest_c: float | None) -> None:
        """One sample's worth: `dt_s` since the last one at this current (+ charging), pack voltage and SoC."""
        if not 0 < dt_s <= MAX_GAP_S or not math.isfinite(current_a):
            return
        self.operating_s += dt_s
        ah, wh = abs(current_a) * dt_s / 3600.0, abs(current_a * pack_voltage_v) * dt_s / 3600.0
        if current_a > 0:
            self.charged_ah, self.charged_wh = self.charged_ah + ah, self.charged_wh + wh
        else:
            self.discharged_ah, self.discharged_wh = self.discharged_ah + ah, self.discharged_wh + wh
        self.time_at_soc_s[_band(SOC_EDGES, soc)] += dt_s
        if soc < DEEP_DISCHARGE_SOC and not self.in_deep_discharge:
            self.deep_discharge_events += 1
            self.in_deep_discharge = True
        elif soc > DEEP_DISCHARGE_REARM_SOC:
            self.in_deep_discharge = False
        if hottest_c is None:
            return
        self.time_at_temperature_s[_band(TEMPERATURE_EDGES_C, hottest_c)] += dt_s
        if hottest_c > OVER_TEMPERATURE_C and not self.in_over_temperature:
            self.over_temperature_events += 1
            self.in_over_temperature = True
        elif hottest_c < OVER_TEMPERATURE_REARM_C:
            self.in_over_temperature = False

    def equivalent_full_cycles(self, rated_capacity_ah: float) -> float:
        """Discharged charge over the rated capacity (the Annex XIII cycle count where cycles are partial)."""
        return self.discharged_ah / rated_capacity_ah
