"""Lab formats, read and written through the libraries that already know them.

BioLogic's binary .mpr through `galvani`; the Battery Data Format's canonical and
machine-readable column labels, and the cyclers its package reads itself (Neware
.nda / .ndax, BioLogic .mpt, ...), through `batterydf` (imported as `bdf`). Both are
the optional `labfiles` extra: a file that needs one says which to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from .columns import LEGACY_LABELS
from .errors import DataError

EXTRA = "pip install 'openbms[labfiles]'"
BDF_SUFFIXES = (".bdf", ".bdf.csv", ".bdf.parquet")  # .bdf alone: the BDF CSV form
MPR_SUFFIX = ".mpr"
VENDOR_SUFFIXES = (".nda", ".ndax", ".mpt")  # read by batterydf's own cycler plugins


def _library(module: str, package: str, source: str, what: str) -> ModuleType:
    """The reading library, or an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(source, f"reading {what} needs the {package} package: {EXTRA}") from None


@contextmanager
def _quiet() -> Iterator[None]:
    """Without the libraries' own deprecation notices (pandas API changes), which users cannot act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_bdf(path: Path) -> bool:
    return path.name.lower().endswith(BDF_SUFFIXES)


def read_mpr(path: Path) -> pd.DataFrame:
    """A BioLogic .mpr file's data module, with EC-Lab's column names (time/s, Ewe/V, I/mA, ...)."""
    source = str(path)
    galvani = _library("galvani", "galvani", source, "BioLogic .mpr files")
    try:
        mpr = galvani.MPRfile(str(path))
    except Exception as exc:  # galvani raises ValueError, AssertionError, NotImplementedError, OSError
        raise DataError(source, f"not a readable BioLogic .mpr file ({type(exc).__name__}: {exc})") from exc
    data = mpr.data
    raw = pd.DataFrame({name: np.asarray(data[name]) for name in data.dtype.names if name != "flags"})
    # EC-Lab logs the averaged current and voltage under their own names in some techniques
    for plain, averaged in (("I/mA", "<I>/mA"), ("Ewe/V", "<Ewe>/V")):
        if plain not in raw and averaged in raw:
            raw = raw.rename(columns={averaged: plain})
    if raw.empty:
        raise DataError(source, "has no data rows")
    return raw


def read_vendor(path: Path) -> pd.DataFrame:
    """A cycler file batterydf reads with its own plugin, as BDF columns (+ = charging)."""
    source = str(path)
    bdf = _library("bdf", "batterydf", source, f"{path.suffix} files")
    try:
        with _quiet():
            df = bdf.read(str(path), validate=False)
    except Exception as exc:  # each plugin raises its own types; all mean "not readable"
        raise DataError(source, f"batterydf cannot read this file: {exc}") from exc
    return bdf_labels(df, source)


def bdf_labels(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """The frame with batterydf's preferred BDF labels: machine-readable names (test_time_second)
    and the ontology's older labels are renamed, with unit conversion where batterydf does it."""
    normalize = _library("bdf.normalize", "batterydf", source, "BDF files")
    with _quiet():
        df, _ = normalize.canonicalize_legacy_labels(raw)
    renames = {**bdf_label_table(source), **LEGACY_LABELS}
    return df.rename(columns={k: v for k, v in renames.items() if v not in df})


def bdf_label_table(source: str = "batterydf") -> dict[str, str]:
    """Machine-readable name → preferred label of every quantity batterydf defines."""
    spec = _library("bdf.normalize", "batterydf", source, "BDF labels").spec
    return {
        spec.notation_for(q): c["label_template"].format(unit=c["unit"])
        for q, c in spec.COLUMNS.items()
        if not c.get("deprecated")
    }


def write_bdf(df: pd.DataFrame, path: Path) -> Path:
    """Write a BDF file through batterydf (preferred labels), atomically: a half-written file never
    stands under the final name. `.bdf` alone is the CSV form."""
    bdf_io = _library("bdf.io", "batterydf", str(path), "BDF files (writing)")
    unknown = [c for c in df.columns if " / " not in c]
    if unknown:
        raise ValueError(f"{path}: columns {unknown} are not BDF labels ('Quantity / unit')")
    suffix = ".bdf.parquet" if path.name.lower().endswith(".parquet") else ".bdf.csv"
    handle, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent, prefix="." + path.name)
    os.close(handle)
    try:
        with _quiet():
            bdf_io.save(df, tmp, human=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary write would leave it, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
