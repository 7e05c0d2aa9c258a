"""An unmodified third-party client, kuksa-client (protocol `ws`), against the server; and the
kuksa.val `authorize` dialect its older servers spoke."""

from __future__ import annotations

import json
import queue
import time

import pytest
from websockets.sync.client import connect

from openbms.vehicle.hub import SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from test_vehicle_demo import LIMIT, ROOT, SOC, DemoVehicle
from waiting import PATIENCE_S, wait_for

kuksa_client = pytest.importorskip("kuksa_client")


@pytest.fixture(scope="module")
def vehicle(tmp_path_factory):
    hub = SignalHub()
    demo = DemoVehicle(hub)
    demo.publish()
    stop = demo.run_in_thread(0.05)
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('kuksa') / 'openbms.db'}")
    with running_server(hub, store) as server:
        yield server
    stop.set()
    store.close()


def kuksa_connect(viss_url: str):
    """An unmodified kuksa-client, connected (protocol ws) to the server at viss_url."""
    host, port = viss_url.removeprefix("ws://").rsplit(":", 1)
    client = kuksa_client.KuksaClientThread({"ip": host, "port": int(port), "protocol": "ws", "insecure": True})
    client.start()
    wait_for(client.connection_established, "kuksa-client did not connect", poll_s=0.02)
    return client


@pytest.fixture
def kuksa(vehicle):
    client = kuksa_connect(vehicle.viss_url)
    yield client
    client.stop()
    client.join(5)


def grant_token(vehicle, *scopes: str) -> str:
    return vehicle.authority.token(vehicle.authority.grant("kuksa-app", scopes, 600))


def test_kuksa_client_reads_subscribes_and_sets(vehicle, kuksa):
    kuksa.authorize(grant_token(vehicle, f"read:{ROOT}", f"actuate:{LIMIT}"))

    soc = json.loads(kuksa.getValue(SOC))
    assert "error" not in soc, soc
    assert 0 <= float(soc["data"]["dp"]["value"]) <= 100

    updates: queue.Queue = queue.Queue()
    subscribed = json.loads(kuksa.subscribe(SOC, lambda message: updates.put(json.loads(message))))
    assert "subscriptionId" in subscribed, subscribed
    values = [updates.get(timeout=PATIENCE_S)["data"]["dp"]["value"] for _ in range(3)]
    assert len(set(values)) > 1  # the SoC moves: these are live updates

    applied = json.loads(kuksa.setValue(LIMIT, "30", attribute="targetValue"))
    assert "error" not in applied, applied
    assert applied["data"]["dp"]["value"] == "50" and "clamped" in applied["reason"]
    assert json.loads(kuksa.getValue(LIMIT))["data"]["dp"]["value"] == "50"

    assert "error" not in json.loads(kuksa.unsubscribe(subscribed["subscriptionId"]))


def test_kuksa_client_sees_refusals_as_viss_errors(vehicle, kuksa):
    assert json.loads(kuksa.getValue(SOC))["error"]["reason"] == "missing_token"
    kuksa.authorize(grant_token(vehicle, f"read:{SOC}"))
    refused = json.loads(kuksa.setValue(LIMIT, "80", attribute="targetValue"))
    assert refused["error"]["number"] == 403
    metadata = json.loads(kuksa.getMetaData(SOC))
    assert metadata["metadata"]["Current"]["unit"] == "percent"


def test_kuksa_client_discovers_the_catalogue_and_is_refused_wildcards(vehicle, kuksa):
    """What kuksa-client can send of the filters: static metadata (it has no history, range, change or
    curvelog call); and a wildcard path, refused as VISS requires."""
    tree = json.loads(kuksa.getMetaData(f"{ROOT}.Temperature"))["metadata"]["Temperature"]
    assert tree["type"] == "branch" and tree["children"]["Average"]["unit"] == "Celsius"
    kuksa.authorize(grant_token(vehicle, f"read:{ROOT}"))
    refused = json.loads(kuksa.getValue("Vehicle.*"))
    assert refused["error"]["number"] == 400 and "paths filter" in refused["error"]["message"]
    unknown = json.loads(kuksa.getValue(f"{ROOT}.Flux"))["error"]
    assert (unknown["number"], unknown["reason"]) == (404, "unavailable_data")
    assert unknown["message"].startswith("The specified data path does not exist")


def test_kuksa_val_authorize_dialect(vehicle):
    tok = grant_token(vehicle, f"read:{SOC}")
    with connect(vehicle.viss_url, subprotocols=["VISSv2"], open_timeout=PATIENCE_S) as ws:
        ws.send(json.dumps({"action": "authorize", "tokens": tok, "requestId": "1"}))
        authorized = json.loads(ws.recv(timeout=PATIENCE_S))
        assert authorized["action"] == "authorize" and authorized["TTL"] > time.time()
        ws.send(json.dumps({"action": "get", "path": SOC, "attribute": "value", "requestId": "2"}))
        assert json.loads(ws.recv(timeout=PATIENCE_S))["data"]["path"] == SOC
