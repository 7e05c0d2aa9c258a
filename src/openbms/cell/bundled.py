"""Cells shipped with openbms, loaded by name, and saved cells loaded by path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .model import CellModel

BUNDLED = {
    "a123_lfp": "A123 26650 LFP/graphite 2.3 Ah, identified from the A123 laboratory tests",
    "blade_lfp": "LFP blade cell for the vehicle pack, derived from a123_lfp by capacity scaling",
}


def load_cell(name_or_path: str | Path) -> CellModel:
    """A bundled cell by name (see `BUNDLED`) or a cell JSON document by path."""
    key = str(name_or_path)
    if key in BUNDLED:
        with resources.as_file(resources.files(__package__) / "data" / f"{key}.json") as path:
            return CellModel.load(path)
    path = Path(key)
    if path.suffix.lower() != ".json" and not path.exists():
        raise ValueError(f"unknown cell {key!r}: give a bundled name ({', '.join(BUNDLED)}) or a .json path")
    return CellModel.load(path)
