"""The battery passport's usage and health document (EU 2023/1542 Art. 14, Art. 77 and Annex XIII).

Made from what the BMS saved last (its non-volatile state in the vehicle's database): the same values
a `health` token reads over VISS, with their units and bands spelt out, and the cell model's
provenance, so a buyer or an assessor can see what the estimates rest on.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..vehicle.store import Store
from ..vehicle.vss import ROOT
from .service import NV_KEY
from .usage import DEEP_DISCHARGE_SOC, OVER_TEMPERATURE_C, SOC_EDGES, TEMPERATURE_EDGES_C, band_labels

SCHEMA = "openbms.passport/1"
_HEALTH = f"{ROOT}.OpenBMS.Health"


def passport(store: Store, vehicle_id: str) -> dict:
    """The document; ValueError when the BMS has not run on this database yet (nothing to attest)."""
    nv = store.load_nv(NV_KEY)
    if not nv or not nv.get("health") or not nv.get("cell"):
        raise ValueError(
            f"{store.url} holds no saved BMS state with a health record: run `openbms serve --db "
            f"{store.url}` first (it saves every minute and on stop)"
        )
    h, cell = nv["health"], nv["cell"]
    return {
        "schema": SCHEMA,
        "document": "Battery usage and health (EU 2023/1542 Art. 14 and Annex XIII)",
        "vehicle_id": vehicle_id,
        "generated_at": _iso(datetime.now(UTC)),
        "battery": {
            "chemistry": cell["chemistry"],
            "cells_in_series": cell["series"],
            "rated_capacity_ah": cell["rated_capacity_ah"],
            "certified_energy_kwh": cell["certified_energy_kwh"],
        },
        "state_of_health": {
            "capacity_percent": h[f"{ROOT}.StateOfHealth"],
            "capacity_ah": h[f"{_HEALTH}.Capacity"],
            "resistance_percent_of_new": h[f"{ROOT}.OpenBMS.ResistanceHealth"],
            "state_of_certified_energy_percent": h[f"{_HEALTH}.StateOfCertifiedEnergy"],
        },
        "throughput": {
            "charged_kwh": h[f"{_HEALTH}.ChargedEnergy"],
            "discharged_kwh": h[f"{_HEALTH}.DischargedEnergy"],
            "charged_ah": h[f"{_HEALTH}.ChargedCharge"],
            "discharged_ah": h[f"{_HEALTH}.DischargedCharge"],
            "equivalent_full_cycles": h[f"{_HEALTH}.EquivalentFullCycles"],
            "operating_hours": h[f"{_HEALTH}.OperatingTime"] / 3600.0,
        },
        "time_at_temperature_hours": _bands(
            band_labels(TEMPERATURE_EDGES_C, "degC"), h[f"{_HEALTH}.TimeAtTemperature"]
        ),
        "time_at_state_of_charge_hours": _bands(
            band_labels(SOC_EDGES, "%", 100.0), h[f"{_HEALTH}.TimeAtStateOfCharge"]
        ),
        "events": {
            "deep_discharge": {
                "count": h[f"{_HEALTH}.DeepDischargeEvents"],
                "below_soc_percent": 100 * DEEP_DISCHARGE_SOC,
            },
            "over_temperature": {"count": h[f"{_HEALTH}.OverTemperatureEvents"], "above_degc": OVER_TEMPERATURE_C},
        },
        "cell_model": {"name": cell["name"], "provenance": cell["provenance"], "fit": cell["fit"]},
    }


def _bands(labels: list[str], seconds: list[float]) -> list[dict]:
    return [{"band": label, "hours": s / 3600.0} for label, s in zip(labels, seconds)]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
