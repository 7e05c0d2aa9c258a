"""Write BDF frames as CSV or Parquet, chosen by the file suffix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .readers import PARQUET_SUFFIXES


def write_timeseries(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path
