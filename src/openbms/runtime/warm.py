"""Compile the kernels ahead of the first sample: `python -m openbms.runtime.warm` (make runs it).

numba compiles a kernel on its first call, for that call's argument types, and caches the machine
code beside the source. Run once here on a few samples of what `openbms serve` and `openbms.estimate`
really run, the live BMS and the estimator start from that cache (a second or two) instead of
compiling for tens of seconds while the dashboard waits for its first SoC.
"""

from __future__ import annotations

import time

import numpy as np

from ..cell import load_cell
from ..estimate import EstimateOptions, estimate
from .bms import Bms
from .sources import SimSource
from .vehicle import SimulatedVehicle


def warm(samples: int = 3) -> float:
    """Run the live BMS on a simulated pack and the estimator on one and two cells; returns the seconds taken."""
    started = time.perf_counter()
    cell = load_cell("blade_lfp")
    source = SimSource(SimulatedVehicle(cell, 4, 2))
    bms = Bms(cell, source.series, source.sensors)
    for _ in range(samples):
        output, _ = bms.step(source.next_sample())
        source.apply(output, bms.bleed_a, bms.conditioning)
    t = np.arange(float(samples))
    current = np.full(samples, -10.0)
    voltage = np.asarray(cell.ocv(np.full(samples, 0.5), 25.0))
    for options in (EstimateOptions(), EstimateOptions(sigma_points=False)):
        estimate(cell, t, current, voltage, 25.0, options=options)
        estimate(
            cell,
            t,
            np.stack([current] * 2, 1),
            np.stack([voltage] * 2, 1),
            np.full((samples, 2), 25.0),
            options=options,
        )
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"openbms: kernels compiled and cached in {warm():.0f} s")
