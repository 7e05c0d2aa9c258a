"""SOA levels: entering (debounced), escalating, de-escalating and clearing (hysteresis and hold) for every
quantity; configuration errors; derated current limits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from openbms.safety.soa import SoaLimits, SoaMonitor, current_limits

CAP = 2.3
LIMITS = SoaLimits(capacity_ah=CAP)
N_CELLS = 4

# kind: (warning, derate, critical, inside but not by the hysteresis margin, back inside by the margin)
CASES = {
    "overvoltage": (3.56, 3.62, 3.70, 3.53, 3.50),
    "undervoltage": (2.55, 2.30, 1.90, 2.62, 2.70),
    "overtemperature": (52.0, 57.0, 62.0, 49.0, 45.0),
    "undertemperature": (-12.0, -22.0, -32.0, -9.0, -5.0),
    "overcurrent_charge": (1.2 * CAP, 1.4 * CAP, 1.7 * CAP, 1.05 * CAP, 0.9 * CAP),
    "overcurrent_discharge": (-3.5 * CAP, -4.5 * CAP, -5.5 * CAP, -3.25 * CAP, -3.0 * CAP),
}


def inputs(kind: str, value: float):
    """Normal readings with `value` placed where `kind` looks: cell 3, temperature sensor 2, or the current."""
    v, temp, current = np.full(N_CELLS, 3.3), np.full(N_CELLS, 25.0), 0.0
    if kind.endswith("voltage"):
        v[2] = value
    elif kind.endswith("temperature"):
        temp[1] = value
    else:
        current = value
    return v, temp, current


def run(monitor, kind, t0, values, dt=0.5):
    """Feed one value per sample; return [(time, events)] for the samples that reported anything."""
    out = []
    for k, value in enumerate(values):
        t = t0 + k * dt
        events = monitor.update(t, *inputs(kind, value))
        assert all(e.kind == kind for e in events)
        if events:
            out.append((t, events))
    return out


@pytest.mark.parametrize("kind", CASES)
def test_levels_enter_escalate_and_clear_with_debounce_and_hysteresis(kind):
    warning, derate, critical, near, clear = CASES[kind]
    normal = inputs(kind, clear)  # "clear" is a normal reading too
    m = SoaMonitor(LIMITS)
    assert m.update(0.0, *normal) == []
    # one noisy sample does not trip
    assert run(m, kind, 0.5, [critical, clear]) == []
    # debounced: two samples over 0.5 s enter the level, the event names the cell and the value
    [(t, [e])] = run(m, kind, 1.5, [warning, warning])
    assert (t, e.severity, e.cleared, e.value) == (2.0, "warning", False, pytest.approx(warning))
    expected_cell = None if kind.startswith("overcurrent") else (3 if kind.endswith("voltage") else 2)
    assert e.cell == expected_cell
    # escalating
    assert [(t, ev.severity) for t, evs in run(m, kind, 2.5, [derate, derate, critical, critical]) for ev in evs] == [
        (3.0, "derate"),
        (4.0, "critical"),
    ]
    assert m.levels[kind] == "critical" and m.worst == "critical"
    # back to the warning band: critical and derate clear only after the 2 s hold
    [(t, [e])] = run(m, kind, 4.5, [warning] * 6)
    assert (t, e.severity, e.cleared) == (6.5, "critical", True)
    assert m.levels[kind] == "warning"
    # inside the warning threshold, but not by the margin: the warning stays
    assert run(m, kind, 7.5, [near] * 10) == []
    # inside by the margin, for the hold time: cleared
    [(t, [e])] = run(m, kind, 12.5, [clear] * 6)
    assert (t, e.severity, e.cleared) == (14.5, "warning", True)
    assert m.worst == "info"


def test_critical_trips_within_a_second_at_1_hz():
    m = SoaMonitor(LIMITS)
    v, temp, _ = inputs("overvoltage", 3.8)
    assert m.update(0.0, v, temp, 0.0) == []
    [e] = m.update(1.0, v, temp, 0.0)
    assert (e.kind, e.severity, e.cell) == ("overvoltage", "critical", 3)


def test_every_cell_is_checked_and_numbered_from_one():
    m = SoaMonitor(LIMITS)
    v = np.array([3.3, 3.7, 3.3, 3.58, 2.4])
    temp = np.full(5, 25.0)
    for t in (0.0, 0.5):
        events = m.update(t, v, temp, 0.0)
    assert {(e.kind, e.cell, e.severity) for e in events} == {
        ("overvoltage", 2, "critical"),
        ("overvoltage", 4, "warning"),
        ("undervoltage", 5, "derate"),
    }
    assert m.cell_levels("overvoltage").tolist() == [0, 3, 0, 1, 0]
    assert m.levels["overvoltage"] == "critical" and m.levels["overtemperature"] == "info"


def test_a_changed_number_of_cells_is_refused():
    m = SoaMonitor(LIMITS)
    m.update(0.0, np.full(4, 3.3), np.full(4, 25.0), 0.0)
    with pytest.raises(ValueError, match="voltage has 3 channels, earlier samples had 4"):
        m.update(0.5, np.full(3, 3.3), np.full(4, 25.0), 0.0)


def test_charging_uses_the_charge_temperature_window():
    """At -1 degC: fine at rest (discharge window), critical while charging (LFP must not charge below 0)."""
    m = SoaMonitor(LIMITS)
    v, temp = np.full(3, 3.3), np.array([25.0, -1.0, 25.0])
    for t in (0.0, 0.5):
        assert m.update(t, v, temp, -1.0) == []
    for t in (1.0, 1.5):
        events = m.update(t, v, temp, 0.5 * CAP)
    [e] = events
    assert (e.kind, e.severity, e.cell) == ("undertemperature", "critical", 2)
    assert "charge window" in e.explanation


def test_nan_reading_neither_trips_nor_clears():
    m = SoaMonitor(LIMITS)
    v, temp = np.array([3.3, 3.7]), np.full(2, 25.0)
    m.update(0.0, v, temp, 0.0)
    m.update(0.5, v, temp, 0.0)
    v[1] = np.nan
    assert all(m.update(1.0 + k, v, temp, 0.0) == [] for k in range(5))
    assert m.levels["overvoltage"] == "critical"


@pytest.mark.parametrize(
    "field, value",
    [
        ("overvoltage_v", (3.60, 3.55, 3.65)),
        ("undervoltage_v", (2.0, 2.5, 2.6)),
        ("overtemperature_charge_c", (45.0, 50.0)),
        ("overcurrent_discharge_c", (3.3, float("nan"), 5.0)),
        ("capacity_ah", 0.0),
        ("hysteresis_v", -0.01),
        ("hysteresis_c", 2.0),  # not below the 2 degC gap of the charge under-temperature levels (2, 0 degC)
        ("debounce_samples", 0),
        ("debounce_s", 2.0),
        ("clear_hold_s", -1.0),
        ("derate_factor", 0.0),
        ("charge_soc", (0.0, 1.0, 0.9)),
        ("discharge_soc_factor", (0.0, 0.3, 1.0)),
        ("charge_temperature_factor", (0.5, 0.5, 1.0, 1.0, 0.0)),
    ],
)
def test_bad_limits_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"SoaLimits.{field} "):
        SoaMonitor(dataclasses.replace(LIMITS, **{field: value}))


def test_current_limits_nominal_and_temperature_derating():
    v, soc = np.full(4, 3.3), 0.5
    assert current_limits(LIMITS, np.full(4, 25.0), soc, v) == pytest.approx((1.0 * CAP, 3.0 * CAP))
    for cold, discharge_factor in ((0.0, 1.0), (-5.0, 0.825)):  # no charging at or below 0 degC
        charge, discharge = current_limits(LIMITS, np.array([25.0, cold, 25.0, 25.0]), soc, v)
        assert charge == 0.0 and discharge == pytest.approx(discharge_factor * 3.0 * CAP)
    assert current_limits(LIMITS, np.full(4, 5.0), soc, v)[0] == pytest.approx(0.2 * CAP)
    assert current_limits(LIMITS, np.full(4, 55.0), soc, v)[0] == 0.0
    assert current_limits(LIMITS, np.full(4, -20.0), soc, v)[1] == pytest.approx(0.3 * 3.0 * CAP)
    assert current_limits(LIMITS, np.full(4, 55.0), soc, v)[1] == pytest.approx(0.5 * 3.0 * CAP)
    assert current_limits(LIMITS, np.array([25.0, np.nan, 25.0, 25.0]), soc, v) == (0.0, 0.0)


def test_current_limits_soc_and_level_derating():
    temp, v = np.full(4, 25.0), np.full(4, 3.3)
    charge, discharge = current_limits(LIMITS, temp, [0.5, 1.0, 0.5, 0.02], v)  # fullest and emptiest cell count
    assert charge == pytest.approx(0.2 * CAP) and discharge == pytest.approx(3.0 * CAP * (0.3 * 0.02 / 0.05))
    assert current_limits(LIMITS, temp, 0.5, v, level="warning") == pytest.approx((CAP, 3 * CAP))
    assert current_limits(LIMITS, temp, 0.5, v, level="derate") == pytest.approx((0.5 * CAP, 1.5 * CAP))
    assert current_limits(
        dataclasses.replace(LIMITS, derate_factor=0.25), temp, 0.5, v, level="derate"
    ) == pytest.approx((0.25 * CAP, 0.75 * CAP))
    assert current_limits(LIMITS, temp, 0.5, v, level="critical") == (0.0, 0.0)
    # a cell at the derate voltage halves charging only; one below the critical undervoltage stops discharging
    assert current_limits(LIMITS, temp, 0.5, np.array([3.3, 3.62, 3.3, 3.3])) == pytest.approx((0.5 * CAP, 3 * CAP))
    assert current_limits(LIMITS, temp, 0.5, np.array([3.3, 3.3, 1.9, 3.3])) == pytest.approx((CAP, 0.0))
