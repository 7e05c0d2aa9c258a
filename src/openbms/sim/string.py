"""A series string of PyBaMM cells under one current: cell-to-cell variation and internal shorts.

Every cell of a series string carries the same current, so each is solved on its own under the
string's current (less its own leak). One PyBaMM model serves every cell: capacity, kinetics,
initial SoC and a short are input parameters, so the model is built and discretised once. A cell
of c times the capacity (c times the electrode area) under current I is the plant's cell under
I / c, so capacity enters as a current scale. A short's leak (a constant, V / R on the LFP
plateau) ramps in over 1 s at its onset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .plant import Plant

CONCENTRATIONS = tuple(f"Initial concentration in {e} electrode [mol.m-3]" for e in ("negative", "positive"))


@dataclass(frozen=True)
class StringCell:
    """One cell of the string, relative to the plant's own cell."""

    capacity: float  # relative capacity
    kinetics: float  # exchange-current densities, relative (resistance goes roughly as its inverse)
    soc0: float


@dataclass(frozen=True)
class Variation:
    """Cell-to-cell variation as standard deviations (relative for capacity and kinetics)."""

    capacity: float = 0.025
    kinetics: float = 0.08
    soc: float = 0.02

    def draw(self, n: int, soc0: float, rng) -> list[StringCell]:
        return [
            StringCell(
                1 + self.capacity * rng.standard_normal(),
                1 + self.kinetics * rng.standard_normal(),
                float(np.clip(soc0 + self.soc * rng.standard_normal(), 0.02, 0.98)),
            )
            for _ in range(n)
        ]


def corners(values: np.ndarray) -> np.ndarray:
    """Indices that keep a piecewise-linear profile exact: the ends of constant runs (a parked day's zeros
    are two knots, not 80 000; evaluating PyBaMM's interpolant costs time that grows with its knots)."""
    inner = (values[1:-1] == values[:-2]) & (values[1:-1] == values[2:])
    return np.flatnonzero(~np.concatenate([[False], inner, [False]]))


class PybammString:
    """`plant`'s cells under the string current `current_a` (+ = charging) at 1 s `time_s`; `stops`: times the
    solver must stop at (every change of phase, so its steps across a long park cannot step over a drive)."""

    def __init__(self, plant: Plant, time_s: np.ndarray, current_a: np.ndarray, stops: np.ndarray | None = None):
        import pybamm

        self.time_s = time_s
        self.capacity_ah = plant.capacity_ah()
        self.stops = np.unique(np.r_[time_s[0], [] if stops is None else stops, time_s[-1]])
        model = plant.model()
        pv = plant.parameter_values(cutoff_margin_v=0.15)
        for electrode in ("Negative", "Positive"):
            j0 = pv[f"{electrode} electrode exchange-current density [A.m-2]"]
            pv[f"{electrode} electrode exchange-current density [A.m-2]"] = lambda c_e, c_s, c_max, T, j0=j0: (
                pybamm.InputParameter("kinetics") * j0(c_e, c_s, c_max, T)
            )
        pv.update({name: "[input]" for name in CONCENTRATIONS})
        ramp = pybamm.maximum(pybamm.minimum(pybamm.t - pybamm.InputParameter("onset [s]"), 1.0), 0.0)
        # PyBaMM's current is + = discharge; the cell loses the string's charging current less its leak.
        k = corners(current_a)
        drive = pybamm.Interpolant(time_s[k], -current_a[k], pybamm.t, interpolator="linear")
        pv["Current function [A]"] = (drive + pybamm.InputParameter("leak [A]") * ramp) / pybamm.InputParameter(
            "capacity"
        )
        self.solver = pybamm.IDAKLUSolver(
            rtol=1e-6, atol=1e-8, on_extrapolation="ignore", options={"suppress_algebraic_error": True}
        )
        simulation = pybamm.Simulation(model, parameter_values=pv, solver=self.solver)
        simulation.build()
        self.built = simulation.built_model
        # Initial concentrations are linear in SoC between the empty and the full cell: two electrode-SoH solves.
        fresh = plant.parameter_values(cutoff_margin_v=0.15)
        self.empty, self.full = (self._concentrations(fresh, model.options, s) for s in (0.0, 1.0))

    @staticmethod
    def _concentrations(pv, options, soc: float) -> np.ndarray:
        initial = pv.set_initial_state(soc, inplace=False, options=options)
        return np.array([float(initial[name]) for name in CONCENTRATIONS])

    def run(
        self, cell: StringCell, grid_s: np.ndarray, leak_a: float = 0.0, onset_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Terminal voltage and true SoC on grid_s (within time_s); shorter if the cell reaches a voltage cut-off."""
        inputs = {
            "kinetics": cell.kinetics,
            "capacity": cell.capacity,
            "leak [A]": leak_a,
            "onset [s]": self.time_s[-1] + 10.0 if onset_s is None else onset_s,
        }
        inputs |= dict(zip(CONCENTRATIONS, self.empty + cell.soc0 * (self.full - self.empty)))
        stops = np.r_[self.stops[self.stops < grid_s[-1]], grid_s[-1]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solution = self.solver.solve(self.built, t_eval=stops, t_interp=grid_s, inputs=inputs)
        charge = np.asarray(solution["Discharge capacity [A.h]"].entries, dtype=float)
        # the model's cell carries I / c, so its discharged charge over its own capacity is the cell's SoC change
        return np.asarray(solution["Voltage [V]"].entries, dtype=float), cell.soc0 - charge / self.capacity_ah
