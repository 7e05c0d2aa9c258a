"""The A123 characterisation files, and grouping any files into complete tests.

A characterisation test starts fully charged and at rest, goes down to empty and
back up to full (the ESC protocol). The A123 data splits each test into scripts
(S1..S4 for OCV, s1..s3 for dynamic), some of them at 25 degC; `read_tests`
joins a test's scripts into one series with the ambient temperature of each row.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .columns import AMBIENT_TEMPERATURE, CELL_TEMPERATURE, CHARGE_CAPACITY, DISCHARGE_CAPACITY, TIME, ColumnMap
from .errors import DataError
from .readers import read_timeseries

A123_NAME = re.compile(r"A123_(?P<kind>OCV|DYN_\d+)_(?P<sign>[NP])(?P<deg>\d+)_[sS](?P<script>\d)", re.IGNORECASE)
REFERENCE_TEMPERATURE_C = 25.0
# Scripts run at the reference temperature instead of the test's own.
A123_REFERENCE_SCRIPTS = {"OCV": {2, 4}, "DYN": {2, 3}}


def default_a123_dir() -> Path:
    """Where the A123 data set is: $OPENBMS_A123_DIR, else the shared folder beside the checkout."""
    if os.environ.get("OPENBMS_A123_DIR"):
        return Path(os.environ["OPENBMS_A123_DIR"])
    checkout = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd() / ".." / "shared", checkout / ".." / "shared", Path("/work/shared")):
        if (candidate / "data" / "a123" / "ocv").is_dir():
            return (candidate / "data" / "a123").resolve()
    return checkout / ".." / "shared" / "data" / "a123"


@dataclass
class CellTest:
    """One complete test: rested full → empty → full, at a nominal temperature."""

    name: str
    temperature_c: float
    data: pd.DataFrame
    sources: list[str] = field(default_factory=list)
    main_rows: np.ndarray | None = None  # the test proper (A123: script 1), without its set-up scripts
    assumptions: list[str] = field(default_factory=list)  # what the reader or identifier assumed, to report

    @property
    def at_temperature(self) -> np.ndarray:
        """Rows run at the test's own temperature (not the 25 degC reference scripts)."""
        if AMBIENT_TEMPERATURE not in self.data:
            return np.ones(len(self.data), dtype=bool)
        return np.abs(self.data[AMBIENT_TEMPERATURE].to_numpy() - self.temperature_c) < 0.5

    @property
    def fit_rows(self) -> np.ndarray:
        """Rows a model is fitted and scored on: the test proper, at the test's temperature."""
        return self.at_temperature if self.main_rows is None else self.main_rows & self.at_temperature

    @property
    def temperature(self) -> np.ndarray:
        """Per-row temperature the cell saw: measured where present, else ambient."""
        for column in (CELL_TEMPERATURE, AMBIENT_TEMPERATURE):
            if column in self.data:
                return self.data[column].to_numpy(dtype=float)
        return np.full(len(self.data), self.temperature_c)


def a123_script(path: str | Path) -> tuple[str, float, int] | None:
    """(kind, temperature, script) from an A123 file name, or None if it is not one."""
    match = A123_NAME.search(Path(path).name)
    if not match:
        return None
    kind = "OCV" if match["kind"].upper() == "OCV" else "DYN"
    temperature = float(match["deg"]) * (-1 if match["sign"].upper() == "N" else 1)
    return kind, temperature, int(match["script"])


def a123_ambient_c(path: str | Path) -> float | None:
    """The ambient temperature an A123 script ran at (its test's, or 25 degC for set-up scripts), else None."""
    tag = a123_script(path)
    if tag is None:
        return None
    kind, temperature, script = tag
    return REFERENCE_TEMPERATURE_C if script in A123_REFERENCE_SCRIPTS[kind] else temperature


def read_tests(
    paths: list[str | Path],
    column_map: ColumnMap | None = None,
    current_sign: str | None = None,
    ambient_c: float | dict[str | None, float] | None = None,
) -> list[CellTest]:
    """Group files into tests: an A123 test's scripts are joined; any other file is a test.

    A file that is not an A123 script must carry a temperature column (ambient or
    cell), or the caller states the chamber temperature: `ambient_c` is one value
    for every file, or {file path or name: degC, None: default}. A test's
    temperature is never guessed.
    """
    groups: dict[tuple[str, float], list[tuple[int, Path]]] = {}
    tests: list[CellTest] = []
    for path in map(Path, paths):
        tag = a123_script(path)
        if tag is None:
            tests.append(_single_file_test(path, column_map, current_sign, _ambient_for(path, ambient_c)))
        else:
            kind, temperature, script = tag
            groups.setdefault((kind, temperature), []).append((script, path))
    for (kind, temperature), scripts in sorted(groups.items()):
        scripts.sort()
        numbers = [n for n, _ in scripts]
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise DataError(
                str(scripts[0][1].parent), f"A123 {kind} test at {temperature:g} degC: script(s) {repeated} given twice"
            )
        if numbers != list(range(1, len(numbers) + 1)):
            raise DataError(
                str(scripts[0][1].parent),
                f"A123 {kind} test at {temperature:g} degC needs scripts 1..n in order, found {numbers}",
            )
        frames = []
        for _, path in scripts:
            df = read_timeseries(path, column_map, current_sign)
            df[AMBIENT_TEMPERATURE] = a123_ambient_c(path)
            frames.append(df)
        name = f"{kind.lower()}_{'N' if temperature < 0 else 'P'}{abs(temperature):02.0f}"
        main = np.zeros(sum(len(f) for f in frames), dtype=bool)
        main[: len(frames[0])] = True
        tests.append(CellTest(name, temperature, join_scripts(frames), [str(p) for _, p in scripts], main))
    return tests


def join_scripts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate consecutive scripts: time and capacity counters run on."""
    out = []
    t_end, counters = 0.0, {CHARGE_CAPACITY: 0.0, DISCHARGE_CAPACITY: 0.0}
    for df in frames:
        df = df.copy()
        t = df[TIME].to_numpy()
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        df[TIME] = t - t[0] + (t_end + dt if out else 0.0)
        t_end = float(df[TIME].iloc[-1])
        for column in counters:
            if column in df:
                df[column] = df[column] + counters[column]
                counters[column] = float(df[column].iloc[-1])
        out.append(df)
    return pd.concat(out, ignore_index=True)


def _ambient_for(path: Path, ambient_c: float | dict[str | None, float] | None) -> float | None:
    """The stated ambient of one file: by its path, then its name, then the default."""
    if not isinstance(ambient_c, dict):
        return ambient_c
    for key in (str(path), path.name):
        if key in ambient_c:
            return ambient_c[key]
    return ambient_c.get(None)


def _single_file_test(
    path: Path, column_map: ColumnMap | None, current_sign: str | None, ambient_c: float | None
) -> CellTest:
    df = read_timeseries(path, column_map, current_sign, ambient_c)
    notes = [f"{path.name}: {note}" for note in df.attrs.get("assumptions", [])]
    for column in (AMBIENT_TEMPERATURE, CELL_TEMPERATURE):
        if column in df:
            temperature = float(np.round(df[column].iloc[0], 1))
            return CellTest(path.name.split(".")[0], temperature, df, [str(path)], assumptions=notes)
    raise DataError(
        str(path),
        f"a characterisation test needs a temperature column ({AMBIENT_TEMPERATURE!r} or {CELL_TEMPERATURE!r}); "
        "if the chamber temperature is known, say it with --ambient DEGC (or --ambient FILE=DEGC)",
    )
