"""Brand mapping files: two brands whose DBCs differ in IDs, scalings, byte order and multiplexing reach the same
VSS paths on python-can's virtual bus, and the same example app (examples/other_brand_app.py, through OAuth) reads
and commands both; a mapping with an unknown signal or path, or units that do not convert, is refused with the
line."""

from __future__ import annotations

import re
import shutil
import threading
import uuid

import can
import httpx
import pytest
from test_vehicle_demo import ROOT, SOC
from test_vehicle_oauth import consent
from test_vehicle_oauth_browser import ServedApp, other_brand_app

from openbms.runtime.mapping import BRANDS_DIR, CanBridge, MappingError, load_mapping
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from waiting import PATIENCE_S

RANGE = f"{ROOT}.Range"
# what each brand's battery says, in its own encoding: the same state of charge (64.5 %) and range (312.4 km)
STATUS = {
    "aurora": [
        (
            "AUR_BattStatus",
            {
                "AUR_SOC": 64.5,
                "AUR_RangeKm": 312.4,
                "AUR_PackVoltage": 398.0,
                "AUR_PackCurrent": -12.5,
                "AUR_Charging": "idle",
            },
        ),
        ("AUR_ChargeStatus", {"AUR_LimitActual": 90}),
    ],
    "borealis": [
        ("BOR_Battery", {"BOR_Page": 0, "BOR_StateOfCharge": 0.645, "BOR_Voltage": 398.0}),
        ("BOR_Battery", {"BOR_Page": 1, "BOR_Range": 312400, "BOR_ChargeState": "not_charging"}),
        ("BOR_Battery", {"BOR_Page": 2, "BOR_Limit": 90}),
    ],
}
COMMAND = {"aurora": ("AUR_ChargeCmd", "AUR_LimitRequest"), "borealis": ("BOR_Request", "BOR_LimitSet")}


class BrandCar:
    """The brand's own battery ECU on the virtual bus: sends its status frames, keeps the commands it hears."""

    def __init__(self, brand: str, channel: str):
        self.mapping = load_mapping(BRANDS_DIR / f"{brand}.yaml")
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.brand, self.heard = brand, []
        self.stop = threading.Event()

    def frames(self):
        for name, values in STATUS[self.brand]:
            message = self.mapping.db.get_message_by_name(name)
            yield can.Message(
                arbitration_id=message.frame_id, data=message.encode(values), is_extended_id=message.is_extended_frame
            )

    def run(self) -> None:
        while not self.stop.is_set():
            for frame in self.frames():
                self.bus.send(frame)
            while (frame := self.bus.recv(0.05)) is not None:
                self.heard.append(self.mapping.db.decode_message(frame.arbitration_id, frame.data))


@pytest.mark.parametrize("brand", ["aurora", "borealis"])
def test_the_same_app_reads_and_commands_either_brand(brand, tmp_path):
    channel = f"brand-{uuid.uuid4().hex}"
    car, hub = BrandCar(brand, channel), SignalHub()
    bridge = CanBridge(
        load_mapping(BRANDS_DIR / f"{brand}.yaml"), can.Bus(interface="virtual", channel=channel), hub
    ).start()
    ecu = threading.Thread(target=car.run, daemon=True)
    ecu.start()
    store = Store(f"sqlite:///{tmp_path / 'openbms.db'}")
    app = ServedApp()
    try:
        with running_server(hub, store) as server:
            owner = httpx.Client(
                base_url=server.http_url,
                timeout=PATIENCE_S,
                headers={
                    "Authorization": "Bearer " + server.authority.token(server.authority.grant("owner", ["owner"], 600))
                },
            )
            client = owner.post(
                "/owner/clients", json={"name": "Other Brand App", "redirect_uris": [f"{app.url}/callback"]}
            ).json()
            app.start(
                other_brand_app.Config(
                    server.http_url, client["client_id"], client["client_secret"], f"{app.url}/callback"
                )
            )
            browser = httpx.Client(base_url=app.url, timeout=PATIENCE_S)
            sent_to = browser.get("/connect").headers["location"]
            callback = consent(owner, sent_to)["redirect"]
            assert browser.get(callback).status_code == 303
            page = browser.get("/").text
            assert _text(page, "soc") == "64.5" and _text(page, "range") == "312400"
            browser.post("/limit", data={"limit": "80"})
            assert _text(browser.get("/").text, "message").startswith("Charge limit set to 80 %")
            _, signal = COMMAND[brand]
            while not any(h.get(signal) == 80 for h in list(car.heard)):
                ecu.join(0.05)  # the car hears the command in its own encoding
            assert hub.read(SOC)[0] == pytest.approx(64.5) and hub.read(RANGE)[0] == 312400
            assert hub.read(f"{ROOT}.Charging.IsCharging")[0] is False
    finally:
        app.stop()
        car.stop.set()
        ecu.join(5)
        bridge.stop()
        store.close()
        for bus in (car.bus, bridge.bus):
            bus.shutdown()
    assert bridge.error_count == 0, list(bridge.errors)


def _text(page: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page).group(1)


@pytest.mark.parametrize(
    "change, line, says",
    [
        ("signal: AUR_SOC,", "signal: AUR_SOCX,", "has no signal 'AUR_SOCX'"),
        ("StateOfCharge.Current, message", "StateOfCharge.Now, message", "is not a signal or branch"),
        ("message: AUR_BattStatus, signal: AUR_RangeKm", "message: AUR_Status, signal: AUR_RangeKm", "no message"),
        (
            "TractionBattery.Range, message: AUR_BattStatus",
            "TractionBattery.CurrentPower, message: AUR_BattStatus",
            "mismatched units: AUR_RangeKm is in km (length)",
        ),
        ("signal: AUR_PackVoltage, direction: in", "signal: AUR_PackVoltage, direction: out", "only actuators"),
        ('values: {START: "on", STOP: "off"}', 'values: {START: "on", STOP: "halt"}', "has no value 'halt'"),
        ('values: {START: "on", STOP: "off"}', 'values: {GO: "on", STOP: "off"}', "accepts START, STOP"),
    ],
)
def test_a_bad_mapping_is_refused_with_its_line(tmp_path, change, line, says):
    shutil.copy(BRANDS_DIR / "aurora.dbc", tmp_path / "aurora.dbc")
    text = (BRANDS_DIR / "aurora.yaml").read_text()
    assert change in text
    bad = text.replace(change, line, 1)
    (tmp_path / "aurora.yaml").write_text(bad)
    number = next(
        i
        for i, row in enumerate(bad.splitlines(), 1)
        if line.split(",")[0].split(":")[-1].strip() in row or (line in row)
    )
    with pytest.raises(MappingError, match=re.escape(says)) as refused:
        load_mapping(tmp_path / "aurora.yaml")
    assert str(refused.value).startswith(f"{tmp_path / 'aurora.yaml'}:")
    assert abs(int(str(refused.value).split(":")[1]) - number) <= 4  # the entry's first line (multi-line entries)


def test_a_unitless_signal_needs_its_unit_said(tmp_path):
    shutil.copy(BRANDS_DIR / "borealis.dbc", tmp_path / "borealis.dbc")
    bad = (BRANDS_DIR / "borealis.yaml").read_text().replace('    unit: "1"\n', "", 1)
    (tmp_path / "borealis.yaml").write_text(bad)
    with pytest.raises(MappingError, match=r"borealis.yaml:6: BOR_StateOfCharge is in 'no unit'"):
        load_mapping(tmp_path / "borealis.yaml")
    doubled = (
        (BRANDS_DIR / "borealis.yaml").read_text()
        + "  - {vss: Vehicle.Powertrain.TractionBattery.Range, message: BOR_Battery, signal: BOR_Range, direction: in}\n"
    )
    (tmp_path / "borealis.yaml").write_text(doubled)
    with pytest.raises(MappingError, match=r"already mapped in on line"):
        load_mapping(tmp_path / "borealis.yaml")


def test_serve_refuses_a_bad_mapping_before_it_serves(tmp_path, capsys):
    from openbms.cli import main

    shutil.copy(BRANDS_DIR / "aurora.dbc", tmp_path / "aurora.dbc")
    (tmp_path / "aurora.yaml").write_text((BRANDS_DIR / "aurora.yaml").read_text().replace("AUR_SOC,", "AUR_SOCX,"))
    db = f"sqlite:///{tmp_path / 'openbms.db'}"
    assert main(["serve", "--mapping", str(tmp_path / "aurora.yaml"), "--source", "can:virtual:x", "--db", db]) == 2
    said = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert f"{tmp_path / 'aurora.yaml'}:5: message AUR_BattStatus has no signal 'AUR_SOCX'" in said
    assert main(["serve", "--mapping", str(BRANDS_DIR / "aurora.yaml"), "--db", db]) == 2
    assert "give --source can:INTERFACE:CHANNEL" in " ".join(capsys.readouterr().err.split())
