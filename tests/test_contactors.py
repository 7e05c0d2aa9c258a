"""The contactor state machine against the RC precharge circuit: every transition and fault path."""

from __future__ import annotations

import dataclasses
import math

import pytest

from openbms.safety.contactors import OPEN, ContactorConfig, ContactorController, Contactors, PrechargeCircuit

DT = 0.01  # a 10 ms contactor task


class Rig:
    """Controller, circuit and contactors in closed loop. `stuck` forces a contactor's physical state
    (welded = True, never closing = False); `lying` forces only what its auxiliary contact reports."""

    def __init__(self, config=ContactorConfig(), **circuit):
        self.controller = ContactorController(config)
        self.circuit = PrechargeCircuit(**circuit)
        self.t, self.feedback = 0.0, OPEN
        self.stuck: dict[str, bool] = {}
        self.lying: dict[str, bool] = {}
        self.link_reading: float | None = None  # None: the true link voltage
        self.events, self.states, self.log = [], [], []

    def run(self, seconds: float, request: str, until: str | None = None, **flags):
        for _ in range(round(seconds / DT)):
            link = self.circuit.link_voltage_v if self.link_reading is None else self.link_reading
            out = self.controller.tick(self.t, request, self.circuit.pack_voltage_v, link, self.feedback, **flags)
            self.events += out.events
            if not self.states or self.states[-1] != out.state:
                self.states.append(out.state)
            physical = dataclasses.replace(out.command, **self.stuck)
            self.feedback = dataclasses.replace(physical, **self.lying)
            self.log.append((self.t, out.command, self.circuit.link_voltage_v))
            self.circuit.step(physical, DT)
            self.t += DT
            if out.state == until:
                break
        return out

    def kinds(self):
        return [(e.kind, e.severity) for e in self.events]


def test_precharge_sequence_then_drive_charge_and_off():
    rig = Rig()
    out = rig.run(1.0, "drive")
    assert out.state == "normal" and out.command == Contactors(main_positive=True, main_negative=True)
    assert rig.states == ["precharge", "normal"] and rig.events == []
    commands = [c for _, c, _ in rig.log]
    order = [
        Contactors(main_negative=True),
        Contactors(main_negative=True, precharge=True),
        Contactors(True, True, True),
        Contactors(main_positive=True, main_negative=True),
    ]
    assert [c for k, c in enumerate(commands) if k == 0 or c != commands[k - 1]] == order
    first_positive = next(k for k, c in enumerate(commands) if c.main_positive)
    assert rig.log[first_positive][2] >= 0.95 * rig.circuit.pack_voltage_v  # link charged before the main closes
    assert rig.run(0.1, "charge").state == "charge"
    assert rig.run(0.1, "drive").state == "normal"
    out = rig.run(3.0, "off")
    assert rig.states[-2:] == ["opening", "standby"] and out.command == OPEN and rig.events == []
    assert rig.circuit.link_voltage_v < 0.9 * rig.circuit.pack_voltage_v


def test_charge_request_precharges_into_charge():
    rig = Rig()
    assert rig.run(1.0, "charge").state == "charge"
    assert rig.states == ["precharge", "charge"]


def test_off_during_precharge_opens_to_standby():
    rig = Rig(link_capacitance_f=0.02)  # slow enough to be still precharging
    assert rig.run(0.2, "drive").state == "precharge"
    out = rig.run(2.0, "off")
    assert out.state == "standby" and out.command == OPEN and rig.events == []


def test_precharge_timeout_then_retry_succeeds():
    """tau = 1 s: 86 % after the 2 s timeout; the link keeps most of its charge over the cool-down, and the
    second attempt makes it."""
    rig = Rig(link_capacitance_f=0.025)
    rig.run(2.1, "drive")
    [(kind, severity)] = rig.kinds()
    assert (kind, severity) == ("precharge_failed", "warning") and rig.controller.attempts == 1
    assert rig.events[0].value == pytest.approx(0.865 * 400.0, rel=0.02)
    rig.run(4.5, "drive")  # opening (1 s), then the cool-down (5 s from the failure): no new attempt yet
    assert rig.controller.state == "standby"
    out = rig.run(5.0, "drive", until="normal")
    assert out.state == "normal" and rig.controller.attempts == 0 and len(rig.events) == 1


@pytest.mark.parametrize(
    "circuit",
    [
        {"precharge_resistance_ohm": math.inf},  # broken precharge resistor
        {"bleed_resistance_ohm": 1.0},  # shorted DC link
        {"link_capacitance_f": 0.5},  # far too much capacitance for the resistor
    ],
)
def test_precharge_retries_exhausted_is_an_error(circuit):
    rig = Rig(**circuit)
    out = rig.run(40.0, "drive")
    assert out.state == "error" and out.command == OPEN
    assert rig.kinds() == [("precharge_failed", "warning")] * 2 + [("precharge_failed", "critical")]
    assert rig.controller.attempts == 3
    assert rig.states.count("precharge") == 3  # and no fourth attempt while the request stands


def test_welded_contactor_detected_by_feedback_on_opening():
    rig = Rig()
    rig.run(1.0, "drive")
    rig.stuck["main_positive"] = True
    out = rig.run(0.5, "off")
    assert out.state == "error" and out.command == OPEN
    [e] = rig.events
    assert (e.kind, e.severity) == ("contactor_welded", "critical") and "main positive" in e.explanation


def test_welded_contactors_detected_by_link_voltage():
    """Both mains welded and their auxiliary contacts reporting open: the link stays at the pack voltage."""
    rig = Rig()
    rig.run(1.0, "drive")
    rig.stuck.update(main_positive=True, main_negative=True)
    rig.lying.update(main_positive=False, main_negative=False)
    out = rig.run(1.5, "off")
    assert out.state == "error"
    assert rig.kinds() == [("contactor_welded", "critical")] and "link voltage" in rig.events[0].explanation


@pytest.mark.parametrize("name", ["main_negative", "precharge", "main_positive"])
def test_contactor_that_does_not_close_is_an_error(name):
    rig = Rig()
    rig.stuck[name] = False
    out = rig.run(1.0, "drive")
    assert out.state == "error" and out.command == OPEN
    assert rig.kinds() == [("contactor_failed_to_close", "critical")]
    assert name.replace("_", " ") in rig.events[0].explanation


def test_contactor_dropping_out_in_drive_is_an_error():
    rig = Rig()
    rig.run(1.0, "drive")
    rig.stuck["main_negative"] = False
    assert rig.run(0.5, "drive").state == "error"
    assert rig.kinds() == [("contactor_failed_to_close", "critical")]


@pytest.mark.parametrize("reading", ["link", "pack"])
def test_sensor_loss_during_precharge_fails_safe(reading):
    rig = Rig(link_capacitance_f=0.02)
    rig.run(0.2, "drive")
    if reading == "link":
        rig.link_reading = math.nan
    else:
        rig.circuit.pack_voltage_v = math.nan
    out = rig.run(1.5, "drive")
    assert out.state == "error" and out.command == OPEN
    assert rig.kinds() == [("sensor_fault", "critical")]


@pytest.mark.parametrize("request_", ["drive", "charge"])
def test_critical_soa_opens_from_closed_and_reset_only_when_cleared(request_):
    rig = Rig()
    assert rig.run(1.0, request_).state == {"drive": "normal", "charge": "charge"}[request_]
    out = rig.run(0.01, request_, open_request=True)
    assert out.state == "opening" and out.command == OPEN  # open at once
    out = rig.run(2.0, request_, open_request=True)
    assert out.state == "error" and rig.kinds() == [("contactors_opened", "critical")]
    assert rig.run(1.0, request_, open_request=True, reset=True).state == "error"  # cause still present
    assert rig.run(1.0, request_).state == "error"  # cleared, but no reset: stays open
    rig.run(0.01, request_, reset=True)
    assert rig.states[-2:] == ["error", "standby"]
    assert rig.run(1.0, request_).state != "error"


def test_open_request_in_standby_blocks_closing():
    rig = Rig()
    out = rig.run(2.0, "drive", open_request=True)
    assert out.state == "error" and rig.states == ["opening", "error"]
    assert not any(c.main_negative for _, c, _ in rig.log)


def test_reset_refused_while_a_contactor_is_welded():
    rig = Rig()
    rig.run(1.0, "drive")
    rig.stuck["main_negative"] = True
    rig.run(0.5, "off")
    assert rig.run(0.5, "off", reset=True).state == "error"
    rig.stuck.clear()
    assert rig.run(0.05, "off", reset=True).state == "standby"


@pytest.mark.parametrize(
    "field, value",
    [
        ("precharge_fraction", 1.2),
        ("precharge_timeout_s", -1.0),
        ("precharge_retries", 1.5),
        ("weld_check_s", math.nan),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"ContactorConfig.{field} "):
        ContactorController(dataclasses.replace(ContactorConfig(), **{field: value}))


def test_unknown_request_is_refused():
    with pytest.raises(ValueError, match="request"):
        ContactorController().tick(0.0, "park", 400.0, 0.0, OPEN)


def test_precharge_circuit_is_an_rc_charge():
    c = PrechargeCircuit(
        pack_voltage_v=100.0, precharge_resistance_ohm=10.0, link_capacitance_f=0.01, bleed_resistance_ohm=math.inf
    )
    assert c.step(Contactors(main_negative=True, precharge=True), 0.1) == pytest.approx(100 * (1 - math.exp(-1)))
    assert c.step(Contactors(precharge=True), 1.0) == pytest.approx(100 * (1 - math.exp(-1)))  # no return path
