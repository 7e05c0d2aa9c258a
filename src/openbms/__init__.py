"""openbms: an open battery management system for LFP packs."""

__version__ = "0.1.0"

from .kernel_cache import drop_stale_cache  # noqa: E402

drop_stale_cache()  # before any kernel is loaded from numba's cache

from . import estimate  # noqa: E402  (callable: openbms.estimate(model, time_s, current_a, voltage_v, ...))
from .cell import CellModel, load_cell, simulate  # noqa: E402

__all__ = ["CellModel", "estimate", "load_cell", "simulate", "__version__"]
