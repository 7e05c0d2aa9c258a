"""Safe operating area (SOA) of LFP cells at three levels, and the current limits derated from it.

Each quantity is checked against a warning, a derate and a critical threshold
(critical = open the contactors, as foxBMS 2 does). A level is entered only after
its condition has lasted `debounce_samples` samples and `debounce_s` seconds (one
noisy sample does not trip), and left only when the value is back inside by a
hysteresis margin for `clear_hold_s` (no chatter at a threshold). Level numbers are
the ranks of `events.SEVERITIES`: 0 = "info" (inside), 1 warning, 2 derate, 3 critical.
A NaN reading neither enters nor clears a level: sensor loss is reported by the
plausibility checks, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import SEVERITIES, Event, rank

Levels = tuple[float, float, float]  # (warning, derate, critical)


@dataclass(frozen=True)
class SoaLimits:
    """LFP defaults; currents are C-rates times `capacity_ah`, so one table serves any pack size."""

    capacity_ah: float = 138.0  # the bundled blade cell; a pack config sets its own
    # LFP: charging regulates at 3.55 V so a normal charge never warns; 3.60 V is the cells' rated charge
    # voltage (both bundled cells); above ~3.65 V electrolyte oxidation and plating begin. Below 2.5 V the
    # cell is empty (the OCV knee); below 2.0 V (the rated minimum) the copper collector starts to dissolve.
    overvoltage_v: Levels = (3.55, 3.60, 3.65)
    undervoltage_v: Levels = (2.60, 2.50, 2.00)
    # Charging below 0 degC plates lithium on the graphite anode; above ~55 degC the SEI grows fast.
    # Discharge is tolerated over a wider window (datasheets: -30..60 degC).
    overtemperature_charge_c: Levels = (45.0, 50.0, 55.0)
    undertemperature_charge_c: Levels = (5.0, 2.0, 0.0)
    overtemperature_discharge_c: Levels = (50.0, 55.0, 60.0)
    undertemperature_discharge_c: Levels = (-10.0, -20.0, -30.0)
    # Above the derated limits below (max_charge_c / max_discharge_c), so a controller that follows them never trips.
    overcurrent_charge_c: Levels = (1.1, 1.3, 1.6)
    overcurrent_discharge_c: Levels = (3.3, 4.0, 5.0)
    charge_detect_c: float = 0.02  # above this charging current the charge temperature window applies
    # Recovery margins, each below the smallest gap between its levels so that every level can clear on its own.
    hysteresis_v: float = 0.03
    hysteresis_c: float = 1.5  # degC
    hysteresis_current_c: float = 0.1  # C-rate
    debounce_samples: int = 2
    debounce_s: float = 0.5  # at most 1 s: a critical level must open the contactors within about a second
    clear_hold_s: float = 2.0
    # Derating: continuous limits, then piecewise-linear factors (clamped at the tables' ends).
    max_charge_c: float = 1.0
    max_discharge_c: float = 3.0
    charge_temperature_c: tuple[float, ...] = (0.0, 5.0, 15.0, 45.0, 55.0)
    charge_temperature_factor: tuple[float, ...] = (0.0, 0.2, 1.0, 1.0, 0.0)
    discharge_temperature_c: tuple[float, ...] = (-30.0, -20.0, 0.0, 50.0, 60.0)
    discharge_temperature_factor: tuple[float, ...] = (0.0, 0.3, 1.0, 1.0, 0.0)
    charge_soc: tuple[float, ...] = (0.0, 0.85, 1.0)  # tapers near full, where the OCV and plating risk rise
    charge_soc_factor: tuple[float, ...] = (1.0, 1.0, 0.2)
    discharge_soc: tuple[float, ...] = (0.0, 0.05, 0.2, 1.0)  # tapers near empty, where resistance rises
    discharge_soc_factor: tuple[float, ...] = (0.0, 0.3, 1.0, 1.0)
    derate_factor: float = 0.5  # the current limits at the derate level; warning keeps 1, critical gives 0

    def validate(self) -> "SoaLimits":
        """Raise ValueError naming the first wrong field; return self for chaining."""
        for name, up, hysteresis in (
            ("overvoltage_v", True, "hysteresis_v"),
            ("undervoltage_v", False, "hysteresis_v"),
            ("overtemperature_charge_c", True, "hysteresis_c"),
            ("undertemperature_charge_c", False, "hysteresis_c"),
            ("overtemperature_discharge_c", True, "hysteresis_c"),
            ("undertemperature_discharge_c", False, "hysteresis_c"),
            ("overcurrent_charge_c", True, "hysteresis_current_c"),
            ("overcurrent_discharge_c", True, "hysteresis_current_c"),
        ):
            v = np.asarray(getattr(self, name), dtype=float)
            steps = np.diff(v) if up else -np.diff(v)
            _check(
                name,
                v.shape == (3,) and np.all(np.isfinite(v)) and np.all(steps > 0),
                f"(warning, derate, critical), {'increasing' if up else 'decreasing'}",
                v,
            )
            _check(
                hysteresis,
                0 < getattr(self, hysteresis) < steps.min(),
                f"positive and below the smallest gap between the levels of {name}",
                getattr(self, hysteresis),
            )
        _check(
            "undervoltage_v", self.undervoltage_v[0] < self.overvoltage_v[0], "below overvoltage_v", self.undervoltage_v
        )
        for name in ("capacity_ah", "charge_detect_c", "max_charge_c", "max_discharge_c"):
            _check(name, np.isfinite(getattr(self, name)) and getattr(self, name) > 0, "positive", getattr(self, name))
        _check(
            "debounce_samples",
            isinstance(self.debounce_samples, int) and self.debounce_samples >= 1,
            "an integer >= 1",
            self.debounce_samples,
        )
        _check(
            "debounce_s",
            0 <= self.debounce_s <= 1.0,
            "within [0, 1] s (critical must trip within ~1 s)",
            self.debounce_s,
        )
        _check("clear_hold_s", self.clear_hold_s >= 0, ">= 0", self.clear_hold_s)
        _check("derate_factor", 0 < self.derate_factor <= 1, "within (0, 1]", self.derate_factor)
        for axis, factor in (
            ("charge_temperature_c", "charge_temperature_factor"),
            ("discharge_temperature_c", "discharge_temperature_factor"),
            ("charge_soc", "charge_soc_factor"),
            ("discharge_soc", "discharge_soc_factor"),
        ):
            x, f = np.asarray(getattr(self, axis), float), np.asarray(getattr(self, factor), float)
            _check(axis, x.ndim == 1 and len(x) >= 2 and np.all(np.diff(x) > 0), "at least 2 increasing knots", x)
            _check(factor, f.shape == x.shape and np.all((f >= 0) & (f <= 1)), f"{len(x)} factors within [0, 1]", f)
        _check(
            "charge_temperature_factor",
            np.interp(0.0, self.charge_temperature_c, self.charge_temperature_factor) == 0,
            "0 at and below 0 degC (LFP must not be charged below freezing)",
            self.charge_temperature_factor,
        )
        return self


def _check(name: str, ok, expected: str, got) -> None:
    if not ok:
        raise ValueError(f"SoaLimits.{name} must be {expected}, got {got!r}")


class _LevelTracker:
    """Debounced, hysteretic three-level state of one quantity over n channels; higher = worse.

    Under-limits (undervoltage, undertemperature) are tracked on the negated value.
    """

    def __init__(self, n: int, hysteresis: float, limits: SoaLimits):
        self.level = np.zeros(n, dtype=int)
        self.hysteresis, self.limits = hysteresis, limits
        self._over_n = np.zeros((3, n), dtype=int)  # consecutive samples beyond each threshold
        self._over_since = np.zeros((3, n))
        self._in_since = np.full((3, n), np.nan)  # back inside by the margin since (NaN: not inside)

    def update(self, t: float, x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Advance with value x (n,) against thresholds (3,); return the previous levels."""
        th = np.asarray(thresholds, dtype=float)[:, None]
        over = x[None, :] > th
        self._over_n = np.where(over, self._over_n + 1, 0)
        self._over_since = np.where(over & (self._over_n == 1), t, self._over_since)
        lim = self.limits
        entered = over & (self._over_n >= lim.debounce_samples) & (t - self._over_since >= lim.debounce_s)
        inside = x[None, :] <= th - self.hysteresis
        self._in_since = np.where(inside, np.where(np.isnan(self._in_since), t, self._in_since), np.nan)
        recovered = inside & (t - self._in_since >= lim.clear_hold_s)
        kept = (self.level[None, :] > np.arange(3)[:, None]) & ~recovered
        previous = self.level
        self.level = np.maximum(_highest(entered), _highest(kept))
        return previous


def _highest(mask: np.ndarray) -> np.ndarray:
    """Per column, 1 + the highest true row (0 where none): the level a (3, n) mask reaches."""
    return np.where(mask.any(axis=0), 3 - np.argmax(mask[::-1], axis=0), 0)


class SoaMonitor:
    """Checks every sample against `SoaLimits` and reports only the changes, as `Event`s.

    `update` is vectorised over cells. Temperature sensors are numbered from 1 like cells;
    the charge temperature window applies while charging faster than `charge_detect_c`.
    """

    def __init__(self, limits: SoaLimits = SoaLimits(), sensor_temperatures: bool = False):
        """sensor_temperatures: the temperatures given are sensors along the string, not one per cell."""
        self.limits = limits.validate()
        self.sensor_temperatures = sensor_temperatures
        self._trackers: dict[str, _LevelTracker] = {}
        self.idle = False  # every level inside and no debounce under way (set by each update)

    def update(
        self, time_s: float, cell_voltages_v: np.ndarray, cell_temperatures_c: np.ndarray, current_a: float
    ) -> list[Event]:
        lim = self.limits
        v = np.asarray(cell_voltages_v, dtype=float).ravel()
        temp = np.asarray(cell_temperatures_c, dtype=float).ravel()
        c_rate = float(current_a) / lim.capacity_ah
        charging = c_rate > lim.charge_detect_c
        window = "charge" if charging else "discharge"
        over_t = lim.overtemperature_charge_c if charging else lim.overtemperature_discharge_c
        under_t = lim.undertemperature_charge_c if charging else lim.undertemperature_discharge_c
        checks = (  # kind, value shown, tracked value, thresholds, hysteresis, unit, what
            ("overvoltage", v, v, lim.overvoltage_v, lim.hysteresis_v, "V", "voltage"),
            ("undervoltage", v, -v, np.negative(lim.undervoltage_v), lim.hysteresis_v, "V", "voltage"),
            ("overtemperature", temp, temp, over_t, lim.hysteresis_c, "degC", f"temperature ({window} window)"),
            (
                "undertemperature",
                temp,
                -temp,
                np.negative(under_t),
                lim.hysteresis_c,
                "degC",
                f"temperature ({window} window)",
            ),
            (
                "overcurrent_charge",
                np.array([current_a]),
                np.array([c_rate]),
                lim.overcurrent_charge_c,
                lim.hysteresis_current_c,
                "A",
                "charge current",
            ),
            (
                "overcurrent_discharge",
                np.array([current_a]),
                np.array([-c_rate]),
                lim.overcurrent_discharge_c,
                lim.hysteresis_current_c,
                "A",
                "discharge current",
            ),
        )
        events = []
        for kind, shown, x, thresholds, hysteresis, unit, what in checks:
            if kind not in self._trackers:
                self._trackers[kind] = _LevelTracker(len(x), hysteresis, lim)
            tracker = self._trackers[kind]
            if len(tracker.level) != len(x):
                raise ValueError(
                    f"SoaMonitor.update: {what} has {len(x)} channels, earlier samples had {len(tracker.level)}"
                )
            before = tracker.update(time_s, x, thresholds)
            for k in np.flatnonzero(tracker.level != before):
                cell = sensor = None
                if self.sensor_temperatures and "temperature" in kind:
                    sensor, where = int(k) + 1, f"sensor {k + 1} "
                elif not kind.startswith("overcurrent"):
                    cell, where = int(k) + 1, f"cell {k + 1} "
                else:
                    where = ""
                events.append(
                    _event(
                        time_s,
                        kind,
                        int(before[k]),
                        int(tracker.level[k]),
                        where + what,
                        float(shown[k]),
                        unit,
                        cell,
                        sensor,
                    )
                )
        self.idle = all(not t.level.any() and not t._over_n.any() for t in self._trackers.values())
        return events

    def quiet(self, cell_voltages_v, cell_temperatures_c, current_a) -> np.ndarray:
        """Per sample of a chunk (time, channels): True where nothing is beyond any warning threshold, in
        either temperature window. While `idle`, such samples cannot change a level: they may be skipped."""
        lim = self.limits
        v = np.asarray(cell_voltages_v, dtype=float)
        t = np.asarray(cell_temperatures_c, dtype=float)
        c = np.asarray(current_a, dtype=float) / lim.capacity_ah
        with np.errstate(invalid="ignore"):
            return (
                (np.nanmax(v, axis=1) <= lim.overvoltage_v[0])
                & (np.nanmin(v, axis=1) >= lim.undervoltage_v[0])
                & (t.max(axis=1) <= min(lim.overtemperature_charge_c[0], lim.overtemperature_discharge_c[0]))
                & (t.min(axis=1) >= max(lim.undertemperature_charge_c[0], lim.undertemperature_discharge_c[0]))
                & (c <= lim.overcurrent_charge_c[0])
                & (-c <= lim.overcurrent_discharge_c[0])
            )

    def cell_levels(self, kind: str) -> np.ndarray:
        """Per-channel level ranks (0 = inside .. 3 = critical) of one event kind."""
        return self._trackers[kind].level.copy() if kind in self._trackers else np.zeros(0, dtype=int)

    @property
    def levels(self) -> dict[str, str]:
        """The worst present severity of each kind ("info" = inside the SOA)."""
        return {kind: SEVERITIES[int(t.level.max(initial=0))] for kind, t in self._trackers.items()}

    @property
    def worst(self) -> str:
        return max(self.levels.values(), key=rank, default="info")


def _event(
    t: float,
    kind: str,
    before: int,
    after: int,
    what: str,
    value: float,
    unit: str,
    cell: int | None,
    sensor: int | None,
) -> Event:
    if after > before:
        return Event(
            t,
            kind,
            SEVERITIES[after],
            f"{what} {value:.4g} {unit} beyond the {SEVERITIES[after]} limit",
            cell,
            sensor,
            value,
        )
    now = "back inside the safe operating area" if after == 0 else f"still at the {SEVERITIES[after]} level"
    return Event(
        t,
        kind,
        SEVERITIES[before],
        f"{what} {value:.4g} {unit}: {SEVERITIES[before]} cleared, {now}",
        cell,
        sensor,
        value,
        cleared=True,
    )


# -- derating -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derating:
    """Factors (0..1) on the continuous current limits, by cause, for each direction."""

    charge: dict[str, float]
    discharge: dict[str, float]


def derating(limits: SoaLimits, cell_temperatures_c, soc, cell_voltages_v, level: str = "info") -> Derating:
    """Derating factors from the worst cell. `soc` is one value or one per cell (charge tapers on the
    fullest, discharge on the emptiest). The SOA level is the worse of `level` (e.g. `SoaMonitor.worst`)
    and the present voltages and temperatures against the thresholds, per direction: overvoltage and the
    charge temperature window limit charging, undervoltage and the discharge window limit discharging.
    A NaN input gives a factor of 0: no current on a reading that is not there."""
    temp = np.asarray(cell_temperatures_c, dtype=float)
    v = np.asarray(cell_voltages_v, dtype=float)
    z = np.asarray(soc, dtype=float)
    lim = limits
    charge_level = max(
        rank(level),
        _static_level(v.max(), lim.overvoltage_v),
        _static_level(temp.max(), lim.overtemperature_charge_c),
        _static_level(-temp.min(), np.negative(lim.undertemperature_charge_c)),
    )
    discharge_level = max(
        rank(level),
        _static_level(-v.min(), np.negative(lim.undervoltage_v)),
        _static_level(temp.max(), lim.overtemperature_discharge_c),
        _static_level(-temp.min(), np.negative(lim.undertemperature_discharge_c)),
    )
    return Derating(
        charge={
            "temperature": _table_min(temp, lim.charge_temperature_c, lim.charge_temperature_factor),
            "soc": _table_min(z.max(), lim.charge_soc, lim.charge_soc_factor),
            "level": _level_factor(lim, charge_level),
        },
        discharge={
            "temperature": _table_min(temp, lim.discharge_temperature_c, lim.discharge_temperature_factor),
            "soc": _table_min(z.min(), lim.discharge_soc, lim.discharge_soc_factor),
            "level": _level_factor(lim, discharge_level),
        },
    )


def current_limits(
    limits: SoaLimits,
    cell_temperatures_c,
    soc,
    cell_voltages_v,
    level: str = "info",
) -> tuple[float, float]:
    """(max_charge_a, max_discharge_a), both >= 0: the continuous limits times the derating factors."""
    d = derating(limits, cell_temperatures_c, soc, cell_voltages_v, level)
    return (
        limits.max_charge_c * limits.capacity_ah * float(np.prod(list(d.charge.values()))),
        limits.max_discharge_c * limits.capacity_ah * float(np.prod(list(d.discharge.values()))),
    )


def _static_level(x: float, thresholds) -> int:
    """Instantaneous level of the worst value (no debounce or hysteresis); NaN counts as critical."""
    return 3 if np.isnan(x) else int(np.sum(x > np.asarray(thresholds)))


def _table_min(x, axis, factor) -> float:
    values = np.interp(np.asarray(x, dtype=float), axis, factor)
    return 0.0 if np.any(np.isnan(values)) else float(np.min(values))


def _level_factor(limits: SoaLimits, level: int) -> float:
    return (1.0, 1.0, limits.derate_factor, 0.0)[level]


__all__ = ["Derating", "SoaLimits", "SoaMonitor", "current_limits", "derating"]
