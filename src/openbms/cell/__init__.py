"""Cell models: the ESC model, its identification from test data, and bundled cells."""

from .bundled import BUNDLED, load_cell
from .model import CellModel
from .simulate import Simulation, simulate

__all__ = ["BUNDLED", "CellModel", "Simulation", "load_cell", "simulate"]
