"""The fleet telemetry layout: hive-style Parquet partitions, one file per vehicle and day.

A vehicle-day is the unit a worker reads, so a fleet larger than memory streams through one
day at a time. Files starting with `_` or `.` are metadata (pyarrow's dataset discovery skips
them too); anything else that does not fit the layout is an error, never silently skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..io import DataError
from ..io.columns import CURRENT, TIME
from ..io.pack import PackData, read_pack

VEHICLE = "Vehicle"
PART = "part.parquet"
INFO = "_fleet.json"
LABELS = "_labels.json"
VEHICLE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class FleetInfo:
    """What every vehicle of the fleet shares: the analysis needs the cell model and topology."""

    cell: str  # bundled cell name or cell JSON path
    series: int
    sensors: int
    sampling: str  # how the telemetry was sampled, for whoever reads the data
    start: str  # ISO date of the first day

    def save(self, root: Path) -> Path:
        path = Path(root) / INFO
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, root: Path) -> "FleetInfo":
        path = Path(root) / INFO
        if not path.is_file():
            raise DataError(
                str(path),
                "no such file: the fleet's description (cell, series, sensors) is missing; "
                "pass --cell to analyse without it",
            )
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(str(path), f"expected a JSON object with fields {list(cls.__dataclass_fields__)}: {exc}")


def partition_path(root, vehicle: str, day) -> Path:
    if not VEHICLE_ID.match(str(vehicle)):
        raise ValueError(f"vehicle id {vehicle!r} must be letters, digits, '_', '.' or '-'")
    return Path(root) / f"vehicle={vehicle}" / f"day={_iso_day(str(day), str(day))}" / PART


def write_partition(root, vehicle: str, day, frame: pd.DataFrame) -> Path:
    """Write one vehicle-day (BDF pack columns) where the layout puts it; the simulator and a recorder both use this."""
    path = partition_path(root, vehicle, day)
    for column in (TIME, CURRENT, "Cell Voltage 1 / V"):
        if column not in frame.columns:
            raise DataError(str(path), f"a vehicle-day needs column {column!r}", column)
    if VEHICLE in frame.columns and not (frame[VEHICLE] == vehicle).all():
        raise DataError(str(path), f"column {VEHICLE!r} names another vehicle than {vehicle!r}", VEHICLE)
    frame = frame.assign(**{VEHICLE: vehicle})[[VEHICLE] + [c for c in frame.columns if c != VEHICLE]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)  # a reader never sees half a file
    return path


def vehicle_days(root) -> dict[str, list[Path]]:
    """Every vehicle's day files in day order, from the directory names alone (no data is read)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"fleet dataset {root}: no such directory")
    fleet: dict[str, list[Path]] = {}
    for entry in sorted(_entries(root)):
        vehicle = _key(entry, "vehicle")
        if not VEHICLE_ID.match(vehicle):
            raise DataError(str(entry), f"vehicle id {vehicle!r} must be letters, digits, '_', '.' or '-'")
        days = []
        for day_dir in _entries(entry):
            day = _iso_day(_key(day_dir, "day"), str(day_dir))
            if not (day_dir / PART).is_file():
                raise DataError(str(day_dir), f"missing {PART}")
            days.append((day, day_dir / PART))
        if not days:
            raise DataError(str(entry), "has no day=YYYY-MM-DD partitions")
        fleet[vehicle] = [path for _, path in sorted(days)]
    if not fleet:
        raise DataError(str(root), "has no vehicle=ID partitions: expected vehicle=ID/day=YYYY-MM-DD/part.parquet")
    return fleet


def read_day(path, vehicle: str, series: int | None = None) -> PackData:
    """One vehicle-day, checked as a pack file (columns, numbers, time order) and against its partition."""
    import pyarrow.parquet as pq

    data = read_pack(path)
    if VEHICLE not in pq.read_schema(path).names:
        raise DataError(str(path), f"missing column {VEHICLE!r}", VEHICLE)
    named = pd.read_parquet(path, columns=[VEHICLE])[VEHICLE]
    wrong = (named != vehicle).to_numpy()
    if wrong.any():
        row = int(wrong.argmax())
        raise DataError(
            str(path), f"names vehicle {named.iloc[row]!r} inside the partition of {vehicle!r}", VEHICLE, row + 1
        )
    if series is not None and data.cell_voltage_v.shape[1] != series:
        raise DataError(
            str(path),
            f"has {data.cell_voltage_v.shape[1]} cell voltage columns, the fleet has {series} cells in series",
        )
    return data


def _entries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if not p.name.startswith(("_", "."))]


def _key(path: Path, key: str) -> str:
    if not (path.is_dir() and path.name.startswith(key + "=")):
        raise DataError(str(path), f"not part of the layout: expected a directory {key}=...")
    return path.name[len(key) + 1 :]


def _iso_day(day: str, where: str) -> str:
    try:
        return dt.date.fromisoformat(day).isoformat()
    except ValueError:
        raise DataError(where, f"day {day!r} is not a date YYYY-MM-DD") from None
