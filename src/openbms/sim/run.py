"""Run the plant on an experiment or a power profile; return the truth at 1 s.

Experiments are PyBaMM's readable strings. `ocv` and `hppc` are complete tests
(rested full → empty → full, the ESC protocol); `ocv_c20` and `usabc_hppc` are the
tests labs run (a C/20 OCV test; the USABC / FreedomCAR HPPC test, which ends near
10 % SoC). `write_pybamm_test` writes a test as PyBaMM itself saves it.
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


EXPERIMENTS = {"ocv": ocv_test, "hppc": hppc_test, "ocv_c20": ocv_c20_test, "usabc_hppc": usabc_hppc_test}
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
