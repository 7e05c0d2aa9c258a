"""Pack one or many cell models into the dense tables the compiled kernels read: the one value every
consumer of "a cell model, or one per cell" takes, so none of them asks which it was given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .kernels import N_FIXED, PARAM_COLUMNS
from .model import CellModel


@dataclass(frozen=True)
class PackedModels:
    """The distinct models of the cells, their merged tables, and each cell's model."""

    axis: np.ndarray  # (n_t,) shared temperature axis of the parameter tables
    tables: np.ndarray  # (n_models, n_t, N_FIXED + n_rc + n_k·(1 + n_rc))
    knots: np.ndarray  # (n_k,) SoC knots of the resistances
    ocv_axis: np.ndarray  # (n_ocv_t,)
    z0: float
    dz: float
    ocv_tables: np.ndarray  # (n_models, n_ocv_t, n_z)
    model_index: np.ndarray  # (n_cells,) int64
    n_rc: int
    models: tuple[CellModel, ...]  # the distinct models, in the order of model_index
    one_model: bool  # given as one model for every cell (not as a per-cell list)

    @property
    def name(self) -> str | list[str]:
        """The model's name, or each cell's model's name when they were given per cell."""
        return self.models[0].name if self.one_model else [self.models[m].name for m in self.model_index]

    def cells_of(self):
        """(model, the columns of its cells) for each distinct model: per-cell work done once per model."""
        if len(self.models) == 1:
            return [(self.models[0], slice(None))]
        return [(model, np.flatnonzero(self.model_index == m)) for m, model in enumerate(self.models)]

    def per_cell(self, name: str, temperature_c) -> np.ndarray:
        """Parameter `name` of each cell's model at temperature_c (..., cells)."""
        return self._each(temperature_c, lambda model, t, cols: model.param(name, t))

    def r0_ohm(self, soc, temperature_c) -> np.ndarray:
        """Each cell's series resistance at its SoC and temperature, (..., cells)."""
        soc, t = np.broadcast_arrays(np.asarray(soc, dtype=float), np.asarray(temperature_c, dtype=float))
        return self._each(t, lambda model, t_cells, cols: model.resistance_ohm(soc[..., cols], t_cells))

    def _each(self, temperature_c, f) -> np.ndarray:
        """f(model, its cells' temperatures, their columns), assembled over the cells."""
        t = np.asarray(temperature_c, dtype=float)
        if len(self.models) == 1:
            return f(self.models[0], t, slice(None))
        out = np.empty(t.shape)
        for model, cols in self.cells_of():
            out[..., cols] = f(model, t[..., cols], cols)
        return out


def pack(models: CellModel | Sequence[CellModel], n_cells: int) -> PackedModels:
    """One model for every cell, or one per cell; axes are merged so interpolation is exact."""
    distinct: list[CellModel]
    one_model = isinstance(models, CellModel)
    if isinstance(models, CellModel):
        distinct, index = [models], np.zeros(n_cells, dtype=np.int64)
    else:
        per_cell = list(models)
        if len(per_cell) != n_cells:
            raise ValueError(f"got {len(per_cell)} cell models for {n_cells} cells")
        ids: dict[int, int] = {}
        distinct = []
        index = np.empty(n_cells, dtype=np.int64)
        for c, m in enumerate(per_cell):
            if id(m) not in ids:
                ids[id(m)] = len(distinct)
                distinct.append(m)
            index[c] = ids[id(m)]
    axis = np.unique(np.concatenate([m.temperature_c for m in distinct]))
    ocv_axis = np.unique(np.concatenate([m.ocv_temperature_c for m in distinct]))
    soc, knots = distinct[0].soc, distinct[0].resistance_soc
    for m in distinct:
        if not (np.array_equal(m.soc, soc) and np.array_equal(m.resistance_soc, knots)):
            raise ValueError(f"cell {m.name!r}: every cell simulated together needs the same SoC grids")
    n_rc, n_k = max(m.n_rc for m in distinct), len(knots)
    tables = np.zeros((len(distinct), len(axis), N_FIXED + n_rc + n_k * (1 + n_rc)))
    ocv_tables = np.empty((len(distinct), len(ocv_axis), len(soc)))
    for k, m in enumerate(distinct):
        for p, name in enumerate(PARAM_COLUMNS):
            tables[k, :, p] = m.param(name, axis)
        tables[k, :, N_FIXED : N_FIXED + n_rc] = 1.0  # unused branches: any positive τ, R = 0
        tables[k, :, N_FIXED : N_FIXED + m.n_rc] = m.param("rc_tau_s", axis)
        r = N_FIXED + n_rc
        tables[k, :, r : r + n_k] = m.param("r0_ohm", axis)
        for j in range(m.n_rc):
            tables[k, :, r + (j + 1) * n_k : r + (j + 2) * n_k] = m.param("rc_r_ohm", axis)[:, j, :]
        ocv_tables[k] = m.ocv(soc[None, :], ocv_axis[:, None])
    return PackedModels(
        axis,
        tables,
        knots,
        ocv_axis,
        float(soc[0]),
        float(soc[1] - soc[0]),
        ocv_tables,
        index,
        n_rc,
        tuple(distinct),
        one_model,
    )
