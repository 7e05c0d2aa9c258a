"""Shared fixtures: the A123 data (skipped with a reason where absent) and small BDF files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openbms.io.a123 import default_a123_dir

A123_DIR = default_a123_dir()


@pytest.fixture(scope="session")
def a123_dir() -> Path:
    if not (A123_DIR / "ocv").is_dir():
        pytest.skip(f"A123 laboratory data not found at {A123_DIR} (set OPENBMS_A123_DIR)")
    return A123_DIR


@pytest.fixture(scope="session")
def warm_kernels() -> None:
    """Compile the live BMS's numba kernels once per session (cached on disk after the first run, which takes
    minutes on a loaded machine), so tests that wait for a live BMS wait for the BMS, not for the compiler."""
    pytest.importorskip("fastsim", reason="the simulated vehicle needs the sim extra (pip install -e '.[sim]')")
    from openbms.cell import load_cell
    from openbms.runtime.bms import Bms
    from openbms.runtime.sources import SimSource
    from openbms.runtime.vehicle import SimulatedVehicle

    cell = load_cell("blade_lfp")
    source = SimSource(SimulatedVehicle(cell, 4, 2, soc0=0.6, plugged_at_start=True))
    bms = Bms(cell, 4, 2)
    for _ in range(3):
        bms.step(source.next_sample())


@pytest.fixture
def bdf_frame() -> pd.DataFrame:
    """A short, valid BDF cell series: a discharge pulse, rest, a charge pulse."""
    t = np.arange(0.0, 60.0)
    i = np.where(t < 20, -2.0, np.where(t < 40, 0.0, 1.0))
    dt = np.diff(t, append=t[-1])
    return pd.DataFrame(
        {
            "Test Time / s": t,
            "Current / A": i,
            "Voltage / V": 3.3 + 0.01 * i,
            "Surface Temperature T1 / degC": 25.0,
            "Charging Capacity / Ah": np.concatenate([[0], np.cumsum(np.clip(i, 0, None) * dt / 3600)[:-1]]),
            "Discharging Capacity / Ah": np.concatenate([[0], np.cumsum(np.clip(-i, 0, None) * dt / 3600)[:-1]]),
        }
    )
