"""The VSS 6.0 signal catalogue this BMS serves, and the rules every value must meet.

Paths, datatypes and units follow COVESA VSS (`spec/Powertrain/TractionBattery.vspec`).
Where the first sketch of this list differed from VSS, VSS wins:
`NetCapacity` is a uint16 sensor in kWh, `Range` a uint32 in metres, `ChargeLimit` a
uint8 percent, `TimeToComplete` a uint32 in seconds, `CellVoltage.IdMin/IdMax` uint16
(0-based cell index), `ErrorCodes` a string array.

Wire values follow VISS v2: every value travels as a string (arrays as lists of
strings); `coerce` turns a wire or Python value into the catalogue's Python type and
refuses anything that does not fit, with a message that names the path and the rule.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

ROOT = "Vehicle.Powertrain.TractionBattery"
MAX_PATH_LENGTH = 256

_INT_RANGES = {"uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
               "uint64": (0, 2**64 - 1), "int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1),
               "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}
_FLOATS = ("float", "double")


class UnknownPath(LookupError):
    """A path that is not in the catalogue (VISS 404)."""

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidValue(ValueError):
    """A value that does not fit its signal's datatype, range or allowed values (VISS 400)."""


@dataclass(frozen=True)
class Node:
    path: str
    type: str  # branch | sensor | actuator | attribute
    description: str
    datatype: str | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    children: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_leaf(self) -> bool:
        return self.type != "branch"

    def metadata(self) -> dict:
        """VSS-style static metadata (as in the VSS JSON export)."""
        meta: dict = {"type": self.type, "description": self.description}
        for key in ("datatype", "unit", "min", "max", "allowed"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = list(value) if key == "allowed" else value
        return meta


def _leaf(rel, type_, datatype, description, unit=None, min=None, max=None, allowed=None):
    return Node(f"{ROOT}.{rel}", type_, description, datatype, unit, min, max,
                tuple(allowed) if allowed else None)


_BRANCHES = {
    "Vehicle": "High-level vehicle data.",
    "Vehicle.Powertrain": "Powertrain data for battery management, etc.",
    ROOT: "Battery management data.",
    f"{ROOT}.StateOfCharge": "Information on the state of charge of the vehicle's high voltage battery.",
    f"{ROOT}.CellVoltage": "Voltage information for cells in the battery pack.",
    f"{ROOT}.Temperature": "Temperature information for the battery pack.",
    f"{ROOT}.Charging": "Properties related to battery charging.",
    f"{ROOT}.Charging.MaximumChargingCurrent": "Maximum charging current that can be accepted by the system, "
                                               "as measured at the charging inlet.",
    f"{ROOT}.BatteryConditioning": "Properties related to battery conditioning (heating or cooling).",
    f"{ROOT}.OpenBMS": "Overlay: what this BMS knows beyond VSS 6.0 (estimate bounds, power limits, cells).",
    f"{ROOT}.OpenBMS.Health": "The battery's health and usage record (EU 2023/1542 Art. 14 and Annex XIII).",
}

_LEAVES = [
    _leaf("StateOfCharge.Current", "sensor", "float", "Physical state of charge of the high voltage battery, "
          "relative to net capacity.", "percent", 0, 100),
    _leaf("StateOfCharge.Displayed", "sensor", "float", "State of charge displayed to the customer.",
          "percent", 0, 100),
    _leaf("StateOfCharge.CurrentEnergy", "sensor", "float", "Physical state of charge of high voltage battery "
          "expressed in kWh.", "kWh"),
    _leaf("StateOfHealth", "sensor", "float", "Calculated battery state of health at standard conditions.",
          "percent", 0, 100),
    _leaf("CellVoltage.Min", "sensor", "float", "Current voltage of the battery cell with lowest voltage.", "V"),
    _leaf("CellVoltage.Max", "sensor", "float", "Current voltage of the battery cell with highest voltage.", "V"),
    _leaf("CellVoltage.IdMin", "sensor", "uint16", "Identifier (0-based index) of the battery cell with lowest "
          "voltage."),
    _leaf("CellVoltage.IdMax", "sensor", "uint16", "Identifier (0-based index) of the battery cell with highest "
          "voltage."),
    _leaf("CellVoltage.CellVoltages", "sensor", "float[]", "Array of cell voltages, by relative position."),
    _leaf("Temperature.Average", "sensor", "float", "Current average temperature of the battery cells.", "celsius"),
    _leaf("Temperature.Min", "sensor", "float", "Current minimum temperature of the battery cells.", "celsius"),
    _leaf("Temperature.Max", "sensor", "float", "Current maximum temperature of the battery cells.", "celsius"),
    _leaf("CurrentVoltage", "sensor", "float", "Current voltage of the battery.", "V"),
    _leaf("CurrentCurrent", "sensor", "float", "Current flowing in/out of battery. Positive = flowing in to "
          "battery, e.g. during charging.", "A"),
    _leaf("CurrentPower", "sensor", "float", "Electrical power flowing in/out of battery. Positive = flowing in "
          "to battery, e.g. during charging.", "W"),
    _leaf("NetCapacity", "sensor", "uint16", "Total net capacity of the battery considering aging.", "kWh"),
    _leaf("Range", "sensor", "uint32", "Remaining range in meters using only battery.", "m"),
    _leaf("ErrorCodes", "sensor", "string[]", "Current error codes related to the battery, if any."),
    _leaf("Charging.IsCharging", "sensor", "boolean", "True if charging is ongoing."),
    _leaf("Charging.ChargeLimit", "actuator", "uint8", "Target charge limit (state of charge) for battery.",
          "percent", 0, 100),
    _leaf("Charging.StartStopCharging", "actuator", "string", "Start or stop the charging process.",
          allowed=("START", "STOP")),
    _leaf("Charging.TimeToComplete", "sensor", "uint32", "The time needed for the current charging process to "
          "reach Charging.ChargeLimit; 0 if charging is complete or no charging process is active.", "s"),
    _leaf("Charging.MaximumChargingCurrent.DC", "sensor", "float", "Maximum DC charging current at inlet that can "
          "be accepted by the system.", "A"),
    _leaf("BatteryConditioning.RequestedMode", "actuator", "string", "Defines requested mode for battery "
          "conditioning.", allowed=("INACTIVE", "FAST_CHARGING_PREPARATION", "DRIVING_PREPARATION")),
    # The overlay (VSS allows vendor branches): an app may ignore it and still see the standard signals.
    _leaf("OpenBMS.StateOfChargeBound", "sensor", "float", "Three-sigma bound of StateOfCharge.Current: the true "
          "state of charge lies within plus or minus this.", "percent", 0, 100),
    _leaf("OpenBMS.ResistanceHealth", "sensor", "float", "Internal resistance relative to the fresh cell's "
          "(100 = as new; higher is worse).", "percent", 0),
    _leaf("OpenBMS.MaxChargePower", "sensor", "float", "Charge power the pack accepts for the next 10 s.", "W", 0),
    _leaf("OpenBMS.MaxDischargePower", "sensor", "float", "Discharge power the pack delivers for the next 10 s.",
          "W", 0),
    _leaf("OpenBMS.CellStateOfCharge", "sensor", "float[]", "Estimated state of charge of each cell, in percent, "
          "by relative position."),
    _leaf("OpenBMS.CellTemperatures", "sensor", "float[]", "Temperature sensors along the string, in celsius (-273.15: no reading)."),
    _leaf("OpenBMS.BalancingCells", "sensor", "uint16[]", "0-based indexes of the cells being balanced now."),
    _leaf("OpenBMS.WeakestCell", "sensor", "uint16", "0-based index of the cell that empties first."),
    _leaf("OpenBMS.Events", "sensor", "string[]", "Recent safety events, newest last, each a JSON object with "
          "time_s, kind, severity, cell (1-based), explanation."),
    _leaf("OpenBMS.ChargingState", "sensor", "string", "What the charge controller does and why.",
          ),
    # The battery's health and usage record (EU 2023/1542 Art. 14, Annex XIII): what the `health` purpose reads.
    _leaf("OpenBMS.Health.Capacity", "sensor", "float", "Learned capacity of the cells (rated capacity times the state of health).", "Ah", 0),
    _leaf("OpenBMS.Health.StateOfCertifiedEnergy", "sensor", "float", "Usable energy now (a full pack at a C/3 "
          "discharge) relative to the certified usable energy of the new battery.", "percent", 0),
    _leaf("OpenBMS.Health.CertifiedEnergy", "sensor", "float", "Certified usable energy of the new battery.", "kWh",
          0),
    _leaf("OpenBMS.Health.ChargedEnergy", "sensor", "float", "Energy charged into the battery over its life.",
          "kWh", 0),
    _leaf("OpenBMS.Health.DischargedEnergy", "sensor", "float", "Energy discharged from the battery over its life.",
          "kWh", 0),
    _leaf("OpenBMS.Health.ChargedCharge", "sensor", "float", "Charge throughput into the battery over its life.",
          "Ah", 0),
    _leaf("OpenBMS.Health.DischargedCharge", "sensor", "float", "Charge throughput out of the battery over its "
          "life.", "Ah", 0),
    _leaf("OpenBMS.Health.EquivalentFullCycles", "sensor", "float", "Discharged charge over the rated capacity: "
          "the number of full cycles the battery's use amounts to.", min=0),
    _leaf("OpenBMS.Health.OperatingTime", "sensor", "float", "Time the BMS has seen the battery in use.", "s", 0),
    _leaf("OpenBMS.Health.TimeAtTemperature", "sensor", "float[]", "Time with the hottest sensor in each band, in "
          "seconds: below 0, 0-10, 10-25, 25-35, 35-45, above 45 celsius."),
    _leaf("OpenBMS.Health.TimeAtStateOfCharge", "sensor", "float[]", "Time in each state of charge band, in "
          "seconds: 0-10, 10-20, ..., 90-100 percent."),
    _leaf("OpenBMS.Health.DeepDischargeEvents", "sensor", "uint32", "Times the battery went below 5 percent state "
          "of charge."),
    _leaf("OpenBMS.Health.OverTemperatureEvents", "sensor", "uint32", "Times the hottest sensor went above 45 "
          "celsius."),
]


def _build() -> dict[str, Node]:
    children: dict[str, list[str]] = {path: [] for path in _BRANCHES}
    for path in [*_BRANCHES, *(leaf.path for leaf in _LEAVES)]:
        parent = path.rpartition(".")[0]
        if parent:
            children[parent].append(path)
    nodes = {path: Node(path, "branch", text, children=tuple(children[path])) for path, text in _BRANCHES.items()}
    nodes.update((leaf.path, leaf) for leaf in _LEAVES)
    return nodes


CATALOGUE: dict[str, Node] = _build()
LEAVES: tuple[str, ...] = tuple(leaf.path for leaf in _LEAVES)
# What the read-only `health` purpose covers: state of health by capacity and resistance, and the record.
HEALTH_LEAVES: tuple[str, ...] = (f"{ROOT}.StateOfHealth", f"{ROOT}.OpenBMS.ResistanceHealth",
                                  *(p for p in LEAVES if p.startswith(f"{ROOT}.OpenBMS.Health.")))


def normalize_path(path: object) -> str:
    """VISS allows `/` or `.` as separator; the catalogue uses `.`."""
    if not isinstance(path, str) or not path:
        raise InvalidValue(f"path must be a non-empty string, got {path!r}")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidValue(f"path is {len(path)} characters long; at most {MAX_PATH_LENGTH} are accepted")
    return path.strip("/").replace("/", ".")


def request_path(path: object) -> str:
    """The path of a request: `normalize_path`, refusing wildcards (VISS: they belong in a paths filter)."""
    normalized = normalize_path(path)
    if "*" in normalized:
        raise InvalidValue(f"a request path must not contain wildcards (*), got {path!r}: address the branch and put "
                           'the pattern in a paths filter, e.g. {"type": "paths", "parameter": "*.Min"}')
    return normalized


def node(path: str) -> Node:
    try:
        return CATALOGUE[path]
    except KeyError:
        raise UnknownPath(f"{path!r} is not a signal or branch of this vehicle (see {ROOT})") from None


def covers(scope_path: str, path: str) -> bool:
    """A branch covers itself and every node below it."""
    return path == scope_path or path.startswith(scope_path + ".")


def leaves_under(path: str) -> list[str]:
    """The leaves a path stands for: itself, every leaf below a branch, or the leaves matching `*` segments."""
    if "*" in path:
        pattern = path.split(".")
        found = [p for p in CATALOGUE if len(p.split(".")) == len(pattern)
                 and all(fnmatch.fnmatchcase(s, q) for s, q in zip(p.split("."), pattern))]
        if not found:
            raise UnknownPath(f"no signal matches {path!r}")
        return sorted({leaf for p in found for leaf in leaves_under(p)}, key=LEAVES.index)
    node(path)
    return [leaf for leaf in LEAVES if covers(path, leaf)]


def select(path: str, relative_paths: list[str] | None = None) -> list[str]:
    """The leaves of a request: `path`, or with a VISS `paths` filter, each relative path below it."""
    if relative_paths is None:
        return leaves_under(path)
    if not isinstance(relative_paths, list) or not relative_paths:
        raise InvalidValue("a 'paths' filter value must be a non-empty list of paths relative to the request path")
    selected: list[str] = []
    for relative in relative_paths:
        for leaf in leaves_under(f"{path}.{normalize_path(relative)}"):
            if leaf not in selected:
                selected.append(leaf)
    return selected


def coerce(path: str, value: object) -> object:
    """The value as the signal's Python type (wire strings accepted), or InvalidValue naming the rule broken."""
    n = node(path)
    if not n.is_leaf:
        raise InvalidValue(f"{path} is a branch; only its signals carry values")
    if n.datatype.endswith("[]"):
        if not isinstance(value, (list, tuple)):
            raise InvalidValue(f"{path} is {n.datatype}: expected a list, got {value!r}")
        return [_scalar(n, n.datatype[:-2], item) for item in value]
    return _scalar(n, n.datatype, value)


def _scalar(n: Node, datatype: str, value: object) -> object:
    expected = f"{n.path} is {datatype}"
    if datatype == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidValue(f"{expected}: expected true or false, got {value!r}")
    if datatype == "string":
        if not isinstance(value, str):
            raise InvalidValue(f"{expected}: expected a string, got {value!r}")
        if n.allowed and value not in n.allowed:
            raise InvalidValue(f"{n.path} accepts {', '.join(n.allowed)}; got {value!r}")
        return value
    if isinstance(value, bool):
        raise InvalidValue(f"{expected}: expected a number, got {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise InvalidValue(f"{expected}: expected a number, got {value!r}") from None
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        raise InvalidValue(f"{expected}: expected a finite number, got {value!r}")
    if datatype in _INT_RANGES:
        if number != int(number):
            raise InvalidValue(f"{expected}: expected a whole number, got {value!r}")
        number = int(number)
        low, high = _INT_RANGES[datatype]
        if not low <= number <= high:
            raise InvalidValue(f"{expected}: {number} is outside [{low}, {high}]")
    else:
        number = float(number)
    if (n.min is not None and number < n.min) or (n.max is not None and number > n.max):
        unit = f" {n.unit}" if n.unit else ""
        raise InvalidValue(f"{n.path} must be within [{n.min:g}, {n.max:g}]{unit}; got {value!r}")
    return number


def to_wire(value: object) -> object:
    """VISS v2 carries values as strings, arrays as lists of strings."""
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def metadata(path: str, keys: tuple[str, ...] | None = None, only: list[str] | None = None) -> dict:
    """Static metadata of a node and, for a branch, of its subtree, keyed by name as in VSS JSON: every key, or
    the `keys` asked for; every node, or those on the way to the leaves `only` (a paths filter selects)."""
    n = node(path)
    meta = {key: value for key, value in n.metadata().items() if keys is None or key in keys}
    if not n.is_leaf:
        meta["children"] = {child.rpartition(".")[2]: metadata(child, keys, only)[child.rpartition(".")[2]]
                            for child in n.children if only is None or any(covers(child, leaf) for leaf in only)}
    return {path.rpartition(".")[2]: meta}
