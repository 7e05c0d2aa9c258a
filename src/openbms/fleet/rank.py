"""Who needs service first: a fleet ranking that a service planner can read row by row.

Urgency = tier + a fraction within the tier. Tiers, most urgent first: a critical internal short
(4), a short warning (3), a faulty cell-voltage sensor (2: the BMS is partly blind), a worn pack
(1: capacity below 80 % or resistance above 150 % of new), none (0). Within a tier a lower short
resistance, or a larger health deficit, comes first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WORN_CAPACITY = 0.8
WORN_RESISTANCE = 1.5


def rank_vehicles(vehicles: pd.DataFrame) -> pd.DataFrame:
    """The vehicles table with `Urgency`, `Service Reason` and `Rank` (1 = first), sorted by rank."""
    rows = [_urgency(row) for row in vehicles.to_dict("records")]
    ranked = vehicles.assign(Urgency=[u for u, _ in rows], **{"Service Reason": [r for _, r in rows]})
    ranked = ranked.sort_values(["Urgency", "Vehicle"], ascending=[False, True], ignore_index=True)
    return ranked.assign(Rank=np.arange(1, len(ranked) + 1))


def _urgency(v: dict) -> tuple[float, str]:
    capacity, resistance = v["SOH Capacity / 1"], v["SOH Resistance / 1"]
    deficit = max(1.0 - capacity, (resistance - 1.0) / 2.5)
    health = f"capacity {100 * capacity:.0f} %, resistance {100 * resistance:.0f} % of new"
    if v["Short Cell"] is not None and not pd.isna(v["Short Cell"]):
        ohm = v["Short Resistance / ohm"]
        # a short seen only at rest has no size yet: it ranks as a 100 ohm one, the rest evidence being fastest
        # for the strongest
        sized = ohm is not None and not pd.isna(ohm)
        tier = 4 if v["Short Severity"] == "critical" else 3
        size = f"about {ohm:.0f} ohm" if sized else "seen at rest, size not yet known"
        return tier + (1.0 / (1.0 + ohm / 100.0) if sized else 0.5), (
            f"internal short in cell {int(v['Short Cell'])} ({size}, {v['Short Severity']}); {health}"
        )
    if v["Sensor Fault Cells"]:
        return 2 + min(deficit, 0.99), f"cell voltage sensor(s) {v['Sensor Fault Cells']} faulty; {health}"
    if capacity < WORN_CAPACITY or resistance > WORN_RESISTANCE:
        return 1 + min(deficit, 0.99), f"worn: {health}"
    return max(min(deficit, 0.99), 0.0), f"ok: {health}"
