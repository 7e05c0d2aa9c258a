"""Charging control in closed loop on the project's own ESC cell model: a 12-cell A123 LFP string."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from openbms.cell import CellStepper, load_cell
from openbms.safety.charging import ChargeConfig, ChargeController
from openbms.safety.soa import SoaLimits

N = 12
MODEL = load_cell("a123_lfp")
CAP = float(MODEL.param("capacity_ah", 25.0))
CONFIG = ChargeConfig(
    SoaLimits(capacity_ah=CAP), cell_resistance_ohm=0.03, charger_max_current_a=10.0, charger_max_power_w=1000.0
)


def string(seed=1):
    """12 cells, capacities within +-3 %, starting at 20 % SoC +-2 %."""
    rng = np.random.default_rng(seed)
    cells = [MODEL.scaled(capacity=1 + d) for d in rng.uniform(-0.03, 0.03, N)]
    return CellStepper(cells, N, soc0=0.2 + rng.uniform(-0.02, 0.02, N))


def charge(controller, cells, temperature_c=25.0, seconds=6000, dt=1.0, stop_at=None):
    """Tick the controller and the cells together; return the commands and the highest cell voltage seen."""
    v = cells.step(0.0, dt, temperature_c)
    commands, v_max = [], v.max()
    for k in range(int(seconds / dt)):
        if stop_at is not None and k == stop_at:
            controller.stop()
        cmd = controller.tick(v, np.full(N, temperature_c), cells.soc)
        commands.append(cmd)
        if cmd.state in ("complete", "stopped", "fault"):
            break
        v = cells.step(cmd.current_a, dt, temperature_c)
        v_max = max(v_max, v.max())
    return commands, v_max


@pytest.mark.parametrize("target", [0.8, 0.9])
def test_charges_to_the_soc_target(target):
    cells = string()
    controller = ChargeController(CONFIG, soc_target=target)
    controller.start()
    commands, v_max = charge(controller, cells)
    assert commands[-1].state == "complete" and commands[-1].time_to_complete_s == 0.0
    assert cells.soc.max() == pytest.approx(target, abs=0.005)  # the fullest cell stops at the target
    assert v_max <= MODEL.voltage_max_v
    assert commands[0].state == "cc" and commands[0].current_a == pytest.approx(CAP)  # 1 C, below charger limits
    # the time estimate at the start is the constant-current time, right to within the taper
    elapsed = len(commands)
    assert commands[0].time_to_complete_s == pytest.approx(elapsed, rel=0.1)


def test_full_charge_goes_cc_then_cv_and_ends_at_the_cutoff_current():
    cells = string()
    controller = ChargeController(CONFIG, soc_target=1.0)
    controller.start()
    commands, v_max = charge(controller, cells)
    states = [c.state for c in commands]
    first_cv = states.index("cv")
    assert states[0] == "cc" and "cc" not in states[first_cv:]
    assert commands[-1].state == "complete" and "cut-off" in commands[-1].reason
    assert v_max <= CONFIG.cv_voltage_v + 0.005 < MODEL.voltage_max_v  # regulated on the highest cell
    cv_currents = [c.current_a for c in commands[first_cv:-1]]
    assert cv_currents[-1] < 0.1 * CAP and np.all(np.diff(cv_currents) <= 1e-6)  # tapers
    assert cells.soc.max() > 0.95


@pytest.mark.parametrize("temperature_c, expected_a", [(-5.0, 0.0), (0.0, 0.0), (5.0, 0.2 * CAP)])
def test_cold_derating_and_no_charge_at_or_below_freezing(temperature_c, expected_a):
    cells = string()
    controller = ChargeController(CONFIG)
    controller.start()
    commands, _ = charge(controller, cells, temperature_c, seconds=30)
    assert {c.state for c in commands} == {"derated"}
    assert commands[-1].current_a == pytest.approx(expected_a)
    assert "temperature" in commands[-1].reason
    if expected_a == 0:
        assert cells.soc.max() < 0.23 and math.isinf(commands[-1].time_to_complete_s)


def test_charger_power_limit():
    controller = ChargeController(dataclasses.replace(CONFIG, charger_max_power_w=20.0))
    controller.start()
    cmd = controller.tick(np.full(N, 3.3), np.full(N, 25.0), 0.5)
    assert cmd.current_a == pytest.approx(20.0 / (N * 3.3)) and cmd.state == "cc"


def test_stop_and_start_are_honoured():
    cells = string()
    controller = ChargeController(CONFIG)
    assert controller.tick(np.full(N, 3.3), np.full(N, 25.0), 0.5).state == "idle"  # not started
    controller.start()
    commands, _ = charge(controller, cells, seconds=600, stop_at=100)
    assert commands[-1].state == "stopped" and commands[-1].current_a == 0.0
    soc = cells.soc.copy()
    commands, _ = charge(controller, cells, seconds=100)  # still stopped: nothing flows
    assert commands[-1].state == "stopped" and np.allclose(cells.soc, soc)
    controller.start()
    commands, _ = charge(controller, cells, seconds=100)
    assert commands[-1].state == "cc" and np.all(cells.soc > soc)


def test_faults_request_nothing():
    controller = ChargeController(CONFIG)
    controller.start()
    v, temp = np.full(N, 3.3), np.full(N, 25.0)
    v[4] = np.nan
    cmd = controller.tick(v, temp, 0.5)
    assert (cmd.state, cmd.current_a) == ("fault", 0.0) and "cell voltage" in cmd.reason
    cmd = controller.tick(np.full(N, 3.3), temp, 0.5, soa_level="critical")
    assert (cmd.state, cmd.current_a) == ("fault", 0.0)
    assert controller.tick(np.full(N, 3.3), temp, 0.5, soa_level="derate").current_a == pytest.approx(0.5 * CAP)


def test_soc_target_is_clamped_with_a_reason():
    controller = ChargeController(CONFIG)
    assert controller.set_target(0.85) == "" and controller.soc_target == 0.85
    assert "0.50" in controller.set_target(0.3) and controller.soc_target == 0.5
    assert controller.set_target(1.2) != "" and controller.soc_target == 1.0
    with pytest.raises(ValueError, match="SoC target"):
        controller.set_target(float("nan"))


@pytest.mark.parametrize(
    "field, value",
    [("cell_resistance_ohm", 0.0), ("charger_max_power_w", -1.0), ("cv_voltage_v", 3.62), ("cutoff_c", math.nan)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"ChargeConfig.{field} "):
        ChargeController(dataclasses.replace(CONFIG, **{field: value}))
