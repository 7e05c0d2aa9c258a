"""The BMS on a CAN bus: measurements in, state, limits and alarms out, as laid down in `openbms.dbc`.

python-can moves the frames and cantools encodes and decodes them from the shipped DBC, so any
DBC-aware tool reads the bus exactly as the BMS does. Every scaled signal's all-ones raw value is
the DBC choice `not_available`: NaN on our side, in both directions.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from functools import cache
from importlib import resources

import can
import cantools
import numpy as np
from cantools.database import DecodeError, Message, Signal
from cantools.database.namedsignalvalue import NamedSignalValue

from .sample import BmsOutput, Sample

log = logging.getLogger(__name__)
NOT_AVAILABLE = "not_available"
STALE_PERIODS = 3  # a reading not refreshed for this many cell-frame cycles is NaN, never its last value
ALARM_BITS = {  # DBC alarm bit → the event kinds (see safety) it stands for; any other kind sets Alarm_Other
    "Alarm_Overvoltage": {"overvoltage"},
    "Alarm_Undervoltage": {"undervoltage"},
    "Alarm_Overtemperature": {"overtemperature"},
    "Alarm_Undertemperature": {"undertemperature"},
    "Alarm_Overcurrent": {"overcurrent_charge", "overcurrent_discharge"},
    "Alarm_Internal_Short": {"internal_short", "voltage_collapse"},
    "Alarm_Thermal_Runaway": {"thermal_runaway", "abnormal_heating"},
    "Alarm_Sensor_Fault": {"sensor_fault"},
    "Alarm_Contactor_Fault": {"contactor_welded", "contactor_failed_to_close", "precharge_failed", "contactors_opened"},
}


@cache
def load_dbc() -> cantools.database.can.Database:
    """The DBC shipped in the package, parsed once (it has some 350 signals). Shared: do not modify it."""
    text = resources.files(__package__).joinpath("openbms.dbc").read_text(encoding="utf-8")
    return cantools.database.load_string(text, database_format="dbc")


def open_bus(spec: str) -> can.BusABC:
    """A python-can bus from "INTERFACE:CHANNEL", e.g. "socketcan:can0" or "virtual:vcan0"."""
    interface, sep, channel = spec.partition(":")
    if not (sep and interface and channel):
        raise ValueError(f"CAN bus {spec!r}: expected INTERFACE:CHANNEL, e.g. socketcan:can0 or virtual:vcan0")
    if interface not in can.VALID_INTERFACES:
        raise ValueError(
            f"CAN bus {spec!r}: python-can has no interface {interface!r}; it has "
            f"{', '.join(sorted(can.VALID_INTERFACES))}"
        )
    try:
        return can.Bus(interface=interface, channel=channel)
    except (can.CanError, OSError, ImportError) as exc:
        raise ValueError(f"CAN bus {spec!r}: cannot open {interface} channel {channel!r}: {exc}") from exc


def encode_sample(sample: Sample) -> list[can.Message]:
    """The frames of one measurement cycle, Pack_Measurement last because it closes the sample at the receiver.

    The inverse of CanSource. A Sample carries neither the pack voltage nor the charger's maximum current:
    the pack voltage is sent as the sum of the cells (not_available while any is missing), the charger's
    maximum as not_available. Each frame is stamped with the sample's time, which buses and log files
    that keep timestamps (e.g. virtual with preserve_timestamps) pass on to the receiver.
    """
    t = sample.time_s
    v = np.asarray(sample.cell_voltage_v, dtype=float)
    frames = _group_frames("Cell_Voltages", v, "cells", t) + _group_frames(
        "Cell_Temperatures", sample.temperature_c, "temperature sensors", t
    )
    frames.append(
        _frame("Charger_Status", {"Charger_Plugged_In": int(sample.plugged_in), "Charger_Max_Current": math.nan}, t)
    )
    frames.append(_frame("Vehicle_Speed", {"Vehicle_Speed": sample.speed_kmh}, t))
    frames.append(_frame("Pack_Measurement", {"Pack_Current": sample.current_a, "Pack_Voltage": float(v.sum())}, t))
    return frames


class _Reporter:
    """Counts, keeps and logs problems with frames: the BMS loop must outlive any one bad frame."""

    def __init__(self) -> None:
        self.error_count = 0
        self.errors: deque[str] = deque(maxlen=100)  # the latest problems, oldest first

    def _report(self, text: str) -> None:
        self.error_count += 1
        self.errors.append(text)
        log.warning("%s", text)


class CanSource(_Reporter):
    """Samples from a bus: each Pack_Measurement frame closes one sample, stamped with its receive time.

    The sample holds the latest cell voltages, temperatures, charger and speed frames; a reading older than
    STALE_PERIODS cycles of the cell frames is missing (NaN; charger: unplugged; speed: 0), so a lost cell
    monitoring unit shows up instead of its last values. Frames of unknown ID are ignored; a frame with a
    wrong length, an unknown group or readings for cells this pack lacks is reported and skipped.
    """

    def __init__(self, bus: can.BusABC, n_cells: int, n_sensors: int, period_s: float | None = None):
        """period_s: the cycle of the cell and temperature frames; None takes the DBC's GenMsgCycleTime."""
        super().__init__()
        db = load_dbc()
        self.cell_signals = _channels("Cell_Voltages", n_cells, "cells")
        self.sensor_signals = _channels("Cell_Temperatures", n_sensors, "temperature sensors")
        self.bus, self.series, self.sensors = bus, n_cells, n_sensors
        cycle_s = db.get_message_by_name("Cell_Voltages").cycle_time / 1000.0
        self.stale_after_s = STALE_PERIODS * (cycle_s if period_s is None else period_s)
        names = ("Pack_Measurement", "Charger_Status", "Vehicle_Speed", "Cell_Voltages", "Cell_Temperatures")
        self.messages = {m.frame_id: m for m in map(db.get_message_by_name, names)}
        self.wanted = {
            *self.cell_signals,
            *self.sensor_signals,
            *(s.name for m in self.messages.values() if not m.is_multiplexed() for s in m.signals),
        }
        self.latest: dict[str, tuple[float, float]] = {}  # signal → (receive time, value)

    def next_sample(self, timeout_s: float | None = 5.0) -> Sample | None:
        """The next sample; None when none was completed within timeout_s (None: wait for ever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            frame = self.bus.recv(left)
            if frame is None:
                return None
            sample = self._take(frame)
            if sample is not None:
                return sample
            if left == 0.0:
                return None

    def apply(self, output: BmsOutput, bleed_a, conditioning: str) -> None:
        """The BMS loop's feedback hook: on CAN the vehicle hears the BMS through CanSink's frames instead."""

    def _take(self, frame: can.Message) -> Sample | None:
        message = None if frame.is_extended_id else self.messages.get(frame.arbitration_id)
        if message is None:
            return None
        try:
            values = self._decode(frame, message)
        except (ValueError, DecodeError) as exc:
            self._report(f"CAN frame 0x{frame.arbitration_id:03X} ({message.name}) at t={frame.timestamp:.3f} s: {exc}")
            return None
        t = frame.timestamp
        self.latest.update((name, (t, x)) for name, x in values.items() if name in self.wanted)
        if message.name != "Pack_Measurement":
            return None
        speed = self._reading("Vehicle_Speed", t)
        return Sample(
            t,
            values["Pack_Current"],
            np.array([self._reading(name, t) for name in self.cell_signals]),
            np.array([self._reading(name, t) for name in self.sensor_signals]),
            plugged_in=self._reading("Charger_Plugged_In", t) == 1.0,
            speed_kmh=0.0 if math.isnan(speed) else speed,
        )

    def _decode(self, frame: can.Message, message: Message) -> dict[str, float]:
        """Signal values of a frame, NaN where not_available; ValueError for what this pack cannot take."""
        if len(frame.data) != message.length:
            raise ValueError(f"{len(frame.data)} data bytes, the DBC says {message.length}")
        if message.is_multiplexed():
            mux_name, groups = _mux(message)
            mux = message.get_signal_by_name(mux_name)
            group = int.from_bytes(frame.data, "little") >> mux.start & ((1 << mux.length) - 1)
            if group not in groups:
                raise ValueError(f"{mux_name} {group} is not in the DBC (0 to {max(groups)})")
        values = {
            name: math.nan if isinstance(x, NamedSignalValue) else float(x)
            for name, x in message.decode(frame.data).items()
            if not message.get_signal_by_name(name).is_multiplexer
        }
        extra = [f"{name} = {x:g}" for name, x in values.items() if name not in self.wanted and not math.isnan(x)]
        if extra:
            raise ValueError(
                f"{', '.join(extra)}, but this pack has {self.series} cells and {self.sensors} temperature sensors"
            )
        return values

    def _reading(self, signal: str, now_s: float) -> float:
        heard_s, value = self.latest.get(signal, (-math.inf, math.nan))
        return value if now_s - heard_s <= self.stale_after_s else math.nan


class CanBusSource(CanSource):
    """`openbms serve --source can:INTERFACE:CHANNEL`: a CanSource on that bus and, for the loop, a CanSink on it."""

    def __init__(self, spec: str, n_cells: int, n_sensors: int, period_s: float | None = None):
        super().__init__(open_bus(spec), n_cells, n_sensors, period_s)
        self.sink = CanSink(self.bus)


class CanSink(_Reporter):
    """Sends the BMS's alarm, state, limits and charge-request frames.

    A frame that cannot be encoded (a value outside what its signal carries) or sent is reported and
    skipped, not raised: the BMS keeps running and the other frames, the alarms first, keep flowing.
    """

    def __init__(self, bus: can.BusABC):
        super().__init__()
        self.bus = bus

    def send(self, output: BmsOutput, active_alarm_kinds: Iterable[str] | None = None) -> None:
        """active_alarm_kinds: event kinds (safety); None takes output.alarms."""
        kinds = set(output.alarms if active_alarm_kinds is None else active_alarm_kinds)
        known = set().union(*ALARM_BITS.values())
        alarms = {bit: int(bool(kinds & members)) for bit, members in ALARM_BITS.items()}
        frames = {
            "BMS_Alarms": alarms | {"Alarm_Other": int(bool(kinds - known))},
            "BMS_State": {
                "SOC": 100 * output.soc,
                "SOH_Capacity": 100 * output.soh_capacity,
                "SOH_Resistance": 100 * output.soh_resistance,
                "Contactor_State": output.contactor_state,
                "Worst_Severity": output.worst_severity,
            },
            "BMS_Limits": {
                "Max_Charge_Current": output.max_charge_current_a,
                "Max_Discharge_Current": output.max_discharge_current_a,
                "Max_Charge_Power": output.max_charge_power_w,
                "Max_Discharge_Power": output.max_discharge_power_w,
            },
            "BMS_Charge_Request": {"Charge_Request_Current": output.charge_request_a},
        }
        for name, values in frames.items():
            try:
                self.bus.send(_frame(name, values, output.time_s))
            except (ValueError, can.CanError) as exc:
                self._report(f"{name} at t={output.time_s:.3f} s not sent: {exc}")


def _frame(name: str, values: dict, time_s: float) -> can.Message:
    message = load_dbc().get_message_by_name(name)
    data = message.encode({k: _physical(message.get_signal_by_name(k), x) for k, x in values.items()})
    return can.Message(timestamp=time_s, arbitration_id=message.frame_id, data=data, is_extended_id=False)


def _physical(signal: Signal, value):
    """What cantools should encode: NaN becomes not_available; a value the signal cannot carry is an error,
    never clipped."""
    choices = [str(c) for _, c in sorted((signal.choices or {}).items())]
    if isinstance(value, str):
        if value not in choices:
            raise ValueError(f"{signal.name} = {value!r} is none of {', '.join(choices)}")
        return value
    if math.isnan(value) and NOT_AVAILABLE in choices:
        return NOT_AVAILABLE
    if not signal.minimum <= value <= signal.maximum:  # NaN included
        raise ValueError(
            f"{signal.name} = {value:g} {signal.unit or ''} is outside what the DBC carries "
            f"({signal.minimum:g} to {signal.maximum:g})"
        )
    return value


def _group_frames(name: str, values, what: str, time_s: float) -> list[can.Message]:
    """One frame per group that holds any of the values (channel i + 1 is values[i]); NaN is not_available."""
    values = np.asarray(values, dtype=float)
    value_of = dict(zip(_channels(name, len(values), what), values))
    mux, groups = _mux(load_dbc().get_message_by_name(name))
    return [
        _frame(name, {mux: group} | {s: value_of.get(s, math.nan) for s in members}, time_s)
        for group, members in groups.items()
        if any(s in value_of for s in members)
    ]


def _mux(message: Message) -> tuple[str, dict[int, list[str]]]:
    """The group signal of a multiplexed message and, per group, the names of the signals it carries."""
    ((mux, groups),) = message.signal_tree[0].items()
    return mux, groups


def _channels(name: str, n: int, what: str) -> list[str]:
    """The signal names of channels 1..n of a grouped message, in order; n must fit the DBC."""
    names = sorted(
        (s for members in _mux(load_dbc().get_message_by_name(name))[1].values() for s in members), key=_index
    )
    if not 1 <= n <= len(names):
        raise ValueError(f"{n} {what}, but {name} in openbms.dbc carries 1 to {len(names)}")
    return names[:n]


def _index(signal_name: str) -> int:
    """0-based channel of a grouped signal: Cell_17_Voltage → 16, Sensor_3_Temperature → 2."""
    return int(signal_name.split("_")[1]) - 1
