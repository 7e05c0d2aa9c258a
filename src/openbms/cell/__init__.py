"""Cell models: the ESC model, its identification from test data, and bundled cells."""

from .bundled import BUNDLED, load_cell
from .model import CellModel
from .simulate import CellStepper, Simulation, simulate

__all__ = ["BUNDLED", "CellModel", "CellStepper", "Simulation", "load_cell", "simulate"]
