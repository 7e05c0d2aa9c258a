"""Fleet analytics: the pack's own estimators over a fleet's Parquet telemetry, one vehicle per Dask task.

Telemetry layout (`dataset`), written alike by the fleet simulator and a vehicle's recorder::

    DIR/_fleet.json                                   cell model, series, sensors, sampling, start date
    DIR/vehicle=V0001/day=2026-01-01/part.parquet     one vehicle-day, BDF columns:
        Vehicle, Unix Time / s, Test Time / s, Current / A (+ = charging),
        Cell Voltage 1..S / V, Cell Temperature 1..T / degC
    DIR/_labels.json                                  ground truth (simulated fleets only; never read by analysis)

`analyze` maps `PackMonitor` over vehicles (days in order: the filters carry state), `rank` orders
vehicles by who needs service first, `report` writes HTML, Parquet and JSON.
"""

from .dataset import FleetInfo, read_day, vehicle_days, write_partition

__all__ = ["FleetInfo", "read_day", "vehicle_days", "write_partition"]
