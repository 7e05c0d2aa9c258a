"""Run the plant on an experiment or a power profile; return the truth at 1 s.

Experiments are PyBaMM's readable strings. `ocv` and `hppc` are complete tests
(rested full → empty → full, the ESC protocol); `ocv_c20`, `usabc_hppc` and `iec_power` are
the tests labs run (a C/20 OCV test; the USABC / FreedomCAR HPPC test, which ends near
10 % SoC; IEC 62660-1's power test, pulses both ways at five SoCs and a charge back to full). `write_pybamm_test` writes a test as PyBaMM itself saves it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io.columns import CELL_TEMPERATURE, CURRENT, TIME, VOLTAGE
from .plant import Plant

SOC = "SOC / 1"
CAPACITY = "Capacity / Ah"


@dataclass
class Truth:
    """What really happened in the plant, sampled at 1 s (+ = charging)."""

    time_s: np.ndarray
    current_a: np.ndarray
    voltage_v: np.ndarray
    temperature_c: np.ndarray
    soc: np.ndarray
    capacity_ah: float
    termination: str

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                TIME: self.time_s,
                CURRENT: self.current_a,
                VOLTAGE: self.voltage_v,
                CELL_TEMPERATURE: self.temperature_c,
                SOC: self.soc,
                CAPACITY: self.capacity_ah,
            }
        )


def ocv_test(plant: Plant) -> list:
    v0, v1 = plant.spec.voltage_min_v, plant.spec.voltage_max_v
    return [
        "Rest for 10 minutes",
        f"Discharge at C/30 until {v0} V",
        "Rest for 1 hour",
        f"Charge at C/30 until {v1} V",
        f"Hold at {v1} V until C/50",
        "Rest for 1 hour",
    ]


def hppc_test(plant: Plant, pulses: int = 9) -> list:
    """Pulses every 10 % of SoC from full, each level also probed with a small charge and
    discharge between rests (the rested voltages show how fast hysteresis moves), then to
    exactly empty (a hold at the lower limit) and back to full, so the test's charge
    balance sees the whole capacity."""
    v0, v1 = plant.spec.voltage_min_v, plant.spec.voltage_max_v
    pulse = (
        f"Discharge at 1C for 10 seconds or until {v0} V",
        "Rest for 40 seconds",
        f"Charge at 0.75C for 10 seconds or until {v1} V",
        "Rest for 40 seconds",
        f"Discharge at C/2 for 12 minutes or until {v0} V",
        "Rest for 30 minutes",
        f"Charge at C/2 for 3 minutes or until {v1} V",
        "Rest for 20 minutes",
        f"Discharge at C/2 for 3 minutes or until {v0} V",
        "Rest for 20 minutes",
    )
    return (
        ["Rest for 10 minutes"]
        + [pulse] * pulses
        + [
            (
                f"Discharge at C/2 until {v0} V",
                f"Hold at {v0} V until C/50",
                "Rest for 30 minutes",
                f"Charge at C/2 until {v1} V",
                f"Hold at {v1} V until C/50",
                "Rest for 30 minutes",
            )
        ]
    )


def ocv_c20_test(plant: Plant) -> list:
    """The common slow OCV test from full: C/20 down to the lower limit, rest, CC-CV up, rest."""
    v0, v1 = plant.spec.voltage_min_v, plant.spec.voltage_max_v
    return [
        f"Discharge at C/20 until {v0} V",
        "Rest for 1 hour",
        f"Charge at C/20 until {v1} V",
        f"Hold at {v1} V until C/50",
        "Rest for 1 hour",
    ]


def usabc_hppc_test(plant: Plant, levels: int = 9) -> list:
    """USABC / FreedomCAR HPPC from full: rest 1 h; at each 10 % SoC a 10 s discharge pulse, 40 s rest,
    a 10 s regen pulse at 3/4 of its current, then C/2 for 10 % of the capacity and 1 h rest; the
    last pulses near 10 %. It never comes back to full."""
    v0, v1 = plant.spec.voltage_min_v, plant.spec.voltage_max_v
    pulses = (
        f"Discharge at 1C for 10 seconds or until {v0} V",
        "Rest for 40 seconds",
        f"Charge at 0.75C for 10 seconds or until {v1} V",
        "Rest for 40 seconds",
    )
    step = (*pulses, f"Discharge at C/2 for 12 minutes or until {v0} V", "Rest for 1 hour")
    return ["Rest for 1 hour"] + [step] * levels + [pulses]


IEC_SOC_LEVELS = (0.9, 0.7, 0.5, 0.35, 0.2)  # where IEC 62660-1's power test pulses
IEC_PULSE_C = 2.0  # the maximum pulse discharge current Idp,max, in C: what a lab agrees for an LFP cell


def iec_power_steps(v0: float, v1: float, pulse_c: float = IEC_PULSE_C) -> list:
    """IEC 62660-1's pulse power profile at each SoC, as CC steps (C-rates, seconds):
    Idp,max for 18 s, 0.75 Idp,max on to 120 s, rest 40 s, a 20 s regenerative charge at 0.75 Idp,max,
    rest 40 s."""
    return [
        (-pulse_c, 18, v0),
        (-0.75 * pulse_c, 102, v0),
        (0.0, 40, None),
        (0.75 * pulse_c, 20, v1),
        (0.0, 40, None),
    ]


def iec_soc_moves(pulse_c: float = IEC_PULSE_C) -> list[float]:
    """Seconds at C/3 before each pulse profile: from full to 90 %, then to each next level, net of
    the charge the profile before it took out (as the standard asks)."""
    profile = -sum(c * s for c, s, _ in iec_power_steps(0.0, 0.0, pulse_c)) / 3600.0  # SoC it takes out
    levels = (1.0, *IEC_SOC_LEVELS)
    return [3 * 3600.0 * (a - b - (profile if k else 0.0)) for k, (a, b) in enumerate(zip(levels[:-1], levels[1:]))]


def iec_power_test(plant: Plant) -> list:
    """IEC 62660-1's power and internal-resistance test from full (rested after the standard charge):
    C/3 down to 90, 70, 50, 35 and 20 % SoC, 30 min rest before each pulse profile (both directions),
    then the standard charge back to full."""
    v0, v1 = plant.spec.voltage_min_v, plant.spec.voltage_max_v

    def step(c_rate: float, seconds: float, stop_v: float | None) -> str:
        if c_rate == 0:
            return f"Rest for {seconds:g} seconds"
        verb = "Discharge" if c_rate < 0 else "Charge"
        return f"{verb} at {abs(c_rate):g}C for {seconds:g} seconds or until {stop_v} V"

    profile = tuple(step(*s) for s in iec_power_steps(v0, v1))
    moves = [(f"Discharge at C/3 for {s:.0f} seconds or until {v0} V", "Rest for 30 minutes") for s in iec_soc_moves()]
    return (
        ["Rest for 1 hour"]
        + [(*move, *profile) for move in moves]
        + [(f"Charge at C/3 until {v1} V", f"Hold at {v1} V until C/20", "Rest for 1 hour")]
    )


EXPERIMENTS = {
    "ocv": ocv_test,
    "hppc": hppc_test,
    "ocv_c20": ocv_c20_test,
    "usabc_hppc": usabc_hppc_test,
    "iec_power": iec_power_test,
}
PYBAMM_COLUMNS = ["Time [s]", "Current [A]", "Voltage [V]"]  # PyBaMM's names; + = discharge


def solve_experiment(plant: Plant, steps: list, soc0: float = 1.0, period_s: float = 1.0):
    """The PyBaMM solution of an experiment on the plant."""
    import pybamm

    experiment = pybamm.Experiment(steps, period=f"{period_s:g} seconds")
    sim = pybamm.Simulation(
        plant.model(),
        parameter_values=plant.parameter_values(),
        experiment=experiment,
        solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-8),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sim.solve(initial_soc=soc0)


def run_experiment(plant: Plant, steps: list, soc0: float = 1.0) -> Truth:
    return _truth(plant, solve_experiment(plant, steps, soc0), soc0)


def write_pybamm_test(plant: Plant, experiment: str, path, period_s: float = 1.0):
    """Run a named experiment from full and save it as PyBaMM's `save_data` does (its columns, its
    sign, a time repeated at every step change), once: an existing file is kept (a cache of a slow
    simulation)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        solution = solve_experiment(plant, EXPERIMENTS[experiment](plant), 1.0, period_s)
        partial = path.with_name(path.name + ".part")
        pd.DataFrame({name: solution[name].entries for name in PYBAMM_COLUMNS}).to_csv(partial, index=False)
        partial.replace(path)
    return path


def run_power(plant: Plant, time_s, power_w, soc0: float = 1.0) -> Truth:
    """Drive the plant with cell power (+ = charging) until the profile ends or a voltage limit."""
    import pybamm

    time_s, power_w = np.asarray(time_s, dtype=float), np.asarray(power_w, dtype=float)
    pv = plant.parameter_values(cutoff_margin_v=0.0)  # a drive stops at the cell's limits
    # PyBaMM's power is + = discharge.
    pv.update(
        {"Power function [W]": pybamm.Interpolant(time_s, -power_w, pybamm.t, interpolator="linear")},
        check_already_exists=False,
    )
    solver = pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-8, options={"suppress_algebraic_error": True})
    sim = pybamm.Simulation(plant.model(power_driven=True), parameter_values=pv, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = sim.solve(
            t_eval=[time_s[0], time_s[-1]], t_interp=np.arange(time_s[0], time_s[-1] + 0.5), initial_soc=soc0
        )
    return _truth(plant, solution, soc0)


def _truth(plant: Plant, solution, soc0: float) -> Truth:
    t = solution["Time [s]"].entries
    keep = np.append(np.diff(t) > 1e-9, True)  # step boundaries repeat a time
    t = t[keep]
    grid = np.arange(np.ceil(t[0]), np.floor(t[-1]) + 1.0)
    sample = {
        name: np.interp(grid, t, solution[name].entries[keep])
        for name in ("Current [A]", "Voltage [V]", "Discharge capacity [A.h]", "Volume-averaged cell temperature [K]")
    }
    capacity = plant.capacity_ah()
    return Truth(
        time_s=grid - grid[0],
        current_a=-sample["Current [A]"],
        voltage_v=sample["Voltage [V]"],
        temperature_c=sample["Volume-averaged cell temperature [K]"] - 273.15,
        soc=soc0 - sample["Discharge capacity [A.h]"] / capacity,
        capacity_ah=capacity,
        termination=str(solution.termination),
    )
