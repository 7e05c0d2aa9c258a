"""Any brand's CAN signals on the standard VSS paths, through a declarative mapping file (in the spirit of
KUKSA's CAN provider mapping): no code per brand.

A mapping file (YAML) names the brand's DBC and, per entry, a VSS path, a DBC message and signal, and a
direction: `in` (the car's signal → VSS, for sensors and for an actuator's actual value) or `out` (a
set request on a VSS actuator → a frame to the car). Numbers convert by the units (the DBC's or the
entry's `unit`, to the catalogue's: km to m is ×1000, a fraction to percent ×100), or by an explicit
`scale` and `offset` (VSS = scale × DBC + offset) where the signal has no unit; enumerations map with
`values` (VSS value → DBC value name or number, or a list of them for `in`). Everything is checked
on load, and a wrong entry is refused with its file and line: an unknown path, message or signal, a
direction a signal cannot have, units that do not convert, a value the DBC or the catalogue lacks.

    bridge = CanBridge(load_mapping("brands/aurora.yaml"), can.Bus(interface="socketcan", channel="can0"), hub)
    bridge.start()   # frames in → hub.publish; hub set requests → frames out
"""

from __future__ import annotations

import difflib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import can
import cantools
import yaml
from cantools.database import Message
from cantools.database.can import Signal

from ..vehicle import vss
from ..vehicle.hub import Commit, Requester, SetResult, SignalHub
from .can import _Reporter

BRANDS_DIR = Path(__file__).resolve().parent / "brands"
_ENTRY_KEYS = {"vss", "message", "signal", "direction", "unit", "scale", "offset", "values"}
# unit → (dimension, factor to the dimension's base unit); VSS units and the usual DBC spellings
_UNITS = {
    "percent": ("ratio", 1.0),
    "%": ("ratio", 1.0),
    "1": ("ratio", 100.0),
    "V": ("voltage", 1.0),
    "A": ("current", 1.0),
    "W": ("power", 1.0),
    "kW": ("power", 1000.0),
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "Wh": ("energy", 1.0),
    "kWh": ("energy", 1000.0),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "Celsius": ("temperature", 1.0),
    "celsius": ("temperature", 1.0),
    "degC": ("temperature", 1.0),
    "°C": ("temperature", 1.0),
}


class MappingError(ValueError):
    """A mapping file that cannot be used; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Entry:
    path: str
    message: Message
    signal: Signal
    direction: str  # in | out
    scale: float = 1.0
    offset: float = 0.0
    values: dict[str, tuple] = field(default_factory=dict)  # VSS wire value → DBC values (names or numbers)
    line: int = 0

    def to_vss(self, dbc_value) -> object:
        """A decoded DBC value as the VSS value (None: a DBC value the mapping does not name)."""
        if self.values:
            return next((v for v, dbc in self.values.items() if str(dbc_value) in map(str, dbc)), None)
        number = self.scale * float(dbc_value) + self.offset
        return round(number) if (vss.node(self.path).datatype or "").startswith(("uint", "int")) else number

    def to_dbc(self, vss_value) -> str | int | float:
        if self.values:
            return self.values[str(vss.to_wire(vss_value))][0]
        return (float(vss_value) - self.offset) / self.scale


@dataclass(frozen=True)
class Mapping:
    brand: str
    db: cantools.database.can.Database
    entries: tuple[Entry, ...]
    source: str


def load_mapping(path: str | Path) -> Mapping:
    """A mapping file and its DBC (relative to the file), every entry checked; MappingError names the line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        root, doc = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not YAML: {exc}") from None
    if not isinstance(doc, dict) or not {"brand", "dbc", "signals"} <= doc.keys():
        raise MappingError(f"{path}:1: expected 'brand', 'dbc' and a list of 'signals'")
    dbc_path = path.parent / str(doc["dbc"])
    try:
        db = cantools.database.load_file(dbc_path)
    except (OSError, cantools.database.UnsupportedDatabaseFormatError) as exc:
        raise MappingError(f"{path}:{_line(root, 'dbc')}: cannot read the DBC {dbc_path}: {exc}") from None
    if not isinstance(db, cantools.database.can.Database):
        raise MappingError(f"{path}:{_line(root, 'dbc')}: {dbc_path} is not a CAN database")
    nodes = next(v for k, v in root.value if k.value == "signals").value
    if not isinstance(doc["signals"], list) or not doc["signals"]:
        raise MappingError(f"{path}:{_line(root, 'signals')}: 'signals' must be a non-empty list")
    entries = tuple(
        _entry(f"{path}:{node.start_mark.line + 1}", db, raw, node.start_mark.line + 1)
        for node, raw in zip(nodes, doc["signals"])
    )
    _check_unique(path, entries)
    return Mapping(str(doc["brand"]), db, entries, str(path))


def _line(root, key: str) -> int:
    return next((k.start_mark.line + 1 for k, _ in root.value if k.value == key), 1)


def _entry(where: str, db, raw: object, line: int) -> Entry:
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: an entry is a mapping of vss, message, signal, direction")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; an entry has {', '.join(sorted(_ENTRY_KEYS))}"
        )
    missing = {"vss", "message", "signal", "direction"} - set(raw)
    if missing:
        raise MappingError(f"{where}: missing {', '.join(sorted(missing))}")
    path = str(raw["vss"])
    try:
        node = vss.node(path)
    except vss.UnknownPath as exc:
        raise MappingError(f"{where}: {exc}") from None
    if not node.is_leaf:
        raise MappingError(f"{where}: {path} is a branch; map its signals")
    direction = raw["direction"]
    if direction not in ("in", "out"):
        raise MappingError(f"{where}: direction must be 'in' (CAN to VSS) or 'out' (VSS to CAN), got {direction!r}")
    if direction == "out" and node.type != "actuator":
        raise MappingError(f"{where}: {path} is a {node.type}; only actuators can be sent to the car (direction out)")
    message = _message(where, db, str(raw["message"]))
    signal = _signal(where, message, str(raw["signal"]))
    if direction == "out" and message.is_multiplexed():
        raise MappingError(f"{where}: {message.name} is multiplexed; a command frame must be one plain message")
    if "values" in raw or node.datatype in ("string", "boolean"):
        return Entry(
            path,
            message,
            signal,
            direction,
            values=_values(where, path, signal, raw.get("values"), direction),
            line=line,
        )
    scale, offset = _scaling(where, path, node, signal, raw)
    return Entry(path, message, signal, direction, scale, offset, line=line)


def _message(where: str, db, name: str) -> Message:
    try:
        return db.get_message_by_name(name)
    except KeyError:
        close = difflib.get_close_matches(name, [m.name for m in db.messages], 3)
        raise MappingError(
            f"{where}: the DBC has no message {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
        ) from None


def _signal(where: str, message: Message, name: str) -> Signal:
    try:
        return message.get_signal_by_name(name)
    except KeyError:
        raise MappingError(
            f"{where}: message {message.name} has no signal {name!r}; it has "
            f"{', '.join(s.name for s in message.signals)}"
        ) from None


def _scaling(where: str, path: str, node: vss.Node, signal: Signal, raw: dict) -> tuple[float, float]:
    """scale and offset from DBC units to the catalogue's, or as given where the units cannot say."""
    dbc_unit = signal.unit or ""
    unit = str(raw.get("unit", dbc_unit))
    if dbc_unit and unit != dbc_unit:
        raise MappingError(f"{where}: the mapping says {signal.name} is in {unit!r}, the DBC says {dbc_unit!r}")
    vss_unit = node.unit or ""
    offset = float(raw.get("offset", 0.0))
    if unit in _UNITS and vss_unit in _UNITS:
        (dim, factor), (vss_dim, vss_factor) = _UNITS[unit], _UNITS[vss_unit]
        if dim != vss_dim:
            raise MappingError(
                f"{where}: mismatched units: {signal.name} is in {unit} ({dim}), {path} in {vss_unit} ({vss_dim})"
            )
        scale = factor / vss_factor
        if "scale" in raw and not math.isclose(float(raw["scale"]), scale):
            raise MappingError(
                f"{where}: scale {raw['scale']} does not convert {unit} to {vss_unit} (that is {scale:g})"
            )
        return scale, offset
    if unit != vss_unit and "scale" not in raw:
        raise MappingError(
            f"{where}: {signal.name} is in {unit or 'no unit'!r} and {path} in {vss_unit or 'no unit'!r}:"
            " say the DBC signal's unit with 'unit:' (one of " + ", ".join(_UNITS) + ") or give 'scale'"
        )
    return float(raw.get("scale", 1.0)), offset


def _values(where: str, path: str, signal: Signal, raw: object, direction: str) -> dict[str, tuple]:
    if not isinstance(raw, dict) or not raw:
        raise MappingError(f"{where}: {path} takes names, not numbers: give 'values' (VSS value: DBC value)")
    choices = {str(c) for c in (signal.choices or {}).values()}
    mapped: dict[str, tuple] = {}
    for vss_value, dbc in raw.items():
        try:
            wire = str(vss.to_wire(vss.coerce(path, str(vss_value))))
        except vss.InvalidValue as exc:
            raise MappingError(f"{where}: {exc}") from None
        dbc_values = tuple(dbc) if isinstance(dbc, list) else (dbc,)
        if direction == "out" and len(dbc_values) != 1:
            raise MappingError(f"{where}: a command sends one DBC value for {vss_value!r}, not a list")
        for value in dbc_values:
            if isinstance(value, str) and value not in choices:
                raise MappingError(
                    f"{where}: {signal.name} has no value {value!r}; it has {', '.join(sorted(choices))}"
                )
            if not isinstance(value, str) and not _fits(signal, value):
                raise MappingError(
                    f"{where}: {value} is outside {signal.name}'s range [{signal.minimum}, {signal.maximum}]"
                )
        mapped[wire] = dbc_values
    return mapped


def _check_unique(path: Path, entries: tuple[Entry, ...]) -> None:
    seen: dict[tuple[str, str], Entry] = {}
    for e in entries:
        first = seen.setdefault((e.path, e.direction), e)
        if first is not e:
            raise MappingError(f"{path}:{e.line}: {e.path} is already mapped {e.direction} on line {first.line}")


class CanBridge(_Reporter):
    """A brand's bus on the hub: mapped frames in are published, set requests on mapped actuators go out."""

    def __init__(self, mapping: Mapping, bus: can.BusABC, hub: SignalHub):
        super().__init__()
        self.mapping, self.bus, self.hub = mapping, bus, hub
        self.inputs: dict[int, list[Entry]] = {}
        for e in mapping.entries:
            if e.direction == "in":
                self.inputs.setdefault(e.message.frame_id, []).append(e)
        self.outputs = {e.path: e for e in mapping.entries if e.direction == "out"}
        # each command message's last sent values, so one set leaves the message's other signals as they were
        self.pending: dict[str, dict[str, Any]] = {
            e.message.name: {s.name: _idle(s) for s in e.message.signals} for e in self.outputs.values()
        }
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"can-bridge-{mapping.brand}", daemon=True)
        hub.set_actuator_handler(self.actuate)

    def start(self) -> CanBridge:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            frame = self.bus.recv(0.1)
            if frame is not None:
                self.receive(frame)

    def receive(self, frame: can.Message) -> None:
        """Publish the mapped signals of one frame; a frame that does not decode is reported and skipped."""
        entries = self.inputs.get(frame.arbitration_id)
        if not entries:
            return
        message = entries[0].message
        try:
            decoded = cast(dict, message.decode(bytes(frame.data), decode_containers=False))
        except (ValueError, cantools.database.DecodeError) as exc:
            self._report(f"{self.mapping.brand} frame 0x{frame.arbitration_id:X} ({message.name}): {exc}")
            return
        values = {}
        for e in entries:
            if e.signal.name in decoded:  # a multiplexed frame carries one page of signals at a time
                value = e.to_vss(decoded[e.signal.name])
                if value is None:
                    self._report(
                        f"{message.name}.{e.signal.name} = {decoded[e.signal.name]} is not in the mapping "
                        f"for {e.path} ({self.mapping.source}:{e.line})"
                    )
                    continue
                values[e.path] = value
        try:
            self.hub.publish(values, frame.timestamp or None)
        except vss.InvalidValue as exc:
            self._report(f"{message.name} not published: {exc}")

    def actuate(self, path: str, value, requester: Requester, commit: Commit) -> SetResult:
        """The hub's actuator handler: one set request, one frame to the car, audited before it is sent (and
        audited again as refused if the bus then fails to take it)."""
        e = self.outputs.get(path)
        if e is None:
            return SetResult(False, None, f"{self.mapping.brand}'s mapping sends nothing for {path}")
        dbc_value = e.to_dbc(value)
        if isinstance(dbc_value, float) and not _fits(e.signal, dbc_value):
            return SetResult(False, None, f"{value} is outside what {e.signal.name} carries")
        values = {**self.pending[e.message.name], e.signal.name: dbc_value}
        try:
            data = e.message.encode(values)
        except ValueError as exc:
            return SetResult(False, None, f"not sent to the car: {exc}")
        result = SetResult(True, value, f"sent to the car as {e.message.name}.{e.signal.name} = {dbc_value}")
        commit(result, None)
        try:
            self.bus.send(
                can.Message(arbitration_id=e.message.frame_id, data=data, is_extended_id=e.message.is_extended_frame)
            )
        except can.CanError as exc:
            failed = SetResult(False, None, f"not sent to the car: {exc}")
            commit(failed, None)
            return failed
        self.pending[e.message.name] = values
        return result


def _fits(signal: Signal, value: float) -> bool:
    """Whether a physical value is within the DBC's range for the signal (an open end where the DBC gives none)."""
    low = -math.inf if signal.minimum is None else signal.minimum
    high = math.inf if signal.maximum is None else signal.maximum
    return low <= value <= high


def _idle(signal: Signal) -> object:
    """What a command signal says before any request: its 'no request' name, or its lowest value."""
    names = [str(c) for c in (signal.choices or {}).values()]
    for idle in ("no_request", "none", "off"):
        if idle in names:
            return idle
    return max(signal.minimum or 0.0, 0.0) if signal.minimum is not None else 0.0
