"""The CAN side on python-can's virtual bus, checked with cantools against the shipped DBC."""

from __future__ import annotations

import uuid

import can
import numpy as np
import pytest

from openbms.runtime.can import CanBusSource, CanSink, CanSource, encode_sample, load_dbc, open_bus
from openbms.runtime.sample import BmsOutput, Sample

CELLS, SENSORS = 100, 8


@pytest.fixture
def buses():
    """A vehicle-side bus that keeps the frames' own timestamps (sample times) and the BMS-side bus."""
    channel = f"openbms-test-{uuid.uuid4()}"
    vehicle = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    bms = can.Bus(interface="virtual", channel=channel)
    yield vehicle, bms
    vehicle.shutdown()
    bms.shutdown()


def sample(time_s: float = 1000.0, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    v = rng.uniform(2.9, 3.6, CELLS)
    v[41] = np.nan  # one cell without a reading
    return Sample(time_s, -123.456, v, rng.uniform(-20.0, 65.0, SENSORS), plugged_in=True, speed_kmh=87.65)


def send(bus: can.BusABC, frames: list[can.Message]) -> None:
    for frame in frames:
        bus.send(frame)


def test_dbc_fits_classic_can_and_documents_every_signal():
    db = load_dbc()
    assert {m.name: m.frame_id for m in db.messages} == {
        "BMS_Alarms": 0x100,
        "BMS_State": 0x101,
        "BMS_Limits": 0x102,
        "BMS_Charge_Request": 0x103,
        "Pack_Measurement": 0x110,
        "Charger_Status": 0x120,
        "Vehicle_Speed": 0x130,
        "Cell_Voltages": 0x300,
        "Cell_Temperatures": 0x310,
    }
    for m in db.messages:
        assert m.length <= 8 and not m.is_extended_frame and m.cycle_time and m.comment
        for s in m.signals:
            assert s.comment, s.name
            assert s.unit is None or s.unit in s.comment, s.name
    names = {s.name for m in db.messages for s in m.signals}
    assert "Cell_255_Voltage" in names and "Cell_256_Voltage" not in names
    assert "Sensor_64_Temperature" in names and "Sensor_65_Temperature" not in names
    current = db.get_message_by_name("Pack_Measurement").get_signal_by_name("Pack_Current")
    assert "positive = charging" in current.comment


def test_wire_layout_by_hand():
    """Bytes as the DBC defines them, read without cantools: little-endian raw values, all-ones = no reading."""
    s = Sample(0.0, -1.5, np.array([3.3, np.nan, 0.0]), np.array([25.0]), speed_kmh=0.0)
    frames = {f.arbitration_id: bytes(f.data) for f in encode_sample(s)}
    assert frames[0x300] == bytes([0]) + (3300).to_bytes(2, "little") + b"\xff\xff" + b"\x00\x00"
    assert frames[0x310][:3] == bytes([0, 650 & 0xFF, 0xF0 | 650 >> 8])  # 25 degC = raw 650; sensor 2 = 0xFFF
    assert int.from_bytes(frames[0x110][:3], "little", signed=True) == -1500  # -1.5 A at 1 mA
    assert frames[0x110][3:] == b"\xff\xff"  # pack voltage unknown while a cell is missing


def test_round_trip_on_the_virtual_bus(buses):
    vehicle, bms = buses
    source = CanSource(bms, CELLS, SENSORS)
    sent = sample()
    frames = encode_sample(sent)
    assert len(frames) == 34 + 2 + 3  # 100 cells at 3 a frame, 8 sensors at 4, charger, speed, pack
    assert frames[-1].arbitration_id == 0x110  # the pack frame closes the sample
    db = load_dbc()
    for frame in frames:  # cantools as the reference reads the same values back
        db.decode_message(frame.arbitration_id, frame.data)
    send(vehicle, frames)
    got = source.next_sample(timeout_s=2.0)
    assert got is not None and source.error_count == 0
    assert got.time_s == sent.time_s
    assert got.current_a == pytest.approx(sent.current_a, abs=0.0005)
    np.testing.assert_allclose(got.cell_voltage_v, sent.cell_voltage_v, atol=0.0005)  # NaN where NaN
    np.testing.assert_allclose(got.temperature_c, sent.temperature_c, atol=0.05)
    assert got.plugged_in and got.speed_kmh == pytest.approx(87.65, abs=0.005)
    assert source.next_sample(timeout_s=0.05) is None  # nothing more on the bus


def test_output_frames_decode_back(buses):
    vehicle, bms = buses
    sink = CanSink(bms)
    out = BmsOutput(
        12.0,
        soc=0.8345,
        soh_capacity=0.962,
        soh_resistance=float("nan"),
        max_charge_current_a=150.0,
        max_discharge_current_a=420.5,
        max_charge_power_w=48_000.0,
        max_discharge_power_w=135_670.0,
        charge_request_a=97.3,
        contactor_state="charge",
        worst_severity="derate",
        alarms=("overtemperature", "contactor_welded", "new_kind"),
    )
    sink.send(out)
    db = load_dbc()
    got = {}
    while (frame := vehicle.recv(0.2)) is not None:
        message = db.get_message_by_frame_id(frame.arbitration_id)
        got[message.name] = message.decode(frame.data)
    assert sink.error_count == 0 and list(got) == ["BMS_Alarms", "BMS_State", "BMS_Limits", "BMS_Charge_Request"]
    on = {name for name, bit in got["BMS_Alarms"].items() if bit}
    assert on == {"Alarm_Overtemperature", "Alarm_Contactor_Fault", "Alarm_Other"}
    state = got["BMS_State"]
    assert state["SOC"] == pytest.approx(83.4, abs=0.051) and state["SOH_Capacity"] == pytest.approx(96.2)
    assert state["SOH_Resistance"] == "not_available"
    assert (state["Contactor_State"], state["Worst_Severity"]) == ("charge", "derate")
    assert got["BMS_Limits"] == pytest.approx(
        {
            "Max_Charge_Current": 150.0,
            "Max_Discharge_Current": 420.5,
            "Max_Charge_Power": 48_000,
            "Max_Discharge_Power": 135_670,
        }
    )
    assert got["BMS_Charge_Request"]["Charge_Request_Current"] == pytest.approx(97.3)

    sink.send(out, active_alarm_kinds=["overcurrent_discharge"])
    alarms = db.decode_message(0x100, vehicle.recv(0.2).data)
    assert {name for name, bit in alarms.items() if bit} == {"Alarm_Overcurrent"}


def test_a_frame_the_sink_cannot_encode_is_reported_and_the_rest_still_go(buses):
    vehicle, bms = buses
    sink = CanSink(bms)
    sink.send(BmsOutput(1.0, 0.5, 1.0, 1.0, -5.0, 100.0, 1e3, 1e4, 0.0, "welded", "info"))
    ids = [frame.arbitration_id for frame in iter(lambda: vehicle.recv(0.1), None)]
    assert ids == [0x100, 0x103]
    assert sink.error_count == 2
    assert "Contactor_State = 'welded' is none of standby, precharge" in sink.errors[0]
    assert "Max_Charge_Current = -5 A is outside" in sink.errors[1]


def test_a_silent_cell_group_becomes_nan_after_the_staleness_timeout(buses):
    vehicle, bms = buses
    source = CanSource(bms, CELLS, SENSORS, period_s=1.0)  # stale after 3 s
    lost = np.arange(15, 18)  # cells 16-18, group 5: its monitoring unit falls silent after t = 0
    others = np.setdiff1d(np.arange(CELLS), lost)
    for seed, t in enumerate((0.0, 1.0, 2.0, 3.5)):
        sent = sample(t, seed)
        frames = encode_sample(sent)
        if t > 0:
            frames = [f for f in frames if not (f.arbitration_id == 0x300 and f.data[0] == 5)]
        send(vehicle, frames)
        got = source.next_sample(timeout_s=2.0)
        np.testing.assert_allclose(got.cell_voltage_v[others], sent.cell_voltage_v[others], atol=0.0005)
        if t <= 3.0:
            np.testing.assert_allclose(got.cell_voltage_v[lost], sample(0.0, 0).cell_voltage_v[lost], atol=0.0005)
        else:
            assert np.isnan(got.cell_voltage_v[lost]).all()
    assert source.error_count == 0


def test_malformed_frames_are_reported_and_the_next_sample_comes_through(buses):
    vehicle, bms = buses
    source = CanSource(bms, CELLS, SENSORS)
    good = encode_sample(sample())
    cells = next(f for f in good if f.arbitration_id == 0x300)
    bad = [
        can.Message(timestamp=999.0, arbitration_id=0x300, data=cells.data[:5], is_extended_id=False),
        can.Message(timestamp=999.0, arbitration_id=0x300, data=bytes([200]) + cells.data[1:], is_extended_id=False),
        can.Message(timestamp=999.0, arbitration_id=0x300, data=bytes([40]) + cells.data[1:], is_extended_id=False),
        can.Message(timestamp=999.0, arbitration_id=0x7FF, data=b"\x01\x02", is_extended_id=False),  # not ours
        can.Message(timestamp=999.0, arbitration_id=0x110, data=b"\x00" * 5, is_extended_id=True),  # not ours
    ]
    send(vehicle, bad + good)
    got = source.next_sample(timeout_s=2.0)
    np.testing.assert_allclose(got.cell_voltage_v, sample().cell_voltage_v, atol=0.0005)
    assert source.error_count == 3
    length, group, beyond = source.errors
    assert "CAN frame 0x300 (Cell_Voltages) at t=999.000 s: 5 data bytes, the DBC says 7" in length
    assert "Cell_Group 200 is not in the DBC (0 to 84)" in group
    assert "Cell_121_Voltage = " in beyond and "this pack has 100 cells" in beyond


def test_encode_sample_refuses_what_the_dbc_cannot_carry():
    with pytest.raises(ValueError, match="256 cells, but Cell_Voltages in openbms.dbc carries 1 to 255"):
        encode_sample(Sample(0.0, 0.0, np.full(256, 3.3), np.full(4, 25.0)))
    v = np.full(10, 3.3)
    v[6] = -0.2
    with pytest.raises(ValueError, match="Cell_7_Voltage = -0.2 V is outside"):
        encode_sample(Sample(0.0, 0.0, v, np.full(4, 25.0)))
    with pytest.raises(ValueError, match="Sensor_2_Temperature = 400 degC is outside"):
        encode_sample(Sample(0.0, 0.0, np.full(10, 3.3), np.array([25.0, 400.0])))
    with pytest.raises(ValueError, match="65 temperature sensors, but Cell_Temperatures"):
        CanSource(None, 10, 65)


@pytest.mark.parametrize(
    "spec, why",
    [
        ("vcan0", "expected INTERFACE:CHANNEL"),
        (":vcan0", "expected INTERFACE:CHANNEL"),
        ("virtual:", "expected INTERFACE:CHANNEL"),
        ("canbus:vcan0", "python-can has no interface 'canbus'; it has .*socketcan"),
        ("socketcan:openbms-none", "cannot open socketcan channel 'openbms-none'"),
    ],
)
def test_open_bus_errors(spec, why):
    with pytest.raises(ValueError, match=why):
        open_bus(spec)


def test_bus_source_for_serve():
    """What `openbms serve --source can:virtual:CHANNEL` builds: a source and, for the loop, a sink on one bus."""
    channel = f"openbms-test-{uuid.uuid4()}"
    source = CanBusSource(f"virtual:{channel}", CELLS, SENSORS)
    vehicle = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    try:
        send(vehicle, encode_sample(sample()))
        assert source.next_sample(timeout_s=2.0).time_s == 1000.0
        source.sink.send(BmsOutput(1000.0, 0.5, 1.0, 1.0, 10.0, 10.0, 1e3, 1e3, 0.0, "normal", "info"))
        assert vehicle.recv(0.5).arbitration_id == 0x100
    finally:
        source.bus.shutdown()
        vehicle.shutdown()
