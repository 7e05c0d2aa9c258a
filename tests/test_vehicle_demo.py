"""A tiny deterministic demo vehicle behind the SignalHub, standing in for the BMS runtime in the
vehicle interface's tests and benchmark (the real runtime replaces it)."""

from __future__ import annotations

import threading
import time

from openbms.vehicle.hub import Requester, SetResult, SignalHub

ROOT = "Vehicle.Powertrain.TractionBattery"
SOC = f"{ROOT}.StateOfCharge.Current"
LIMIT = f"{ROOT}.Charging.ChargeLimit"
START_STOP = f"{ROOT}.Charging.StartStopCharging"
CONDITIONING = f"{ROOT}.BatteryConditioning.RequestedMode"


class DemoVehicle:
    """A pack discharging at a steady 0.01 %/step; applies a charge limit clamped to 50–100 % and
    START/STOP, and refuses fast-charge conditioning (no charger is plugged in)."""

    def __init__(self, hub: SignalHub):
        self.hub, self.step = hub, 0
        hub.set_actuator_handler(self.decide)
        hub.publish({LIMIT: 90, START_STOP: "STOP", CONDITIONING: "INACTIVE"})

    def publish(self, time_s: float | None = None) -> None:
        soc = 80.0 - 0.01 * (self.step % 5000)
        self.hub.publish(
            {
                SOC: soc,
                f"{ROOT}.StateOfCharge.Displayed": round(soc),
                f"{ROOT}.CurrentVoltage": 380.0 + soc / 10,
                f"{ROOT}.CurrentCurrent": -20.0,
                f"{ROOT}.CurrentPower": -20.0 * (380.0 + soc / 10),
                f"{ROOT}.Temperature.Average": 25.0,
                f"{ROOT}.CellVoltage.CellVoltages": [3.3] * 4,
                f"{ROOT}.Charging.IsCharging": False,
            },
            time_s,
        )
        self.step += 1

    def decide(self, path: str, value: object, requester: Requester, commit=None) -> SetResult:
        """Keeps no state of its own, so it leaves `commit` to the hub."""
        if path == LIMIT:
            applied = min(100, max(50, value))
            return SetResult(True, applied, "" if applied == value else f"clamped to {applied} % (50–100 % allowed)")
        if path == START_STOP:
            return SetResult(True, value, "")
        return SetResult(False, None, "no charger is plugged in")

    def run_in_thread(self, period_s: float) -> threading.Event:
        """Publish every `period_s` until the returned event is set."""
        stop = threading.Event()

        def loop():
            tick = time.monotonic()
            while True:
                tick += period_s  # a fixed rate: no drift by the time publishing takes
                if stop.wait(max(0.0, tick - time.monotonic())):
                    return
                self.publish()

        threading.Thread(target=loop, name="demo-vehicle", daemon=True).start()
        return stop


def test_demo_vehicle_clamps_the_charge_limit_and_refuses_conditioning():
    hub = SignalHub()
    demo = DemoVehicle(hub)
    demo.publish()
    demo.publish()
    assert hub.read(SOC)[0] == 79.99
    who = Requester("app", "grant", "r1")
    assert demo.decide(LIMIT, 30, who) == SetResult(True, 50, "clamped to 50 % (50–100 % allowed)")
    assert demo.decide(LIMIT, 80, who) == SetResult(True, 80, "")
    assert not demo.decide(CONDITIONING, "FAST_CHARGING_PREPARATION", who).accepted
