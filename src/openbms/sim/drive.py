"""Vehicle drive power from FASTSim (NREL): a 2022 Model 3 RWD, an LFP car, on EPA cycles.

The pack power is scaled to one cell by energy: a cell of E_cell Wh in a pack of
E_pack Wh carries E_cell/E_pack of the pack's power. Returned with + = charging.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

VEHICLE = "2022 Tesla Model 3 RWD thrml.yaml"
CYCLES = {"udds": "udds.csv", "hwfet": "hwfet.csv"}


@lru_cache(maxsize=None)
def pack_power(cycle: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(time_s, pack power W with + = charging, pack energy Wh) on one cycle."""
    fsim = _fastsim()

    if cycle not in CYCLES:
        raise ValueError(f"unknown drive cycle {cycle!r}: choose from {sorted(CYCLES)}")
    vehicle = fsim.Vehicle.from_resource(VEHICLE)
    sim = fsim.SimDrive(vehicle, fsim.Cycle.from_resource(CYCLES[cycle]))
    sim.run()
    result = sim.to_dict()
    battery = result["veh"]["pt_type"]["BEV"]["res"]
    time_s = np.asarray(result["veh"]["history"]["time_seconds"], dtype=float)
    out_w = np.asarray(battery["history"]["pwr_out_electrical_watts"], dtype=float)  # + = discharge
    return time_s, -out_w, float(battery["energy_capacity_joules"]) / 3600.0


@lru_cache(maxsize=None)
def cycle_speed(cycle: str) -> np.ndarray:
    """The cycle's speed (m/s) at the times of `pack_power`."""
    fsim = _fastsim()

    if cycle not in CYCLES:
        raise ValueError(f"unknown drive cycle {cycle!r}: choose from {sorted(CYCLES)}")
    return np.asarray(fsim.Cycle.from_resource(CYCLES[cycle]).to_dict()["speed_meters_per_second"], dtype=float)


def cell_power(cycles: list[str], cell_energy_wh: float, gap_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Cycles driven one after another with `gap_s` stops between, as cell power (+ = charging)."""
    time_s, power_w, _ = drive(cycles, cell_energy_wh, gap_s)
    return time_s, power_w


def drive(cycles: list[str], cell_energy_wh: float, gap_s: float = 60.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`cell_power` and the vehicle's speed (m/s) along it."""
    times, powers, speeds, t0 = [], [], [], 0.0
    for cycle in cycles:
        t, p, pack_wh = pack_power(cycle)
        times.append(t0 + t)
        powers.append(p * cell_energy_wh / pack_wh)
        speeds.append(cycle_speed(cycle)[: len(t)])
        t0 += t[-1] + 1.0
        if gap_s > 0:
            times.append(t0 + np.arange(0.0, gap_s))
            powers.append(np.zeros(int(gap_s)))
            speeds.append(np.zeros(int(gap_s)))
            t0 += gap_s
    return np.concatenate(times), np.concatenate(powers), np.concatenate(speeds)


def _fastsim():
    """FASTSim comes with the `sim` extra: a missing one is named with the command that installs it."""
    try:
        import fastsim
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the simulated vehicle needs the package fastsim, part of the 'sim' extra: "
            "pip install 'openbms[sim]' (in a checkout: pip install -e '.[sim]')",
            name="fastsim",
        ) from exc
    return fastsim
