"""Capacity, coulombic efficiency and reference SoC of a complete test, by charge bookkeeping.

A complete test starts full and ends full (rested), and reaches exactly empty on the
way. Closing the charge balance gives the coulombic efficiency; the deepest point of
the efficiency-weighted charge count is empty, so its depth is the capacity. Rows run
at another (reference) temperature use that temperature's efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io.a123 import CellTest
from ...io.columns import CHARGE_CAPACITY, CURRENT, DISCHARGE_CAPACITY, TIME
from ...io.errors import DataError


@dataclass(frozen=True)
class ChargeBalance:
    capacity_ah: float
    coulombic_efficiency: float
    soc: np.ndarray  # reference SoC per row
    empty_row: int
    reference_efficiency: float = 1.0  # for rows run at the reference temperature
    soc0: float = 1.0  # at the first row
    hysteresis0: float = 1.0  # dynamic hysteresis state at the first row: +1 rested after a charge


def row_charge_ah(test: CellTest) -> tuple[np.ndarray, np.ndarray]:
    """Charge put in and taken out during each row's interval (Ah, both ≥ 0).

    The cycler's own capacity counters are used where the file has them (they
    integrate faster than the logged samples); otherwise the current is integrated.
    """
    df = test.data
    if CHARGE_CAPACITY in df and DISCHARGE_CAPACITY in df:
        charged = np.clip(np.diff(df[CHARGE_CAPACITY].to_numpy(), append=df[CHARGE_CAPACITY].iloc[-1]), 0, None)
        discharged = np.clip(
            np.diff(df[DISCHARGE_CAPACITY].to_numpy(), append=df[DISCHARGE_CAPACITY].iloc[-1]), 0, None
        )
        return charged, discharged
    t = df[TIME].to_numpy()
    i = df[CURRENT].to_numpy()
    ah = i * np.diff(t, append=t[-1]) / 3600.0
    return np.clip(ah, 0, None), np.clip(-ah, 0, None)


def charge_balance(test: CellTest, reference_efficiency: float | None = None) -> ChargeBalance:
    """Capacity and efficiency at the test's temperature, and its reference SoC."""
    charged, discharged = row_charge_ah(test)
    own = test.at_temperature
    charged_own, charged_ref = charged[own].sum(), charged[~own].sum()
    if charged_ref > 0 and reference_efficiency is None:
        raise DataError(test.name, "part of this test runs at another temperature: its efficiency must be known first")
    if charged_own <= 0:
        raise DataError(test.name, "no charge at the test temperature: a complete test ends fully charged")
    efficiency = (discharged.sum() - (reference_efficiency or 0.0) * charged_ref) / charged_own
    count = counted_ah(test, efficiency, reference_efficiency or 1.0)
    empty = int(np.argmin(count))
    capacity = -count[empty]
    if capacity <= 0:
        raise DataError(test.name, "never discharges: a complete test goes from full to empty and back")
    if not 0.8 < efficiency < 1.05:
        raise DataError(
            test.name,
            f"coulombic efficiency {efficiency:.3f} is implausible: the test must start and end fully charged",
        )
    return ChargeBalance(float(capacity), float(efficiency), 1.0 + count / capacity, empty, reference_efficiency or 1.0)


def charge_branch_balance(test: CellTest, efficiency: float) -> ChargeBalance:
    """A test that starts empty and ends full: its charge, at a known efficiency, is the capacity."""
    count = counted_ah(test, efficiency)
    capacity = float(count.max())
    if capacity <= 0:
        raise DataError(test.name, "never charges: a charge-branch OCV test goes from empty to full")
    return ChargeBalance(capacity, efficiency, count / capacity, 0, 1.0, 0.0, -1.0)


def counted_ah(test: CellTest, efficiency: float, reference_efficiency: float = 1.0) -> np.ndarray:
    """Charge counted from the first row (Ah; efficiency on charge), at the start of each row."""
    charged, discharged = row_charge_ah(test)
    weights = np.where(test.at_temperature, efficiency, reference_efficiency)
    return np.concatenate([[0.0], np.cumsum(weights * charged - discharged)[:-1]])


def anchored_balance(
    test: CellTest, capacity_ah: float, efficiency: float, soc0: float, hysteresis0: float
) -> ChargeBalance:
    """The balance of a test that does not close: capacity and efficiency known from other tests,
    its SoC path placed at `soc0` by its anchors."""
    soc = soc0 + counted_ah(test, efficiency) / capacity_ah
    return ChargeBalance(capacity_ah, efficiency, soc, int(np.argmin(soc)), 1.0, soc0, hysteresis0)


def soc_per_amp(test: CellTest, balance: ChargeBalance) -> np.ndarray:
    """SoC moved per amp during each row's interval: η·dt / 3600·Q (η only on charge)."""
    t = test.data[TIME].to_numpy()
    i = test.data[CURRENT].to_numpy()
    eta = np.where(
        i > 0, np.where(test.at_temperature, balance.coulombic_efficiency, balance.reference_efficiency), 1.0
    )
    return eta * np.diff(t, append=t[-1]) / (3600.0 * balance.capacity_ah)


def integrated_soc(test: CellTest, balance: ChargeBalance) -> np.ndarray:
    """SoC from integrating the logged current, as a model or a BMS sees it.

    A cycler's capacity counters integrate faster than the logged samples; on a
    drive cycle the two differ by about 1 %, so a model is fitted on the SoC its
    own simulation would produce from the logged current.
    """
    moved = soc_per_amp(test, balance) * test.data[CURRENT].to_numpy()
    return balance.soc0 + np.concatenate([[0.0], np.cumsum(moved)[:-1]])


def balances(
    tests: list[CellTest], reference_temperature_c: float = 25.0, charge_only: frozenset[str] = frozenset()
) -> dict[str, ChargeBalance]:
    """Charge balance of every test; tests at one temperature first, for the others' reference rows.

    A test in `charge_only` shows no efficiency: it takes the mean of the tests that close, or 1.
    """
    closing = [t for t in tests if t.name not in charge_only]
    out = _closed_balances(closing, reference_temperature_c) if closing else {}
    efficiency = float(np.mean([b.coulombic_efficiency for b in out.values()])) if out else 1.0
    return out | {t.name: charge_branch_balance(t, efficiency) for t in tests if t.name in charge_only}


def _closed_balances(tests: list[CellTest], reference_temperature_c: float) -> dict[str, ChargeBalance]:
    uniform = [t for t in tests if t.at_temperature.all()]
    out = {t.name: charge_balance(t) for t in uniform}
    if len(out) < len(tests):
        at_ref = [
            out[t.name].coulombic_efficiency for t in uniform if abs(t.temperature_c - reference_temperature_c) < 0.5
        ]
        if not at_ref:
            raise DataError(
                tests[0].sources[0] if tests[0].sources else tests[0].name,
                f"tests with rows at {reference_temperature_c:g} degC need a test run wholly at that temperature",
            )
        for t in tests:
            if t.name not in out:
                out[t.name] = charge_balance(t, float(np.mean(at_ref)))
    return out
