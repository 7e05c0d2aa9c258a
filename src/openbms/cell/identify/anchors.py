"""Where a test shows its state of charge, so that no test has to start or end full.

Full is the end of a charge that reached the upper limit (a CV end or the upper
cut-off); empty is the end of a discharge that reached the lower cut-off; a test
that starts rested at the voltage it rests at after its own full charge starts
full. Once the OCV is known, a long rest's voltage read on the OCV's hysteresis
branch of the last current places the SoC too, as well as the OCV's slope there
allows. Each test's SoC path is put through its anchors; what was assumed is said.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...io.a123 import CellTest
from ...io.columns import CURRENT, TIME, VOLTAGE
from ...io.errors import DataError

LIMIT_TOL_V = 0.015  # a charge or discharge within this of a limit reached it
FULL_START_TOL_V = 0.08  # a test that starts rested this close to the upper limit starts full
MIN_REST_S = 600.0  # a rest this long shows the OCV (to some mV)
MIN_STEP_S = 600.0  # in a dynamic test, a charge or discharge this long that reaches a limit is full or empty
REST_VOLTAGE_STD_V = 0.01  # what a rested voltage is trusted to: relaxation is rarely complete
LIMIT_SOC_STD = 0.003  # a full or empty at a limit, in SoC
CURRENT_ZERO_A = 1e-6
FIRST_REST_BRANCH = -1.0  # a rest with no current before it: taken as rested after a discharge
TOP_UP_SHARE = 0.01  # discharge before the first full, as a share of the test's, that still counts as a top-up


@dataclass(frozen=True)
class Limits:
    """The cell's voltage limits, as its slow tests show them, and how long a charge or discharge must
    last to be full or empty there: in a slow test any step is slow; in a dynamic test a pulse that
    touches a limit is not full or empty (the voltage is far from the OCV there)."""

    voltage_min_v: float
    voltage_max_v: float
    min_step_s: float = 0.0
    slow_current_a: float = np.inf  # at most this current at a limit is full or empty

    def for_dynamic_tests(self, capacity_ah: float) -> Limits:
        """A dynamic test is full or empty only after a long, slow (≤ C/10) charge or discharge: at a
        higher rate the cut-off comes early, by the resistive drop over the OCV's slope."""
        return replace(self, min_step_s=MIN_STEP_S, slow_current_a=capacity_ah / 10.0)


def limits_of(tests: list[CellTest]) -> Limits:
    """Lowest discharge and highest charge voltage of the slow tests (they reach both limits)."""
    v = np.concatenate([t.data[VOLTAGE].to_numpy() for t in tests])
    i = np.concatenate([t.data[CURRENT].to_numpy() for t in tests])
    if not ((i < 0).any() and (i > 0).any()):
        raise DataError(
            ", ".join(s for t in tests for s in t.sources) or "OCV tests",
            "the OCV tests must both discharge and charge the cell",
        )
    return Limits(float(v[i < 0].min()), float(v[i > 0].max()))


def current_runs(i: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, sign) of each run of one current sign (0 = rest)."""
    sign = np.where(np.abs(i) > CURRENT_ZERO_A, np.sign(i), 0).astype(int)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(sign)) + 1, [len(i)]])
    return [(int(a), int(b), int(sign[a])) for a, b in zip(edges[:-1], edges[1:])]


def _limit_rows(test: CellTest, limits: Limits, sign: int) -> np.ndarray:
    """Last row of every charge (sign +1) or discharge (-1), long enough, that reached its limit."""
    t, v, i = test.data[TIME].to_numpy(), test.data[VOLTAGE].to_numpy(), test.data[CURRENT].to_numpy()

    def reached(a: int, b: int) -> bool:
        at_limit = (
            v[a:b].max() >= limits.voltage_max_v - LIMIT_TOL_V
            if sign > 0
            else v[a:b].min() <= limits.voltage_min_v + LIMIT_TOL_V
        )
        return bool(at_limit and t[b - 1] - t[a] >= limits.min_step_s and abs(i[b - 1]) <= limits.slow_current_a)

    return np.array([b - 1 for a, b, s in current_runs(i) if s == sign and reached(a, b)], dtype=int)


def full_rows(test: CellTest, limits: Limits) -> np.ndarray:
    """Last row of every charge that reached the upper limit (the end of a CV hold, or the upper cut-off)."""
    return _limit_rows(test, limits, +1)


def empty_rows(test: CellTest, limits: Limits) -> np.ndarray:
    """Last row of every discharge that reached the lower cut-off."""
    return _limit_rows(test, limits, -1)


def rest_ends(test: CellTest) -> list[tuple[int, int]]:
    """(last row of a rest of at least MIN_REST_S, sign of the current before it: 0 for a first rest)."""
    t, i = test.data[TIME].to_numpy(), test.data[CURRENT].to_numpy()
    runs = current_runs(i)
    return [
        (b - 1, runs[k - 1][2] if k > 0 else 0)
        for k, (a, b, s) in enumerate(runs)
        if s == 0 and t[b - 1] - t[a] >= MIN_REST_S
    ]


def from_start_anchor(test: CellTest, limits: Limits) -> tuple[CellTest, bool]:
    """The test from where it is known full, and whether it is; what was concluded is noted on it.

    A test topped up to full before it discharges is used from the end of that charge.
    A test whose first voltage is near the upper limit starts full (on the OCV's steep top
    a part-charged cell sits far lower, rested or at a slow current); a test that closes
    is checked by its charge balance too, whose efficiency would be implausible from a
    part-charged start.
    """
    v, i = test.data[VOLTAGE].to_numpy(), test.data[CURRENT].to_numpy()
    source = Path(test.sources[0]).name if test.sources else test.name
    full = full_rows(test, limits)
    discharged = np.concatenate(
        [[0.0], np.cumsum(np.clip(-i, 0, None) * np.diff(test.data[TIME].to_numpy(), append=0.0))[:-1]]
    )
    if full.size and discharged[full[0]] <= TOP_UP_SHARE * discharged[-1]:
        start = int(full[0])
        if start > 0 and i[:start].max() > CURRENT_ZERO_A:
            note = (
                f"{source}: starts at {v[0]:.3f} V, part-charged: used from the end of its charge to full "
                f"(row {start + 1}); the {start} rows before it are not used"
            )
            return _from_row(test, start, note), True
        return test, True
    if v[0] >= limits.voltage_max_v - FULL_START_TOL_V:
        how = "rested" if abs(i[0]) <= CURRENT_ZERO_A else f"at {i[0]:g} A"
        note = (
            f"{source}: starts {how} at {v[0]:.3f} V, within {FULL_START_TOL_V:g} V of the upper limit "
            f"{limits.voltage_max_v:.3f} V: taken as full"
        )
        return replace(test, assumptions=[*test.assumptions, note]), True
    return test, False


def charge_branch(test: CellTest, limits: Limits) -> CellTest | None:
    """An OCV test that does not start full but reaches empty (a discharge to the lower cut-off) and is
    then charged to full at a CV end: used from that empty on, it measures the charge branch alone."""
    empty, full = empty_rows(test, limits), full_rows(test, limits)
    if not (empty.size and full.size and closes(test, limits)) or empty[0] > full[-1]:
        return None
    start = int(empty[empty < full[-1]][-1])
    v = test.data[VOLTAGE].to_numpy()
    source = Path(test.sources[0]).name if test.sources else test.name
    note = (
        f"{source}: does not start full: used from empty at the cut-off ({v[start]:.3f} V, row {start + 1}); "
        "only its charge branch (empty → full) is measured: the OCV is that curve, its hysteresis not shown"
    )
    return _from_row(test, start, note)


def measured_branches(test: CellTest) -> tuple[int, ...]:
    """The current signs an OCV test measures a curve for: (-1, +1), or (+1,) for a charge branch alone."""
    i = test.data[CURRENT].to_numpy()
    return tuple(sign for sign in (-1, +1) if (sign * i > CURRENT_ZERO_A).sum() >= 10)


def _from_row(test: CellTest, start: int, note: str) -> CellTest:
    df = test.data.iloc[start:].reset_index(drop=True)
    main = None if test.main_rows is None else test.main_rows[start:]
    return replace(test, data=df, main_rows=main, assumptions=[*test.assumptions, note])


def closes(test: CellTest, limits: Limits) -> bool:
    """Reaches empty (in a dynamic test by a long slow discharge, not a pulse that touches the cut-off),
    is charged to full after it and its last current flows at the upper limit (a CV end, or a dither
    that holds it full): a test that starts full and closes shows capacity and efficiency."""
    i, v = test.data[CURRENT].to_numpy(), test.data[VOLTAGE].to_numpy()
    full, empty = full_rows(test, limits), empty_rows(test, limits)
    flowing = np.flatnonzero(np.abs(i) > CURRENT_ZERO_A)
    return bool(
        full.size and empty.size and full[-1] > empty[0] and v[flowing[-1]] >= limits.voltage_max_v - LIMIT_TOL_V
    )


@dataclass(frozen=True)
class SocAnchor:
    row: int
    soc: float
    std: float
    what: str


def limit_anchors(test: CellTest, limits: Limits, starts_full: bool) -> list[SocAnchor]:
    """Full and empty rows as SoC 1 and 0 (and row 0 if the test starts full)."""
    out = [SocAnchor(0, 1.0, LIMIT_SOC_STD, "starts full")] if starts_full else []
    out += [SocAnchor(int(r), 1.0, LIMIT_SOC_STD, "full") for r in full_rows(test, limits)]
    out += [SocAnchor(int(r), 0.0, LIMIT_SOC_STD, "empty at the cut-off") for r in empty_rows(test, limits)]
    return out


def rest_anchors(test: CellTest, soc_grid: np.ndarray, ocv_v: np.ndarray, envelope_v: np.ndarray) -> list[SocAnchor]:
    """Each long rest's voltage read on the OCV branch of the current before it (± the envelope).

    Trusted to the relaxation left after the rest plus half the envelope (after a short
    step the hysteresis has not reached its branch), over the OCV's slope there.
    A first rest has no current before it: it is read on the discharge branch, as a lab sets a part
    charge by discharging from full (the caller warns of that).
    """
    v = test.data[VOLTAGE].to_numpy()
    out = []
    slope = np.gradient(ocv_v, soc_grid)
    for row, sign in rest_ends(test):
        branch = ocv_v + (sign or FIRST_REST_BRANCH) * envelope_v
        k = int(np.argmin(np.abs(branch - v[row])))
        std = (REST_VOLTAGE_STD_V + 0.5 * envelope_v[k]) / max(abs(slope[k]), 1e-6)
        what = "rested voltage" if sign else "rested start, read on the discharge branch"
        out.append(SocAnchor(row, float(soc_grid[k]), float(min(std, 1.0)), what))
    return out


def start_soc(count_soc: np.ndarray, anchors: list[SocAnchor]) -> tuple[float, float]:
    """(SoC at row 0, its std) placing a counted path z0 + count_soc through the anchors (weighted)."""
    w = np.array([1.0 / a.std**2 for a in anchors])
    offsets = np.array([a.soc - count_soc[a.row] for a in anchors])
    z0 = float(w @ offsets / w.sum())
    return z0, float(1.0 / np.sqrt(w.sum()))
