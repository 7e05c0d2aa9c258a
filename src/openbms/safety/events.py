"""The one record every check and detector reports: what happened, when, to which cell, how bad, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Ascending: a warning informs, a derate lowers the current limits, critical opens the contactors or raises the alarm.
SEVERITIES = ("info", "warning", "derate", "critical")


@dataclass(frozen=True)
class Event:
    time_s: float
    kind: str  # e.g. overvoltage, overtemperature, overcurrent_charge, sensor_fault, internal_short, thermal_runaway
    severity: str
    explanation: str
    cell: int | None = None  # 1-based, where one cell is concerned
    sensor: int | None = None  # 1-based temperature sensor, where one sensor is concerned
    value: float | None = None  # the measured or estimated quantity behind the event, in the unit the text names
    cleared: bool = False  # True: the condition has recovered

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"event severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.cell is not None and self.cell < 1:
            raise ValueError(f"event cell numbers start at 1, got {self.cell}")

    def record(self) -> dict:
        """JSON-ready: a line of events.jsonl, a VISS ErrorCodes entry, an alarm in the dashboard."""
        return {
            k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(self).items() if v is not None
        }  # a lost reading's value is null: JSON has no NaN


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)
