"""Write BDF frames as CSV or Parquet, chosen by the file suffix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .readers import PARQUET_SUFFIXES


CSV_SUFFIXES = (".csv",)
COMPRESSIONS = ("", ".gz", ".bz2", ".xz", ".zip")  # pandas compresses CSV by the last suffix
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def checked_output(path: str | Path, suffixes=None) -> Path:
    """The path a command will write, refused before any work if it could not be: a directory, or a
    suffix the writer does not know (default: a time series' .csv, .csv.gz, … or .parquet)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give a file name")
    name = path.name.lower()
    known = [c + z for c in CSV_SUFFIXES for z in COMPRESSIONS] + list(PARQUET_SUFFIXES) if suffixes is None \
        else list(suffixes)
    if not any(name.endswith(s) for s in known):
        raise ValueError(f"{path}: cannot write this kind of file; use one of {', '.join(known)}")
    return path


def write_timeseries(df: pd.DataFrame, path: str | Path) -> Path:
    path = checked_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path
