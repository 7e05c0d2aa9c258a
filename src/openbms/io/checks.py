"""Consistency checks every reader runs: a file either passes or says what is wrong.

Rows are reported 1-based over data rows (the header is not counted).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import CHARGE_CAPACITY, CURRENT, DISCHARGE_CAPACITY, STEP_INDEX, TEMPERATURES, TIME
from .errors import DataError

# Above this a "current in A" is almost surely milliamps (no cell or pack draws 5 kA).
MAX_PLAUSIBLE_CURRENT_A = 5000.0


def check_frame(df: pd.DataFrame, source: str) -> None:
    """Run every check on a BDF frame (after column mapping and sign conversion)."""
    check_finite(df, source)
    check_time(df, source)
    check_current_units(df, source)
    check_current_sign(df, source)


def check_finite(df: pd.DataFrame, source: str) -> None:
    for column in df.columns:
        values = df[column].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad)) + 1
            hint = (
                "; if the chamber temperature is known, --ambient DEGC fills the missing rows"
                if column in TEMPERATURES
                else ""
            )
            raise DataError(source, f"missing or non-finite value ({values[row - 1]}){hint}", column, row)


def check_time(df: pd.DataFrame, source: str) -> None:
    """Time never goes back; it may repeat where one step ends and the next begins.

    Cyclers and PyBaMM log the end of a step and the start of the next at the same
    instant. Where the file has a step index, a time repeated within one step is
    refused; without one, a repeat is taken as a step change (at a CC to CV handover
    even the current stays the same).
    """
    t = df[TIME].to_numpy(dtype=float)
    steps = np.diff(t)
    back = steps < 0
    if back.any():
        row = int(np.argmax(back)) + 2
        raise DataError(
            source,
            f"time must increase, but goes from {t[row - 2]} s to {t[row - 1]} s (rows {row - 1} and {row})",
            TIME,
            row,
        )
    if STEP_INDEX not in df:
        return
    repeated = (steps == 0) & (np.diff(df[STEP_INDEX].to_numpy(dtype=float)) == 0)
    if repeated.any():
        row = int(np.argmax(repeated)) + 2
        raise DataError(
            source,
            f"time repeats ({t[row - 1]} s at rows {row - 1} and {row}) within one step: only the end of a "
            f"step and the start of the next may share a time (the {STEP_INDEX!r} column does not change there)",
            TIME,
            row,
        )


def check_current_units(df: pd.DataFrame, source: str) -> None:
    """Catch a milliamp column labelled as amps, by the capacity columns where present."""
    current = df[CURRENT].to_numpy(dtype=float)
    throughput = _capacity_throughput(df)
    if throughput is not None and throughput > 1e-6:
        dt = np.diff(df[TIME].to_numpy(dtype=float))
        counted = float(np.sum(np.abs(current[:-1]) * dt) / 3600.0)
        ratio = counted / throughput
        if ratio > 100:
            raise DataError(
                source,
                f"integrated current is {ratio:.0f} times the capacity columns' throughput: "
                "the current looks like mA; map it with a scale of 0.001",
                CURRENT,
            )
        return
    peak = float(np.max(np.abs(current))) if current.size else 0.0
    if peak > MAX_PLAUSIBLE_CURRENT_A:
        row = int(np.argmax(np.abs(current))) + 1
        raise DataError(
            source,
            f"{peak:g} A is not a plausible current: it looks like mA; map it with a scale of 0.001",
            CURRENT,
            row,
        )


def check_current_sign(df: pd.DataFrame, source: str) -> None:
    """Positive current must charge: the charging-capacity column grows while it flows."""
    if CHARGE_CAPACITY not in df or DISCHARGE_CAPACITY not in df:
        return
    current = df[CURRENT].to_numpy(dtype=float)[1:]
    charging = np.diff(df[CHARGE_CAPACITY].to_numpy(dtype=float)) > 0
    discharging = np.diff(df[DISCHARGE_CAPACITY].to_numpy(dtype=float)) > 0
    agree = np.count_nonzero(charging & (current > 0)) + np.count_nonzero(discharging & (current < 0))
    disagree = np.count_nonzero(charging & (current < 0)) + np.count_nonzero(discharging & (current > 0))
    if disagree > agree:
        wrong = (charging & (current < 0)) | (discharging & (current > 0))
        row = int(np.argmax(wrong)) + 2
        raise DataError(
            source,
            f"current sign contradicts the capacity columns on {disagree} of {agree + disagree} rows "
            "(positive current must charge): state the file's sign convention "
            "(--current-sign discharge-positive; current_sign='discharge-positive' in Python)",
            CURRENT,
            row,
        )


def _capacity_throughput(df: pd.DataFrame) -> float | None:
    if CHARGE_CAPACITY not in df or DISCHARGE_CAPACITY not in df:
        return None
    total = 0.0
    for column in (CHARGE_CAPACITY, DISCHARGE_CAPACITY):
        steps = np.diff(df[column].to_numpy(dtype=float))
        total += float(np.sum(steps[steps > 0]))  # counters may reset between steps
    return total
