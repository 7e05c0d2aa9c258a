"""Battery Data Format (BDF) column labels and cycler column maps.

Every reader turns a file into a DataFrame with these labels, SI units and
positive current = charging, so nothing downstream knows which cycler wrote it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

TIME = "Test Time / s"
CURRENT = "Current / A"
VOLTAGE = "Voltage / V"
CELL_TEMPERATURE = "Surface Temperature T1 / degC"
AMBIENT_TEMPERATURE = "Ambient Temperature / degC"
UNIX_TIME = "Unix Time / s"
STEP_INDEX = "Step Index / 1"
CHARGE_CAPACITY = "Charging Capacity / Ah"
DISCHARGE_CAPACITY = "Discharging Capacity / Ah"

# Labels this project wrote before it took the BDF package's names; still read.
LEGACY_LABELS = {"Temperature T1 / degC": CELL_TEMPERATURE}

REQUIRED = (TIME, CURRENT, VOLTAGE)
TEMPERATURES = (CELL_TEMPERATURE, AMBIENT_TEMPERATURE)
KNOWN = REQUIRED + (
    CELL_TEMPERATURE,
    AMBIENT_TEMPERATURE,
    UNIX_TIME,
    STEP_INDEX,
    CHARGE_CAPACITY,
    DISCHARGE_CAPACITY,
)

CHARGE_POSITIVE = "charge-positive"
DISCHARGE_POSITIVE = "discharge-positive"
SIGNS = (CHARGE_POSITIVE, DISCHARGE_POSITIVE)


@dataclass(frozen=True)
class ColumnMap:
    """How one cycler's columns become BDF columns.

    `columns` maps a source column name to a BDF label; `scale` multiplies a
    source column into the BDF unit (e.g. 0.001 for a mA column); `current_sign`
    states the file's own convention, because a sign is never guessed.
    """

    name: str
    columns: dict[str, str]
    scale: dict[str, float] = field(default_factory=dict)
    current_sign: str = CHARGE_POSITIVE

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns.values()) - set(KNOWN))
        if unknown:
            raise ValueError(f"column map {self.name!r}: {unknown} are not BDF labels; expected some of {list(KNOWN)}")
        if self.current_sign not in SIGNS:
            raise ValueError(
                f"column map {self.name!r}: current_sign must be one of {SIGNS}, got {self.current_sign!r}"
            )
        if not isinstance(self.scale, dict):
            raise ValueError(f'column map {self.name!r}: "scale" must be an object of column: factor')
        stray = sorted(set(self.scale) - set(self.columns))
        if stray:
            raise ValueError(f"column map {self.name!r}: scale given for unmapped columns {stray}")
        not_numbers = {
            k: v
            for k, v in self.scale.items()
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v == 0
        }
        if not_numbers:
            raise ValueError(
                f"column map {self.name!r}: scale factors must be finite non-zero numbers, got {not_numbers}"
            )

    @classmethod
    def from_json(cls, path: str | Path) -> "ColumnMap":
        """A user's map: {"columns": {...}, "scale": {...}, "current_sign": "..."}."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read column map: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("columns"), dict):
            raise ValueError(f'{path}: a column map is a JSON object with a "columns" object')
        extra = sorted(set(doc) - {"columns", "scale", "current_sign"})
        if extra:
            raise ValueError(f"{path}: unknown keys {extra} in column map")
        return cls(
            name=path.name,
            columns=doc["columns"],
            scale=doc.get("scale", {}),
            current_sign=doc.get("current_sign", CHARGE_POSITIVE),
        )


ARBIN = ColumnMap(
    name="arbin",
    columns={
        "Test_Time(s)": TIME,
        "Step_Index": STEP_INDEX,
        "Current(A)": CURRENT,
        "Voltage(V)": VOLTAGE,
        "Charge_Capacity(Ah)": CHARGE_CAPACITY,
        "Discharge_Capacity(Ah)": DISCHARGE_CAPACITY,
    },
)

ESC_DYNAMIC = ColumnMap(
    name="esc-dynamic",
    columns={
        "time": TIME,
        "step": STEP_INDEX,
        "current": CURRENT,
        "voltage": VOLTAGE,
        "chgAh": CHARGE_CAPACITY,
        "disAh": DISCHARGE_CAPACITY,
    },
    current_sign=DISCHARGE_POSITIVE,
)

PYBAMM = ColumnMap(  # PyBaMM's Solution.save_data with these variables; its current is + = discharge
    name="pybamm",
    columns={"Time [s]": TIME, "Current [A]": CURRENT, "Voltage [V]": VOLTAGE},
    current_sign=DISCHARGE_POSITIVE,
)

BIOLOGIC = ColumnMap(  # EC-Lab's names in an .mpr file (through galvani); + = oxidation = charging the cell
    name="biologic",
    columns={
        "time/s": TIME,
        "I/mA": CURRENT,
        "Ewe/V": VOLTAGE,
        "Ns": STEP_INDEX,
        "Q charge/mA.h": CHARGE_CAPACITY,
        "Q discharge/mA.h": DISCHARGE_CAPACITY,
        "Temperature/°C": CELL_TEMPERATURE,
    },
    scale={"I/mA": 0.001, "Q charge/mA.h": 0.001, "Q discharge/mA.h": 0.001},
)

BDF = ColumnMap(name="bdf", columns={label: label for label in KNOWN} | LEGACY_LABELS)

PRESETS = {m.name: m for m in (BDF, ARBIN, ESC_DYNAMIC, PYBAMM, BIOLOGIC)}


def detect(header: list[str]) -> ColumnMap | None:
    """The preset whose required source columns all appear in `header`."""
    present = set(header)
    for preset in PRESETS.values():
        needed = {src for src, label in preset.columns.items() if label in REQUIRED}
        if needed <= present:
            return preset
    return None
