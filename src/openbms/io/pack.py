"""Pack files: string current, every cell's voltage and the temperature sensors, BDF-style columns.

`Test Time / s`, `Current / A` (+ = charging), `Cell Voltage {i} / V` for i = 1..n in series,
and `Cell Temperature {j} / degC` (any number of sensors, or an `Ambient Temperature / degC`).
A missing cell voltage (empty field) is kept as NaN: it is what a lost sensor looks like, and
the BMS's plausibility checks must see it, not have it dropped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import check_time
from .columns import AMBIENT_TEMPERATURE, CURRENT, TIME
from .errors import DataError
from .readers import check_numeric, read_raw

CELL_VOLTAGE = re.compile(r"^Cell Voltage (\d+) / V$")
CELL_TEMPERATURE = re.compile(r"^Cell Temperature (\d+) / degC$")


@dataclass
class PackData:
    time_s: np.ndarray  # (time,)
    current_a: np.ndarray  # (time,), + = charging
    cell_voltage_v: np.ndarray  # (time, cells)
    temperature_c: np.ndarray  # (time, sensors)
    source: str


def _numbered(columns, pattern, source: str, what: str) -> list[str]:
    found = {int(m.group(1)): c for c in columns if (m := pattern.match(c))}
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        missing = sorted(set(expected) - set(found)) or sorted(found)[-1:]
        raise DataError(
            source, f"{what} columns must be numbered 1..{len(found)} without gaps; number {missing[0]} is missing"
        )
    return [found[i] for i in expected]


def read_pack(path: str | Path, temperature_c: float | None = None) -> PackData:
    source = str(path)
    raw = read_raw(path)
    for column in (TIME, CURRENT):
        if column not in raw.columns:
            raise DataError(
                source,
                f"missing column {column!r}; a pack file needs {TIME!r}, {CURRENT!r} and "
                f"'Cell Voltage 1 / V', 'Cell Voltage 2 / V', ...",
                column,
            )
    volts = _numbered(raw.columns, CELL_VOLTAGE, source, "cell voltage")
    if len(volts) < 2:
        raise DataError(source, "a pack file needs at least two 'Cell Voltage {i} / V' columns")
    temps = _numbered(raw.columns, CELL_TEMPERATURE, source, "cell temperature")
    if not temps and temperature_c is None:
        if AMBIENT_TEMPERATURE not in raw.columns:
            raise DataError(
                source, "no 'Cell Temperature {j} / degC' or ambient temperature column; pass a temperature"
            )
        temps = [AMBIENT_TEMPERATURE]
    df = raw[[TIME, CURRENT] + volts + temps]
    check_numeric(df, source)
    df = df.astype(float)
    for column in (TIME, CURRENT):
        bad = ~np.isfinite(df[column].to_numpy())
        if bad.any():
            row = int(np.argmax(bad)) + 1
            raise DataError(source, "missing or non-finite value", column, row)
    check_time(df, source)
    n = len(df)
    temperature = df[temps].to_numpy() if temps else np.full((n, 1), float(temperature_c))
    return PackData(df[TIME].to_numpy(), df[CURRENT].to_numpy(), df[volts].to_numpy(), temperature, source)
