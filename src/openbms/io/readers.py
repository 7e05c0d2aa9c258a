"""Read a time series from CSV (optionally gzip) or Parquet into BDF columns."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pandas as pd

from .checks import check_frame
from .columns import (
    AMBIENT_TEMPERATURE,
    BIOLOGIC,
    CURRENT,
    DISCHARGE_POSITIVE,
    REQUIRED,
    SIGNS,
    TEMPERATURES,
    TIME,
    ColumnMap,
    detect,
)
from . import labfiles
from .errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")


def read_raw(path: str | Path) -> pd.DataFrame:
    """The file as its writer left it, or a DataError: CSV (also .gz), Parquet, a BDF file (labels
    made the preferred ones), a BioLogic .mpr, or a cycler file the BDF package reads."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "no such file")
    suffix = path.suffix.lower()
    if suffix == labfiles.MPR_SUFFIX:
        return labfiles.read_mpr(path)
    if suffix in labfiles.VENDOR_SUFFIXES:
        return labfiles.read_vendor(path)
    try:
        if suffix in PARQUET_SUFFIXES:
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # pandas and pyarrow raise many types; all mean "unreadable"
        kind = "Parquet" if suffix in PARQUET_SUFFIXES else "CSV"
        raise DataError(str(path), f"cannot read as {kind}: {exc}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    if raw.empty:
        raise DataError(str(path), "has no data rows")
    return labfiles.bdf_labels(raw, str(path)) if labfiles.is_bdf(path) else raw


def read_timeseries(
    path: str | Path,
    column_map: ColumnMap | None = None,
    current_sign: str | None = None,
    ambient_c: float | None = None,
) -> pd.DataFrame:
    """Read one cycler file into BDF columns (SI, + = charging), checked.

    The column map is detected from the header unless given. `current_sign`
    overrides the map's sign convention; the result is checked against the
    file's capacity columns where it has them. `ambient_c`, the chamber
    temperature the user states, fills a missing or partial temperature column;
    what it filled is listed in `df.attrs["assumptions"]`.
    """
    source = str(path)
    raw = read_raw(path)
    if column_map is None and Path(path).suffix.lower() == labfiles.MPR_SUFFIX:
        column_map = BIOLOGIC  # EC-Lab's names, whatever columns this technique logged
    if column_map is None and detect(list(raw.columns)) is None and labfiles.installed("bdf"):
        raw = labfiles.bdf_labels(raw, source)  # a BDF file under another name, in machine-readable labels
    column_map = column_map or detect(list(raw.columns))
    if column_map is None:
        raise DataError(source, _missing_message(list(raw.columns)))
    sign = current_sign or column_map.current_sign
    if sign not in SIGNS:
        raise DataError(source, f"current sign must be one of {SIGNS}, got {sign!r} (--current-sign)")
    for src, label in column_map.columns.items():
        if label in REQUIRED and src not in raw.columns:
            raise DataError(source, f"missing column {src!r} ({label}){_suggest(src, raw.columns)}", src)
    unmapped = [label for label in REQUIRED if label not in column_map.columns.values()]
    if unmapped:
        raise DataError(source, f"column map {column_map.name!r} gives no column for {unmapped}")
    df = pd.DataFrame(index=raw.index)
    for src, label in column_map.columns.items():
        if src in raw.columns:
            df[label] = raw[src] * column_map.scale[src] if src in column_map.scale else raw[src]
    for extra in raw.columns:  # pack files carry per-cell BDF columns (Cell Voltage 3 / V)
        if " / " in extra and extra not in df.columns and extra not in column_map.columns:
            df[extra] = raw[extra]
    check_numeric(df, source)
    df = df.astype(float)
    if sign == DISCHARGE_POSITIVE:
        df[CURRENT] = -df[CURRENT]
    assumptions = [] if ambient_c is None else fill_temperature(df, float(ambient_c))
    check_frame(df, source)
    df = df.reset_index(drop=True)
    df.attrs["source"] = source
    df.attrs["assumptions"] = assumptions
    return df


def fill_temperature(df: pd.DataFrame, ambient_c: float) -> list[str]:
    """Fill the rows a file has no temperature for with the stated ambient; say what was filled.

    A file without an ambient column gets one; missing rows of a cell-temperature
    column take the ambient too (at characterisation currents the cell is near it).
    """
    notes = []
    if AMBIENT_TEMPERATURE not in df:
        df[AMBIENT_TEMPERATURE] = ambient_c
        notes.append(f"no ambient temperature column: {ambient_c:g} degC from --ambient")
    for column in TEMPERATURES:
        if column not in df:
            continue
        missing = ~np.isfinite(df[column].to_numpy())
        if missing.any():
            df.loc[missing, column] = ambient_c
            notes.append(
                f"{int(missing.sum())} of {len(df)} rows without {column!r}: "
                f"filled with {ambient_c:g} degC from --ambient"
            )
    return notes


def check_numeric(df: pd.DataFrame, source: str) -> None:
    for column in df.columns:
        kind = df[column].dtype
        if not (
            pd.api.types.is_numeric_dtype(kind)
            or pd.api.types.is_object_dtype(kind)
            or pd.api.types.is_string_dtype(kind)
        ):
            hint = " (times are seconds)" if column == TIME else ""
            raise DataError(source, f"expected numbers, found {kind} values{hint}", column)
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna().to_numpy() & df[column].notna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad)) + 1
            raise DataError(source, f"expected a number, found {df[column].iloc[row - 1]!r}", column, row)


def _missing_message(header: list[str]) -> str:
    hints = "".join(f"; {label!r} not found{_suggest(label, header)}" for label in REQUIRED if label not in header)
    return (
        f"unrecognised columns {header[:8]}{'...' if len(header) > 8 else ''}: expected the BDF columns "
        f"{list(REQUIRED)}{hints}, or give a column map (--columns map.json)"
    )


def _suggest(name: str, header) -> str:
    close = difflib.get_close_matches(name, list(header), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
