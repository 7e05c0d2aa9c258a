"""Battery-health access (EU 2023/1542 Art. 14, Annex XIII): the usage record counts what happened, a `health`
token reads exactly the health record and nothing else, and `openbms passport` writes it with the cell model's
provenance."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from openbms.cell import load_cell
from openbms.cli import main
from openbms.runtime.bms import Bms
from openbms.runtime.service import NV_KEY
from openbms.runtime.sources import SimSource
from openbms.runtime.usage import Usage
from openbms.runtime.vehicle import SimulatedVehicle
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.limits import Limits
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from openbms.vehicle.vss import HEALTH_LEAVES, LEAVES, ROOT, node
from waiting import PATIENCE_S, http

HEALTH = f"{ROOT}.OpenBMS.Health"


def test_usage_counts_throughput_bands_and_events():
    usage = Usage()
    usage.update(360.0, 10.0, 300.0, 0.55, 30.0)  # 1 Ah, 300 Wh in, at 50-60 % and 25-35 degC
    usage.update(360.0, -20.0, 300.0, 0.04, 50.0)  # 2 Ah out, deep and hot
    usage.update(360.0, -20.0, 300.0, 0.03, 50.0)  # still the same two events
    usage.update(360.0, 5.0, 300.0, 0.12, 42.0)  # climbs out of the deep discharge; 42 degC does not re-arm overheating
    usage.update(360.0, -5.0, 300.0, 0.02, 47.0)  # a second deep discharge; the heat is still the first event
    usage.update(3600.0 * 5, -5.0, 300.0, 0.02, 47.0)  # a 5 h gap: the car was off, nothing counted
    assert usage.charged_ah == pytest.approx(1.5) and usage.discharged_ah == pytest.approx(4.5)
    assert usage.charged_wh == pytest.approx(450.0) and usage.discharged_wh == pytest.approx(1350.0)
    assert usage.deep_discharge_events == 2 and usage.over_temperature_events == 1
    assert usage.time_at_soc_s[0] == pytest.approx(3 * 360) and usage.time_at_soc_s[5] == pytest.approx(360)
    assert usage.time_at_temperature_s[-1] == pytest.approx(3 * 360) and usage.operating_s == pytest.approx(5 * 360)
    assert usage.equivalent_full_cycles(3.0) == pytest.approx(1.5)
    assert Usage.restore(json.loads(json.dumps(usage.as_dict()))) == usage
    assert Usage.restore({**usage.as_dict(), "time_at_soc_s": [1.0, 2.0]}) == Usage()  # another band layout


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """A 20-cell pack charging for five minutes, its values on the hub and its state saved as `serve` saves it."""
    cell = load_cell("blade_lfp")
    source = SimSource(SimulatedVehicle(cell, 20, 4, soc0=0.3, plugged_at_start=True, seed=5))
    bms, hub = Bms(cell, source.series, source.sensors), SignalHub(stale_after_s=PATIENCE_S)  # then silent
    for _ in range(300):
        output, values = bms.step(source.next_sample())
        source.apply(output, bms.bleed_a, bms.conditioning)  # the charger obeys the BMS, as in the running loop
        hub.publish(values)
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('health') / 'openbms.db'}")
    store.save_nv(NV_KEY, bms.nv_state())
    yield bms, hub, store
    store.close()


def test_the_record_follows_the_pack(pack):
    _, hub, _ = pack
    current_a = hub.read(f"{ROOT}.CurrentCurrent")[0]
    assert current_a > 10 and hub.read(f"{HEALTH}.ChargedCharge")[0] == pytest.approx(current_a * 299 / 3600, rel=0.1)
    assert hub.read(f"{HEALTH}.DischargedCharge")[0] == 0
    assert hub.read(f"{HEALTH}.OperatingTime")[0] == pytest.approx(299, abs=2)
    assert sum(hub.read(f"{HEALTH}.TimeAtStateOfCharge")[0]) == pytest.approx(hub.read(f"{HEALTH}.OperatingTime")[0])
    assert hub.read(f"{HEALTH}.StateOfCertifiedEnergy")[0] == pytest.approx(100.0, abs=3)
    assert hub.read(f"{HEALTH}.CertifiedEnergy")[0] == pytest.approx(20 * 138 * 3.2 / 1000, rel=0.1)


def test_a_health_token_reads_exactly_the_health_record(pack):
    _, hub, store = pack
    every_leaf_at_once = Limits(burst=2 * len(LEAVES))  # on a fast machine the sweep outruns 50 requests/s
    with running_server(hub, store, limits=every_leaf_at_once) as server:
        token = server.authority.token(server.authority.grant("buyer's assessor", ["health"], 600))
        headers = {"Authorization": f"Bearer {token}"}
        status = {
            leaf: http.get(f"{server.http_url}/{leaf.replace('.', '/')}", headers=headers).status_code
            for leaf in LEAVES
        }
        readable = {leaf for leaf, code in status.items() if code == 200}
        socr = f"{HEALTH}.StateOfCertifiedRange"  # declared for a vehicle integration; the BMS does not publish it
        assert readable == set(HEALTH_LEAVES) - {socr} and status[socr] == 404  # allowed, not available
        assert {code for leaf, code in status.items() if leaf not in HEALTH_LEAVES} == {403}
        assert {
            f"{ROOT}.StateOfHealth",
            f"{ROOT}.OpenBMS.ResistanceHealth",
            f"{HEALTH}.EquivalentFullCycles",
            f"{HEALTH}.TimeAtTemperature",
            f"{HEALTH}.DeepDischargeEvents",
        } <= readable
        branch = http.get(f"{server.http_url}/{HEALTH.replace('.', '/')}", headers=headers)
        assert branch.status_code == 200 and len(branch.json()["data"]) == len(HEALTH_LEAVES) - 3
        assert http.get(f"{server.http_url}/{ROOT.replace('.', '/')}", headers=headers).status_code == 403
        limit = f"{ROOT}.Charging.ChargeLimit"
        refused = http.post(
            f"{server.http_url}/{limit.replace('.', '/')}", headers=headers, json={"value": "80", "requestId": "h1"}
        )
        assert refused.status_code == 403 and hub.read(limit)[0] != 80 or node(limit).type != "actuator"
        with connect(server.viss_url, subprotocols=["VISSv2"], open_timeout=PATIENCE_S) as ws:
            ws.send(
                json.dumps(
                    {
                        "action": "subscribe",
                        "path": HEALTH,
                        "authorization": token,
                        "requestId": "s1",
                        "filter": {"type": "timebased", "parameter": {"period": "100"}},
                    }
                )
            )
            assert "subscriptionId" in json.loads(ws.recv(5))
            ws.send(
                json.dumps(
                    {"action": "subscribe", "path": f"{ROOT}.StateOfCharge", "authorization": token, "requestId": "s2"}
                )
            )
            answers = [json.loads(ws.recv(5)) for _ in range(3)]
            assert any(a.get("requestId") == "s2" and a["error"]["number"] == 403 for a in answers)
        assert http.get(f"{server.http_url}/owner/grants", headers=headers).status_code == 403


def test_passport_exports_the_record_with_the_cell_models_provenance(pack, tmp_path, capsys):
    _, hub, store = pack
    out = tmp_path / "passport.json"
    assert main(["passport", "--db", store.url, "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["state_of_health"]["capacity_percent"] == hub.read(f"{ROOT}.StateOfHealth")[0]
    assert doc["throughput"]["charged_ah"] == hub.read(f"{HEALTH}.ChargedCharge")[0]
    assert doc["time_at_temperature_hours"][0]["band"] == "below 0 degC"
    assert (
        len(doc["time_at_state_of_charge_hours"]) == 10
        and doc["time_at_state_of_charge_hours"][-1]["band"] == "above 90 %"
    )
    assert doc["cell_model"]["name"] == "blade_lfp" and doc["cell_model"]["provenance"]["derived_from"] == "a123_lfp"
    assert doc["battery"]["cells_in_series"] == 20 and doc["events"]["deep_discharge"]["count"] == 0
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["passport", "--db", empty, "-o", str(tmp_path / "none.json")]) == 2
    assert "run `openbms serve" in capsys.readouterr().err and not (tmp_path / "none.json").exists()
