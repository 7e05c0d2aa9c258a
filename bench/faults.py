"""Fault-injection campaign for the pack safety monitor on the life benchmark's plants and week: healthy packs (the
pack SoC and false alarms), internal shorts, thermal runaway, sensor faults.

Strings of 12 cells (4 temperature sensors) live bench/life.py's week (`sim.life`: two drives a day, parks of
8 h and more, partial charges to 60-90 %, a trip day to about 15 %), logged as it logs them (1 s driving, 10 s
charging, 60 s parked), and are fed to `PackMonitor` in chunks as a vehicle's BMS would see them: cell voltages
with 2 mV noise and 1 mV steps, temperatures with 0.2 degC noise, a current sensor with the life matrix's offset
(±0.5 % of 1C) and gain error (±1.5 %).

- PyBaMM packs (`sim.string`): the life matrix's PyBaMM plants (aged, at their temperature) as 12 cells with
  cell-to-cell variation, each solved on its own under the string current (a shorted cell carries it less V / R,
  V = 3.3 V on the LFP plateau; no balancing); estimated with the model `identify` made from the fresh plant's
  own tests (bench/life.py's, cached in out/bench/life/). Cell voltages are cached in out/bench/faults/.
- ESC packs (`pack.plant.PackPlant`): the life matrix's ESC rows, a123_lfp aged with its OCV 15 mV up or down,
  estimated with the unshifted model; shorts on fresh ESC strings at 25 degC (the model's own OCV and the rows'
  ±15 mV); and the thermal-runaway windows. Their weeks are cached in out/bench/faults/ too.

A false alarm is any derate or critical event, or any internal_short, thermal_runaway or sensor_fault event, that
the injected fault does not explain; the SOA refusing a charge below its charge window (the 0 degC weeks charge
and regenerate at 0 degC) is counted on its own.

Run: `nice -n 5 .venv/bin/python bench/faults.py [--pybamm PLANT ...]` (each PyBaMM pack's first run solves
12 cell-weeks and 6 shorted cells: about 1.5 CPU-hours; a minute or two per pack after). `--pybamm` alone: the ESC
packs only (their first run about 30 CPU-minutes, a few minutes after).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from openbms.cell import CellModel, load_cell  # noqa: E402
from openbms.pack.plant import PackPlant, Short, Spread  # noqa: E402
from openbms.safety.events import Event  # noqa: E402
from openbms.safety.monitor import PackMonitor  # noqa: E402
from openbms.safety.runaway import sensor_of_cell  # noqa: E402
from openbms.safety.soa import SoaLimits  # noqa: E402
from openbms.sim import faults  # noqa: E402
from openbms.sim.day import CHARGE, DRIVE, PARK, drive_park_charge  # noqa: E402
from openbms.sim.life import week  # noqa: E402
from openbms.sim.plant import Plant  # noqa: E402
from openbms.sim.string import PybammString, Variation  # noqa: E402

import life  # noqa: E402  (the life matrix's plants, cases and identified models)
from common import run_sections  # noqa: E402

OUT = Path("out/bench/faults")
SERIES, SENSORS = 12, 4
CACHE_VERSION = 2
LIFE = life.LIFE  # the life benchmark's week: two drives a day, parks >= 8 h, partial charges, a trip day
POOL_SPREAD = Variation(capacity=0.025, kinetics=0.08, soc=0.02)
PLATEAU_V = 3.3  # a short's leak is PLATEAU_V / R throughout
AWAKE_AFTER_S = 600
PARKED_SAMPLE_S = 10
CHUNK = 3600
VOLTAGE_NOISE_V, VOLTAGE_LSB_V, TEMPERATURE_NOISE_C = 0.002, 0.001, 0.2
SHORTS_OHM = (200, 1000)
ONSETS_PER_SHORT = 3
SHORT_WATCH_S = 24 * 3600.0  # a shorted cell is solved (and watched) this long after onset
SHORT_ONSETS_S = (2 * 3600.0, 72 * 3600.0)  # onsets drawn within: the first three days, a trip day among them
RUNAWAY_CASES = 10
SENSOR_CASES = 3  # of each kind
OFFSETS_C = (0.015, -0.015, 0.02, -0.02)  # current-sensor offsets beyond the rule, fraction of 1C (in spec: healthy)
COUNTED_KINDS = ("internal_short", "thermal_runaway", "sensor_fault")
BARS_H = {200: 6.0, 1000: 18.0}  # short resistance: detected within so many hours of onset
HEALTHY_BAR_H = 2000
COLD_CHARGE_C = SoaLimits().undertemperature_charge_c[0]  # below it, charging is the SOA's to refuse, not a fault
PARK_BAR = 0.5  # %
RUNAWAY_BAR_S = 5.0


# --------------------------------------------------------------------------- what the BMS sees


def measure_voltages(v: np.ndarray, rng) -> np.ndarray:
    return np.round((v + rng.normal(0.0, VOLTAGE_NOISE_V, v.shape)) / VOLTAGE_LSB_V) * VOLTAGE_LSB_V


def measure_temperatures(n: int, rng, ambient_c: float = 25.0) -> np.ndarray:
    """The plants are isothermal at the ambient: the sensors read it with noise."""
    return ambient_c + rng.normal(0.0, TEMPERATURE_NOISE_C, (n, SENSORS))


@dataclass
class PackData:
    """A pack's truth on the BMS's sampling grid: (time,), (time,) + = charging, (time, cells)."""

    time_s: np.ndarray
    current_a: np.ndarray
    voltage_v: np.ndarray
    note: str = ""
    soc: np.ndarray | None = None  # the cells' true SoC, (time, cells)
    phase: np.ndarray | None = None  # sim.day's PARK, DRIVE, CHARGE per sample

    def measured(self, seed: int) -> "PackData":
        """As the cell-voltage sensors read it."""
        return replace(self, voltage_v=measure_voltages(self.voltage_v, np.random.default_rng(seed)))

    def window(self, start_s: float, stop_s: float) -> "PackData":
        keep = (self.time_s >= start_s) & (self.time_s < stop_s)
        return PackData(
            *(None if x is None else x[keep].copy() for x in (self.time_s, self.current_a, self.voltage_v)),
            self.note,
            *(None if x is None else x[keep] for x in (self.soc, self.phase)),
        )

    @property
    def hours(self) -> float:
        return (self.time_s[-1] - self.time_s[0]) / 3600.0


# --------------------------------------------------------------------------- the PyBaMM plant


@dataclass(frozen=True)
class PoolPlant:
    """One of the life matrix's PyBaMM plants as a pack's cells: its first life case (ageing, temperature) and
    the model `identify` made from the fresh plant's own tests at that temperature."""

    label: str  # bench/life.py's variant
    cells: int = SERIES  # one pack

    @property
    def case(self) -> life.Case:
        return next(c for c in life.MATRIX if c.plant == self.label and not c.mismatch)

    @property
    def plant(self) -> Plant:
        return life.plant_of(self.case)

    def model(self) -> CellModel:
        return life.model_of(self.case)


def short_cases(time_s: np.ndarray, phase: np.ndarray, cells: int) -> list[tuple[float, float, int]]:
    """(ohm, onset s, cell from 0) of the shorts injected into a string living the week (time_s, phase): for each
    resistance one onset in a drive, one in a charge and one in a park, at random within SHORT_ONSETS_S."""
    rng = np.random.default_rng(11)
    window = (time_s >= SHORT_ONSETS_S[0]) & (time_s <= SHORT_ONSETS_S[1])
    cases = []
    for ohm in SHORTS_OHM:
        for n in range(ONSETS_PER_SHORT):
            during = np.flatnonzero(window & (phase == (DRIVE, CHARGE, PARK)[n % 3]))
            cases.append((ohm, float(time_s[rng.choice(during)]), int(rng.integers(cells))))
    return cases


class PybammPool:
    """A plant's cells with cell-to-cell variation on the life week's current, solved on demand and cached as npz."""

    def __init__(self, which: PoolPlant, seed: int = 7):
        self.which, self.seed = which, seed
        plant = which.plant
        self.capacity_ah = plant.capacity_ah()
        self.cells = POOL_SPREAD.draw(which.cells, LIFE.soc0, np.random.default_rng(seed))
        self.plan = week(self.capacity_ah, plant.spec.nominal_voltage_v, LIFE)
        self.grid = self.plan.logged()
        self._string: PybammString | None = None

    def run(
        self, index: int, short_ohm: float | None = None, onset_s: float | None = None, until_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(voltage, true SoC) of pool cell `index` on the logged samples up to until_s, shorted from onset_s."""
        cell = self.cells[index]
        key = (CACHE_VERSION, self.which.plant, LIFE, cell, short_ohm, onset_s, until_s)
        tag = f"{self.which.plant.name}_cell{index:02d}" + (f"_{short_ohm:g}ohm_at{onset_s:.0f}s" if short_ohm else "")
        path = OUT / f"{tag}_{hashlib.sha1(repr(key).encode()).hexdigest()[:10]}.npz"
        if not path.exists():
            if self._string is None:
                plan = self.plan
                stops = plan.time_s[np.flatnonzero(np.diff(plan.phase)) + 1]
                self._string = PybammString(self.which.plant, plan.time_s, plan.current_a, stops)
            grid = self.plan.time_s[self.grid]
            grid = grid if until_s is None else grid[grid <= until_s]
            v, z = self._string.run(cell, grid, PLATEAU_V / short_ohm if short_ohm else 0.0, onset_s)
            OUT.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, voltage_v=v, soc=z)
        data = np.load(path)
        return data["voltage_v"], data["soc"]

    def pack(self, replace: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> PackData:
        """The pool's cells as a string; `replace` swaps a position's run (a shorted cell). A cell that hit a
        voltage cut-off, or a shorter run, ends the pack's data there."""
        runs = [(replace or {}).get(p) or self.run(p) for p in range(len(self.cells))]
        n = min(len(v) for v, _ in runs)
        note = "" if n == len(self.grid) else f"until {self.plan.time_s[self.grid][n - 1] / 3600:.0f} h"
        k = self.grid[:n]
        return PackData(
            self.plan.time_s[k],
            self.plan.current_a[k],
            np.column_stack([v[:n] for v, _ in runs]),
            note,
            soc=np.column_stack([z[:n] for _, z in runs]),
            phase=self.plan.phase[k],
        )


# --------------------------------------------------------------------------- running the monitor


@dataclass(frozen=True)
class SensorError:
    """The current sensor's error, as the life matrix's sensors: an offset (fraction of 1C) and a gain error."""

    offset_c: float = 0.0
    gain: float = 0.0

    def read(self, current_a: np.ndarray, capacity_ah: float) -> np.ndarray:
        return current_a * (1.0 + self.gain) + self.offset_c * capacity_ah

    def __str__(self) -> str:
        return f"{100 * self.offset_c:+.2f} %C {100 * self.gain:+.1f} %"


LIFE_SENSORS = [SensorError(*x) for x in ((0.005, 0.015), (-0.005, -0.015), (0.0025, -0.01))]  # bench/life.py's


@dataclass
class Watch:
    """What one monitored run saw."""

    events: list[Event]
    hours: float
    leak_average_a: np.ndarray  # the short detector's averaged leak per cell at the end
    leak_peak_a: np.ndarray  # ... its largest at a chunk's end
    leak_trace: tuple[np.ndarray, np.ndarray] | None = None  # (time, leak against the median) of a watched cell
    pack_soc: np.ndarray | None = None  # the pack SoC shown to the driver, (time,)
    cell_soc: np.ndarray | None = None  # (time, cells)
    offset_a: np.ndarray | None = None  # the current sensor's offset as estimated, (time,)
    leak_a: np.ndarray | None = None  # the delta filters' leak estimates against the median cell, (time, cells)
    leak_std_a: np.ndarray | None = None  # ... and their sigmas


def counted(e: Event) -> bool:
    return not e.cleared and (e.severity in ("derate", "critical") or e.kind in COUNTED_KINDS)


def watch(
    model: CellModel,
    data: PackData,
    temperatures_c: np.ndarray,
    progress,
    task,
    sensor: SensorError = SensorError(),
    stop: Callable[[Event], bool] | None = None,
    trace_cell: int | None = None,
) -> Watch:
    """Feed measurements to a new PackMonitor in chunks; `stop`: end after the chunk with such an event."""
    monitor = PackMonitor(model, SERIES, SENSORS)
    v = data.voltage_v
    current = sensor.read(data.current_a, float(model.param("capacity_ah", 25.0)))
    events, trace, estimates = [], [], []
    peak = np.zeros(SERIES)
    n = len(data.time_s)
    progress.update(task, total=n, completed=0)
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        found, est = monitor.update(data.time_s[part], current[part], v[part], temperatures_c[part])
        events += found
        leak = est.leak_a - np.median(est.leak_a, axis=1, keepdims=True)
        estimates.append((est.soc, est.cell_soc, est.current_offset_a, leak, est.leak_std_a))
        peak = np.maximum(peak, monitor.shorts.average)
        if trace_cell is not None:
            trace.append(est.leak_a[:, trace_cell] - np.median(est.leak_a, axis=1))
        progress.update(task, completed=part.stop)
        if stop and any(stop(e) for e in found):
            n = part.stop
            break
    hours = (data.time_s[n - 1] - data.time_s[0]) / 3600.0
    leak_trace = (data.time_s[:n], np.concatenate(trace)) if trace_cell is not None else None
    soc, cells, offset, leak, leak_std = (np.concatenate(x) for x in zip(*estimates))
    return Watch(events, hours, monitor.shorts.average.copy(), peak, leak_trace, soc, cells, offset, leak, leak_std)


@dataclass
class Case:
    """One injected fault and how to judge the monitor's answer to it."""

    label: str
    onset_s: float
    detects: Callable[[Event], bool]  # the alarm that counts as detecting this fault
    explained: Callable[[Event], bool] = lambda e: False  # counted events the fault itself causes
    reference_s: float | None = None  # delay is measured from here (default: onset)
    cell: int | None = None  # the faulty cell, from 1
    truth: float | None = None  # e.g. the short's resistance


@dataclass
class Outcome:
    case: Case
    delay_s: float | None
    false_alarms: list[Event]
    value: float | None  # the detecting event's value
    watch: Watch


def judge(case: Case, seen: Watch) -> Outcome:
    hits = [e for e in seen.events if not e.cleared and e.time_s >= case.onset_s and case.detects(e)]
    first = min(hits, key=lambda e: e.time_s) if hits else None
    false = [
        e for e in seen.events if counted(e) and (e.time_s < case.onset_s or not (case.detects(e) or case.explained(e)))
    ]
    ref = case.onset_s if case.reference_s is None else case.reference_s
    return Outcome(
        case, None if first is None else first.time_s - ref, false, None if first is None else first.value, seen
    )


# --------------------------------------------------------------------------- tables


def fmt_delay(s: float) -> str:
    return f"{s:.1f} s" if abs(s) < 120 else f"{s / 3600:.1f} h"


def kinds(events: list[Event]) -> str:
    if not events:
        return "0"
    names = sorted({f"{e.kind}/{e.severity}" for e in events})
    return (
        f"{len(events)} ("
        + ", ".join(f"{n} x{sum(f'{e.kind}/{e.severity}' == n for e in events)}" for n in names)
        + ")"
    )


def scenario_row(name: str, outcomes: list[Outcome], note: str = "") -> str:
    delays = [o.delay_s for o in outcomes if o.delay_s is not None]
    delay = f"{fmt_delay(float(np.median(delays)))} / {fmt_delay(max(delays))}" if delays else "-"
    false = [e for o in outcomes for e in o.false_alarms]
    return f"| {name} | {len(outcomes)} | {len(delays)} | {delay} | {kinds(false)} | {note} |"


def alarm_list(
    labelled: list[tuple[str, list[Event]]], limit: int = 40, context: dict[int, str] | None = None
) -> list[str]:
    """The false alarms themselves, under a table: where, when, the monitor's own words, and (context, by the
    event's id) what the estimator saw then."""
    items = [(label, e) for label, events in labelled for e in events]
    notes = context or {}
    lines = [
        f"- {label}, {e.time_s / 3600:.2f} h"
        + (f" ({notes[id(e)]})" if id(e) in notes else "")
        + f": {e.kind}/{e.severity}: {e.explanation}"
        for label, e in items[:limit]
    ]
    more = [f"- ... and {len(items) - limit} more"] if len(items) > limit else []
    return ["", "False alarms:"] + lines + more if items else []


def outcome_alarms(name: str, outcomes: list[Outcome]) -> list[tuple[str, list[Event]]]:
    return [(f"{name} {o.case.label}", o.false_alarms) for o in outcomes]


SCENARIO_HEADER = [
    "| scenario | cases | detected | median / max delay | false alarms | notes |",
    "|---|---:|---:|---:|---|---|",
]


@dataclass
class Healthy:
    """One healthy pack's week: the plant, its sensors, and what the monitor made of it."""

    label: str
    plant: str  # the life matrix's plant
    sensor: SensorError
    data: PackData
    capacity_ah: np.ndarray  # each cell's true capacity
    seen: Watch
    ambient_c: float = 25.0

    def cold_charge(self, e: Event) -> bool:
        """The SOA keeping its charge window: the week charges (and regenerates) at the ambient, below it."""
        return e.kind == "undertemperature" and "charge window" in e.explanation and self.ambient_c < COLD_CHARGE_C

    @property
    def false_alarms(self) -> list[Event]:
        return [e for e in self.seen.events if counted(e) and not self.cold_charge(e)]

    @property
    def cold_alarms(self) -> list[Event]:
        return [e for e in self.seen.events if counted(e) and self.cold_charge(e)]

    def context(self, e: Event) -> str:
        """Where a false alarm fell: the phase and how long into it, the cell's leak estimate and its sigma, and
        how far the mean cell's SoC was from the truth (the error the delta filters read as differences)."""
        d, w = self.data, self.seen
        k = min(int(np.searchsorted(d.time_s, e.time_s)), len(d.time_s) - 1)
        began = np.flatnonzero(d.phase[: k + 1] != d.phase[k])
        since = (d.time_s[k] - d.time_s[began[-1] + 1 if len(began) else 0]) / 3600.0
        phase = {PARK: "park", DRIVE: "drive", CHARGE: "charge"}[int(d.phase[k])]
        mean_error = 100 * (np.mean(w.cell_soc[k]) - np.average(d.soc[k], weights=self.capacity_ah))
        leak = ""
        if e.cell is not None and w.leak_a is not None and w.leak_std_a is not None:
            c = e.cell - 1
            leak = f", its leak {1000 * w.leak_a[k, c]:.1f} ± {1000 * w.leak_std_a[k, c]:.1f} mA"
        return f"{phase}, {since:.1f} h in{leak}, mean cell's SoC {mean_error:+.1f} % off"

    @property
    def offset_alarms(self) -> list[Event]:
        return [e for e in self.seen.events if e.kind == "sensor_fault" and "current" in e.explanation]


@dataclass
class Campaign:
    """Results shared between the sections (the bars read them all)."""

    healthy: list[Healthy] = field(default_factory=list)
    shorts: dict[tuple[str, int], list[Outcome]] = field(default_factory=dict)  # by (plant kind, ohm)
    runaway: list[Outcome] = field(default_factory=list)
    pools: dict[str, PybammPool] = field(default_factory=dict)
    plants: list[PoolPlant] = field(default_factory=lambda: [PoolPlant(p) for p in life.VARIANTS])

    @property
    def short_plants(self) -> list[PoolPlant]:
        """The LFP plants: a short's leak is taken as 3.3 V / R, the LFP plateau."""
        return [w for w in self.plants if w.plant.spec.chemistry == "LFP"]

    def pool(self, which: PoolPlant) -> PybammPool:
        if which.label not in self.pools:
            self.pools[which.label] = PybammPool(which)
        return self.pools[which.label]


def usable_soc(soc: np.ndarray, capacity_ah: np.ndarray) -> np.ndarray:
    """The pack SoC a driver needs, from its cells: charge out before the emptiest cell is empty over that plus
    the charge in before the fullest is full (the estimator's definition, on the truth)."""
    out = np.min(capacity_ah * soc, axis=1)
    into = np.min(capacity_ah * (1.0 - soc), axis=1)
    return out / (out + into)


@dataclass
class PackScores:
    rmse: float  # pack SoC, %
    max: float
    park_move: float  # largest move within a park beyond what it corrected, %
    cell_max: float  # largest cell SoC error, %
    spread: float  # largest error of the cells' SoC spread (max - min), %
    offset_ma: float  # largest estimated current offset after the first day, mA (true in the label)


def pack_scores(h: Healthy) -> PackScores:
    d, w = h.data, h.seen
    true = usable_soc(d.soc, h.capacity_ah)
    err = w.pack_soc - true
    day = d.time_s >= d.time_s[0] + 86400
    return PackScores(
        rmse=100 * float(np.sqrt(np.mean(life._on_minutes(d.time_s, err) ** 2))),
        max=100 * float(np.max(np.abs(err))),
        park_move=100 * max(life.park_moves(w.pack_soc, true, d.phase, d.time_s)),
        cell_max=100 * float(np.max(np.abs(w.cell_soc - d.soc))),
        spread=100 * float(np.max(np.abs(np.ptp(w.cell_soc, axis=1) - np.ptp(d.soc, axis=1)))),
        offset_ma=1000 * float(np.max(np.abs(w.offset_a[day]))),
    )


# --------------------------------------------------------------------------- sections


def plants_section(c: Campaign) -> Callable:
    def make(progress) -> list[str]:
        lines = [
            "| plant | ageing | degC | cells | capacity, Ah: min / max | exchange current x: min / max | "
            "initial SoC: min / max | samples per day |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        task = progress.add_task("PyBaMM packs", total=len(c.plants) * SERIES)
        for which in c.plants:
            pool = c.pool(which)
            for k in range(len(pool.cells)):
                progress.update(task, description=f"PyBaMM {which.label}: cell {k + 1}/{len(pool.cells)}")
                pool.run(k)
                progress.advance(task)
            cap = np.array([x.capacity for x in pool.cells]) * pool.capacity_ah
            kin = np.array([x.kinetics for x in pool.cells])
            soc = np.array([x.soc0 for x in pool.cells])
            case = which.case
            lines.append(
                f"| PyBaMM {which.label} | −{100 * case.fade:.0f} % / −{100 * case.slowdown:.0f} % kinetics | "
                f"{case.temperature_c:g} | {len(pool.cells)} | {cap.min():.3f} / {cap.max():.3f} | "
                f"{kin.min():.2f} / {kin.max():.2f} | {soc.min():.3f} / {soc.max():.3f} | "
                f"{len(pool.grid) / LIFE.days:.0f} |"
            )
        lines.append(
            f"| ESC a123_lfp, OCV ±{1000 * life.ESC_SHIFT_V:g} mV | as bench/life.py's ESC rows | 0, 25, 40 | "
            f"{SERIES} | Spread() | | | |"
        )
        return lines

    return make


def esc_packs() -> list[tuple[str, float, float, float, float]]:
    """(plant, OCV shift V, fade, slowdown, degC): bench/life.py's ESC rows."""
    return [
        (f"ESC {sign}15 mV", shift, fade, slow, t)
        for sign, shift in (("+", life.ESC_SHIFT_V), ("−", -life.ESC_SHIFT_V))
        for fade, slow, t in ((0.0, 0.0, 25.0), (0.10, 0.30, 0.0), (0.15, 0.50, 40.0))
    ]


def esc_week(shift: float, fade: float, slow: float, temperature_c: float, seed: int, shorts=(), until_s=np.inf):
    """(plant data, true capacities) of an ESC string (a123_lfp aged, its OCV shifted, with `shorts`) on the life
    week, up to until_s; cached in OUT as npz (a week is a minute or two of CPU, the monitor seconds)."""
    a123 = load_cell("a123_lfp")
    cell = replace(a123.scaled(capacity=1 - fade, resistance=1 / (1 - slow)), ocv_v=a123.ocv_v + shift)
    plan = week(float(cell.param("capacity_ah", temperature_c)), 3.3, LIFE)
    k = plan.logged()
    k = k[plan.time_s[k] < until_s]
    key = (CACHE_VERSION, shift, fade, slow, temperature_c, seed, LIFE, tuple(shorts), len(k))
    path = OUT / f"esc_{hashlib.sha1(repr(key).encode()).hexdigest()[:12]}.npz"
    if not path.exists():
        plant = PackPlant(cell, SERIES, Spread(), soc0=LIFE.soc0, shorts=list(shorts), seed=seed)
        v, z = plant.run(plan.time_s[k], plan.current_a[k], temperature_c)
        capacity = np.array([float(x.param("capacity_ah", temperature_c)) for x in plant.cells])
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, voltage_v=v, soc=z, capacity_ah=capacity)
    data = np.load(path)
    pack = PackData(plan.time_s[k], plan.current_a[k], data["voltage_v"], soc=data["soc"], phase=plan.phase[k])
    return pack, data["capacity_ah"]


def healthy_section(c: Campaign) -> Callable:
    def make(progress) -> list[str]:
        task = progress.add_task("healthy packs", total=1)
        a123 = load_cell("a123_lfp")
        n = 0
        for which in c.plants:
            pool, model = c.pool(which), which.model()
            for sensor in LIFE_SENSORS[:2]:
                progress.update(task, description=f"healthy PyBaMM {which.label}, {sensor}")
                data = pool.pack()
                capacity = np.array([x.capacity for x in pool.cells]) * pool.capacity_ah
                temps = measure_temperatures(len(data.time_s), np.random.default_rng(100 + n), which.case.temperature_c)
                seen = watch(model, data.measured(200 + n), temps, progress, task, sensor)
                c.healthy.append(
                    Healthy(
                        f"PyBaMM {which.label}", which.label, sensor, data, capacity, seen, which.case.temperature_c
                    )
                )
                n += 1
        for seed, (plant, shift, fade, slow, t) in enumerate(esc_packs()):
            for sensor in LIFE_SENSORS[:2]:
                progress.update(task, description=f"healthy {plant}, −{100 * fade:.0f} %, {t:g} degC, {sensor}")
                data, capacity = esc_week(shift, fade, slow, t, seed)
                temps = measure_temperatures(len(data.time_s), np.random.default_rng(300 + n), t)
                seen = watch(a123, data.measured(400 + n), temps, progress, task, sensor)
                label = f"{plant}, −{100 * fade:.0f} % / −{100 * slow:.0f} % kinetics, {t:g} degC"
                c.healthy.append(Healthy(label, plant, sensor, data, capacity, seen, t))
                n += 1
        return healthy_table(c.healthy)

    return make


def healthy_table(packs: list[Healthy]) -> list[str]:
    scored = sorted(((h, pack_scores(h)) for h in packs), key=lambda x: -x[1].park_move)  # worst first
    lines = [
        "| pack | sensor | pack-hours | pack SoC RMSE / max % | park move % | cell SoC max error % | "
        "spread error % | offset estimated, max mA (true) | false alarms | offset alarms | SOA: charging below "
        f"{COLD_CHARGE_C:g} degC |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    worst = {f: max(getattr(s, f) for _, s in scored) for f in PackScores.__dataclass_fields__}
    median = {f: float(np.median([getattr(s, f) for _, s in scored])) for f in PackScores.__dataclass_fields__}
    hours = sum(h.seen.hours for h in packs)
    false = [e for h in packs for e in h.false_alarms]
    offsets = sum(len(h.offset_alarms) for h in packs)
    cold = sum(len(h.cold_alarms) for h in packs)
    for name, x in ((f"**worst of {len(packs)}**", worst), (f"**median of {len(packs)}**", median)):
        lines.append(
            f"| {name} | | {hours:.0f} | {x['rmse']:.2f} / {x['max']:.1f} | {x['park_move']:.2f} | "
            f"{x['cell_max']:.1f} | {x['spread']:.1f} | {x['offset_ma']:.0f} | {kinds(false)} | {offsets} | {cold} |"
        )
    for h, sc in scored:
        q = float(np.mean(h.capacity_ah))
        lines.append(
            f"| {h.label} | {h.sensor} | {h.seen.hours:.0f} | {sc.rmse:.2f} / {sc.max:.1f} | {sc.park_move:.2f} | "
            f"{sc.cell_max:.1f} | {sc.spread:.1f} | {sc.offset_ma:.0f} ({1000 * h.sensor.offset_c * q:+.0f}) | "
            f"{kinds(h.false_alarms)} | {len(h.offset_alarms)} | {len(h.cold_alarms)} |"
        )
    context = {id(e): h.context(e) for h in packs for e in h.false_alarms}
    by_phase = Counter(note.split(",")[0] for note in context.values())
    if by_phase:
        lines += ["", "False alarms by phase: " + ", ".join(f"{n} in a {p}" for p, n in by_phase.most_common())]
    return lines + alarm_list([(h.label, h.false_alarms) for h in packs], context=context)


ESC_SHORT_STRINGS = [  # (plant, OCV shift V): fresh a123_lfp strings at 25 degC, the model's own OCV and the matrix's
    ("ESC 0 mV", 0.0),
    (f"ESC +{1000 * life.ESC_SHIFT_V:g} mV", life.ESC_SHIFT_V),
    (f"ESC −{1000 * life.ESC_SHIFT_V:g} mV", -life.ESC_SHIFT_V),
]


def short_case(label: str, ohm: float, onset: float, cell: int) -> Case:
    """A short in `cell` (from 1): detected by an internal_short on that cell; what it does to that cell is its own."""
    return Case(
        label,
        onset,
        lambda e: e.kind == "internal_short" and e.cell == cell,
        explained=lambda e: e.cell == cell,
        cell=cell,
        truth=ohm,
    )


def shorts_section(c: Campaign) -> Callable:
    def make(progress) -> list[str]:
        task = progress.add_task("shorts", total=1)
        n = 0

        def run(kind: str, model: CellModel, data: PackData, case: Case, ambient_c: float) -> None:
            nonlocal n
            progress.update(task, description=f"short {case.truth:g} ohm {case.label}")
            temps = measure_temperatures(len(data.time_s), np.random.default_rng(500 + n), ambient_c)
            sensor = LIFE_SENSORS[0] if kind == "PyBaMM" else LIFE_SENSORS[n % 2]
            seen = watch(
                model, data.measured(600 + n), temps, progress, task, sensor, case.detects, (case.cell or 1) - 1
            )
            c.shorts.setdefault((kind, int(case.truth or 0)), []).append(judge(case, seen))
            n += 1

        for which in c.short_plants:
            pool, model = c.pool(which), which.model()
            for ohm, onset, position in short_cases(pool.plan.time_s, pool.plan.phase, len(pool.cells)):
                progress.update(task, description=f"{which.label}: short {ohm} ohm, solving cell {position + 1}")
                data = pool.pack({position: pool.run(position, ohm, onset, onset + SHORT_WATCH_S)})
                label = f"({which.label}, cell {position + 1}, onset {onset / 3600:.1f} h)"
                run("PyBaMM", model, data, short_case(label, ohm, onset, position + 1), which.case.temperature_c)
        a123 = load_cell("a123_lfp")
        plan = week(float(a123.param("capacity_ah", 25.0)), 3.3, LIFE)  # the fresh strings' week, theirs alike
        for seed, (plant, shift) in enumerate(ESC_SHORT_STRINGS):
            for ohm, onset, position in short_cases(plan.time_s, plan.phase, SERIES):
                progress.update(task, description=f"{plant}: short {ohm} ohm, simulating")
                short = Short(position, ohm, onset)
                data, _ = esc_week(shift, 0.0, 0.0, 25.0, 50 + seed, [short], until_s=onset + SHORT_WATCH_S)
                label = f"({plant}, cell {position + 1}, onset {onset / 3600:.1f} h)"
                run("ESC", a123, data, short_case(label, ohm, onset, position + 1), 25.0)
        plot_leaks(c.shorts, OUT / "short_leak.png")
        lines = list(SCENARIO_HEADER)
        for (kind, ohm), outcomes in sorted(c.shorts.items(), key=lambda x: -x[0][1]):  # the weakest short first
            lines.append(
                scenario_row(
                    f"internal short {ohm} ohm, {kind} (leak {1000 * PLATEAU_V / ohm:.1f} mA)",
                    outcomes,
                    short_note(outcomes),
                )
            )
        return lines + alarm_list(
            [x for (kind, ohm), o in c.shorts.items() for x in outcome_alarms(f"{ohm} ohm {kind}", o)]
        )

    return make


def short_note(outcomes: list[Outcome]) -> str:
    """Estimated resistance vs the true one, and how far the undetected ones got."""
    ohm = outcomes[0].case.truth
    found = [o.value for o in outcomes if o.value is not None]
    close = sum(0.5 <= r / ohm <= 2.0 for r in found)
    delays = [o.delay_s for o in outcomes if o.delay_s is not None]
    parts = [f"found after {', '.join(fmt_delay(d) for d in delays)}"] if delays else []
    if found:  # the leak evidence names a size, the rest evidence none
        parts.append(f"estimated {', '.join(f'{r:.0f}' for r in found)} ohm ({close} within a factor 2 of {ohm} ohm)")
    missed = [o for o in outcomes if o.delay_s is None]
    if missed:
        seen = [1000 * o.watch.leak_average_a[o.case.cell - 1] for o in missed]
        parts.append(
            f"missed {', '.join(o.case.label for o in missed)} after {SHORT_WATCH_S / 3600:.0f} h "
            f"with averaged leak {', '.join(f'{x:.1f}' for x in seen)} mA (true {1000 * PLATEAU_V / ohm:.1f})"
        )
    return "; ".join(parts)


def plot_leaks(shorts: dict[tuple[str, int], list[Outcome]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 5))
    for n, ((kind, ohm), outcomes) in enumerate(shorts.items()):
        for m, o in enumerate(outcomes):
            t, leak = o.watch.leak_trace
            label = f"{ohm} ohm, {kind}" if m == 0 else None
            ax.plot((t - o.case.onset_s) / 3600, 1000 * leak, color=f"C{n}", lw=0.8, label=label)
        ax.axhline(1000 * PLATEAU_V / ohm, color=f"C{n}", ls=":", lw=0.8)
    ax.set(
        xlabel="hours after onset",
        ylabel="leak estimate against the median cell / mA",
        title="Shorted cells' leak evidence (dotted: true leak)",
        xlim=(-6, SHORT_WATCH_S / 3600),
        ylim=(-10, 40),
    )
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def runaway_section(c: Campaign) -> Callable:
    """Runaway windows at 1 Hz on ESC packs: an hour before onset (the monitor starts there) to 10 min after."""

    def make(progress) -> list[str]:
        esc = load_cell("a123_lfp")
        q = float(esc.param("capacity_ah", 25.0))
        rng = np.random.default_rng(21)
        task = progress.add_task("thermal runaway", total=1)
        sensor_of = sensor_of_cell(SENSORS, SERIES)
        for n in range(RUNAWAY_CASES):
            t, i, _ = drive_park_charge(q, 1, seed=2000 + n)
            onset = float(np.round(rng.uniform(3600, t[-1] - 600)))
            cell = int(rng.integers(SERIES))
            sensor = int(sensor_of[cell])
            progress.update(
                task,
                description=f"thermal runaway {n + 1}/{RUNAWAY_CASES}: cell {cell + 1}, onset {onset / 3600:.1f} h",
            )
            k = (t >= onset - 3600) & (t < onset + 600)
            plant = PackPlant(esc, SERIES, Spread(), soc0=rng.uniform(0.3, 0.9), seed=n)
            v, _ = plant.run(t[k], i[k])
            temps = measure_temperatures(int(k.sum()), np.random.default_rng(700 + n))
            met = faults.thermal_runaway(t[k], v, temps, cell, sensor, onset)
            case = Case(
                f"cell {cell + 1}",
                onset,
                lambda e, cell=cell: e.kind == "thermal_runaway" and e.cell == cell + 1,
                explained=lambda e: True,
                reference_s=met,
            )
            measured = PackData(t[k], i[k], v).measured(800 + n)
            c.runaway.append(judge(case, watch(esc, measured, temps, progress, task)))
        delays = [o.delay_s for o in c.runaway if o.delay_s is not None]
        note = (
            (
                f"delay from the GB 38031 condition in the injected truth; alarm {min(delays):.1f}-{max(delays):.1f} s after it; "
                f"onsets {', '.join(f'{o.case.onset_s / 3600:.1f}' for o in c.runaway)} h"
            )
            if delays
            else ""
        )
        return (
            SCENARIO_HEADER
            + [scenario_row("thermal runaway (sim.faults, ESC pack, 1 Hz)", c.runaway, note)]
            + alarm_list(outcome_alarms("runaway", c.runaway))
        )

    return make


def sensor_section(c: Campaign) -> Callable:
    """Measurement faults on PyBaMM packs; the monitor starts 2 h before onset (a BMS that just booted)."""

    def make(progress) -> list[str]:
        if not c.short_plants:
            return ["No PyBaMM pack (--pybamm with no plant)."]
        which = c.short_plants[0]
        pool, model = c.pool(which), which.model()
        ambient = which.case.temperature_c
        rng = np.random.default_rng(31)
        task = progress.add_task("sensor faults", total=1)
        lines, labelled = list(SCENARIO_HEADER), []
        for name, inject, hours_after in SENSOR_FAULTS:
            outcomes = []
            for n in range(SENSOR_CASES):
                pack = pool.pack()
                onset = float(pack.time_s[np.searchsorted(pack.time_s, rng.uniform(4 * 3600, 140 * 3600))])
                data = pack.window(onset - 2 * 3600, onset + hours_after * 3600).measured(1000 + n)
                temps = measure_temperatures(len(data.time_s), np.random.default_rng(900 + n), ambient)
                where = int(rng.integers(SERIES - 1))
                progress.update(task, description=f"{name} {n + 1}/{SENSOR_CASES}: onset {onset / 3600:.1f} h")
                case = inject(data, temps, where, onset)
                case.label += f" at {onset / 3600:.1f} h"
                outcomes.append(judge(case, watch(model, data, temps, progress, task)))
            lines.append(scenario_row(name, outcomes, delay_note(outcomes)))
            labelled += outcome_alarms(name.split(" (")[0], outcomes)
        q = float(model.param("capacity_ah", 25.0))
        outcomes = []
        for n, f in enumerate(OFFSETS_C):
            progress.update(task, description=f"current offset {100 * f:+.1f} % of 1C")
            data = pool.pack().measured(1200 + n)
            temps = measure_temperatures(len(data.time_s), np.random.default_rng(1100 + n), ambient)
            case = Case(
                f"{100 * f:+.1f} %",
                data.time_s[0],
                lambda e: e.kind == "sensor_fault" and e.cell is None and "current" in e.explanation,
            )
            outcomes.append(judge(case, watch(model, data, temps, progress, task, SensorError(f))))
        values = [o.value for o in outcomes if o.value is not None]
        note = (
            f"from the week's start; true {', '.join(f'{1000 * f * q:+.0f}' for f in OFFSETS_C)} mA,"
            f" estimated {', '.join(f'{1000 * x:+.0f}' for x in values) or '-'} mA"
        )
        label = ", ".join(f"{100 * f:+.1f}" for f in OFFSETS_C)
        lines.append(scenario_row(f"current offset {label} % of 1C ({which.label})", outcomes, note))
        labelled += outcome_alarms("current offset", outcomes)
        return lines + alarm_list(labelled)

    return make


def inject_stuck(data: PackData, temps, cell: int, onset: float) -> Case:
    faults.stuck(data.voltage_v, cell, onset, data.time_s)
    return Case(f"cell {cell + 1}", onset, lambda e: e.kind == "sensor_fault" and e.cell == cell + 1)


def inject_open_wire(data: PackData, temps, cell: int, onset: float) -> Case:
    faults.open_wire(data.voltage_v, cell, onset, data.time_s)
    return Case(f"cell {cell + 1}", onset, lambda e: e.kind == "sensor_fault" and e.cell in (cell + 1, cell + 2))


def inject_cold_sensor(data: PackData, temps, cell: int, onset: float) -> Case:
    """An open NTC: the sensor reads far below any real temperature."""
    sensor = cell % SENSORS
    temps[np.searchsorted(data.time_s, onset) :, sensor] = -60.0
    return Case(
        f"sensor {sensor + 1}",
        onset,
        lambda e: e.kind == "sensor_fault" and e.cell is None and "temperature" in e.explanation,
    )


SENSOR_FAULTS = [  # name, injection, hours monitored after onset
    ("stuck cell voltage (sim.faults.stuck)", inject_stuck, 24),
    ("open sense wire (sim.faults.open_wire)", inject_open_wire, 1),
    ("temperature sensor out of range (reads -60 degC)", inject_cold_sensor, 1),
]


def delay_note(outcomes: list[Outcome]) -> str:
    missed = [o.case.label for o in outcomes if o.delay_s is None]
    return f"missed: {', '.join(missed)}" if missed else ""


def bars_section(c: Campaign) -> Callable:
    def make(progress) -> list[str]:
        lines = ["| bar | result | met |", "|---|---|---|"]

        def bar(what: str, got: str, met: bool) -> None:
            lines.append(f"| {what} | {got} | {'met' if met else 'MISSED'} |")

        for ohm, hours in BARS_H.items():
            outcomes = [o for (_, r), found in c.shorts.items() if r == ohm for o in found]
            delays = [o.delay_s for o in outcomes if o.delay_s is not None]
            met = bool(outcomes) and len(delays) == len(outcomes) and max(delays) <= hours * 3600
            got = f"{len(delays)}/{len(outcomes)} detected" + (f", max {max(delays) / 3600:.1f} h" if delays else "")
            bar(f"{ohm} ohm short detected within {hours:g} h of onset", got, met)
        hours = sum(h.seen.hours for h in c.healthy)
        false = sum(len(h.false_alarms) for h in c.healthy)
        bar(
            f"zero false alarms over >= {HEALTHY_BAR_H:,} healthy pack-hours".replace(",", " "),
            f"{false} in {hours:.0f} pack-hours",
            hours >= HEALTHY_BAR_H and false == 0,
        )
        moves = [pack_scores(h).park_move for h in c.healthy]
        bar(f"pack SoC moves <= {PARK_BAR:g} % in parks", f"worst {max(moves):.2f} %", max(moves) <= PARK_BAR)
        offsets = sum(len(h.offset_alarms) for h in c.healthy)
        bar(
            "no current-sensor alarm for an offset within ±0.5 % of 1C",
            f"{offsets} in {len(c.healthy)} packs",
            offsets == 0,
        )
        delays = [o.delay_s for o in c.runaway if o.delay_s is not None]
        met = bool(c.runaway) and len(delays) == len(c.runaway) and max(delays) <= RUNAWAY_BAR_S
        got = f"{len(delays)}/{len(c.runaway)} alarmed" + (f", max {max(delays):.1f} s" if delays else "")
        bar(f"thermal runaway alarm within {RUNAWAY_BAR_S:g} s of the GB 38031 condition", got, met)
        return lines

    return make


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pybamm",
        nargs="*",
        choices=list(life.VARIANTS),
        default=list(life.VARIANTS),
        metavar="PLANT",
        help=f"the life matrix's PyBaMM plants to build packs of (default all: {', '.join(life.VARIANTS)}); each "
        "pack's first run solves 12 cell-weeks; --pybamm alone: the ESC packs only",
    )
    c = Campaign(plants=[PoolPlant(p) for p in parser.parse_args(argv).pybamm])
    sampling = (
        f"Logged as bench/life.py logs: 1 s driving, 10 s charging, 60 s parked; {SERIES} cells, {SENSORS} "
        f"temperature sensors; voltage noise {1000 * VOLTAGE_NOISE_V:g} mV, {1000 * VOLTAGE_LSB_V:g} mV steps; "
        f"temperature noise {TEMPERATURE_NOISE_C} degC; the current sensor's offset and gain error as named."
    )
    return run_sections(
        [
            (
                "Plants",
                f"The life matrix's plants as {SERIES}-cell strings on its week (sim.life: two drives a day, parks"
                f" of 8 h and more, partial charges to 60-90 %, a trip day to 15 %). PyBaMM: each cell solved on its "
                f"own under the string current; variation capacity {100 * POOL_SPREAD.capacity:g} %, exchange "
                f"current {100 * POOL_SPREAD.kinetics:g} %, initial SoC {100 * POOL_SPREAD.soc:g} % (1 sigma); the "
                "estimator's model identified from the fresh plant's own tests (bench/life.py's). ESC: a123_lfp aged"
                " and its OCV shifted, estimated with the unshifted model. " + sampling,
                plants_section(c),
            ),
            (
                "Healthy packs: pack SoC and false alarms",
                "Worst first (by park move). Pack SoC against the same definition on the true cells (charge out "
                "before the emptiest cell is empty over that plus charge in before the fullest is full). Park move: "
                "the largest move within a park beyond what it corrected of the error. Counted as false alarms: "
                "any derate or critical event, and any internal_short, thermal_runaway or sensor_fault event.",
                healthy_section(c),
            ),
            (
                "Internal shorts",
                f"Leak = {PLATEAU_V} V / R from a random onset in a drive, park or charge, in one cell of the pack "
                f"(the PyBaMM packs, and fresh ESC strings at 25 degC: {', '.join(p for p, _ in ESC_SHORT_STRINGS)}); "
                f"the monitor runs from the week's start until it names the shorted cell or {SHORT_WATCH_S / 3600:g}"
                " h after onset. Detected: internal_short on the shorted cell after onset; false alarm: any other "
                "counted event not on the shorted cell.",
                shorts_section(c),
            ),
            (
                "Thermal runaway",
                "sim.faults.thermal_runaway (2 degC/s heating, voltage to a third in 20 s) injected at a "
                "random time of a drive / park / charge day; the BMS is taken to be awake at 1 Hz.",
                runaway_section(c),
            ),
            ("Sensor faults (PyBaMM packs)", "", sensor_section(c)),
            ("Bars", "", bars_section(c)),
        ],
        OUT,
    )


if __name__ == "__main__":
    sys.exit(main())
