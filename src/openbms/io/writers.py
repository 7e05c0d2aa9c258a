"""Write BDF frames as CSV or Parquet, chosen by the file suffix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import labfiles
from .readers import PARQUET_SUFFIXES


CSV_SUFFIXES = (".csv",)
COMPRESSIONS = ("", ".gz", ".bz2", ".xz", ".zip")  # pandas compresses CSV by the last suffix
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
TIMESERIES_SUFFIXES = (
    tuple(c + z for c in CSV_SUFFIXES for z in COMPRESSIONS) + PARQUET_SUFFIXES + labfiles.BDF_SUFFIXES
)


def checked_output(path: str | Path, suffixes=TIMESERIES_SUFFIXES) -> Path:
    """The path a command will write, refused before any work if it could not be: a directory, or a
    suffix the writer does not know."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give a file name")
    if not any(path.name.lower().endswith(s) for s in suffixes):
        raise ValueError(f"{path}: cannot write this kind of file; use one of {', '.join(suffixes)}")
    return path


def _split_name(path: Path) -> tuple[str, str]:
    """A time series' file name and its suffix, a compound suffix kept whole (m.csv.gz: m, .csv.gz)."""
    suffix = max((s for s in TIMESERIES_SUFFIXES if path.name.lower().endswith(s)), key=len, default=path.suffix)
    cut = len(path.name) - len(suffix)
    return path.name[:cut], path.name[cut:]


def tagged(path: Path, tag: str) -> Path:
    """A time series' path with `tag` added to its name (m.csv.gz: m_truth.csv.gz)."""
    name, suffix = _split_name(path)
    return path.with_name(name + tag + suffix)


def beside(path: Path, suffix: str) -> Path:
    """A file beside a time series, named after it (m.csv.gz: m.png)."""
    return path.with_name(_split_name(path)[0] + suffix)


def write_timeseries(df: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet by the suffix; a BDF file (.bdf, .bdf.csv, .bdf.parquet) through the BDF package."""
    path = checked_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if labfiles.is_bdf(path):
        return labfiles.write_bdf(df, path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path
