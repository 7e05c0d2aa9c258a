"""openbms: an open battery management system for LFP packs."""

__version__ = "0.1.0"

from .cell import CellModel, load_cell, simulate  # noqa: E402

__all__ = ["CellModel", "load_cell", "simulate", "__version__"]
