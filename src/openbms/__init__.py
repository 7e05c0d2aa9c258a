"""openbms: an open battery management system for LFP packs."""

__version__ = "0.1.0"

from . import estimate  # noqa: E402  (callable: openbms.estimate(model, time_s, current_a, voltage_v, ...))
from .cell import CellModel, load_cell, simulate  # noqa: E402

__all__ = ["CellModel", "estimate", "load_cell", "simulate", "__version__"]
