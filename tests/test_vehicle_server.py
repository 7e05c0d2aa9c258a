"""The VISS v2 server over the network: every message kind and filter, HTTP, TLS, and every refusal,
each answered with a clear VISS error while another connected client keeps getting its updates."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
import uuid
from contextlib import ExitStack

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from openbms.vehicle.auth import Authority
from openbms.vehicle.guard import Edge
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.limits import Limits
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from test_vehicle_demo import CONDITIONING, LIMIT, ROOT, SOC, DemoVehicle
from waiting import PATIENCE_S, http, wait_for

VIN = "TESTVIN0000000001"
RANGE = f"{ROOT}.Range"
LIMITS = Limits(max_message_bytes=2048, max_subscriptions=3, requests_per_s=20, burst=30)


@pytest.fixture(scope="module")
def vehicle(tmp_path_factory):
    hub = SignalHub()
    demo = DemoVehicle(hub)
    demo.publish()
    stop = demo.run_in_thread(0.05)
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('vehicle') / 'openbms.db'}")
    static = tmp_path_factory.mktemp("dashboard")
    (static / "index.html").write_text("<h1>dashboard</h1>")
    with running_server(hub, store, vehicle_id=VIN, limits=LIMITS, static_dir=static) as server:
        yield server
    stop.set()
    store.close()


def token(vehicle, *scopes: str, ttl_s: float = 600, app: str = "test-app") -> str:
    authority = vehicle.authority
    return authority.token(authority.grant(app, scopes or (f"read:{ROOT}", f"actuate:{LIMIT}"), ttl_s))


class Client:
    """A strict VISS v2 client on the websockets library's synchronous API."""

    def __init__(self, url: str):
        self._connection = ExitStack()
        self.ws = self._connection.enter_context(connect(url, subprotocols=["VISSv2"], open_timeout=PATIENCE_S))

    def send(self, **msg) -> dict:
        msg.setdefault("requestId", uuid.uuid4().hex)
        self.ws.send(json.dumps(msg))
        return self.reply(msg["requestId"])

    def reply(self, request_id: str | None) -> dict:
        while True:
            msg = json.loads(self.ws.recv(timeout=PATIENCE_S))
            if msg.get("action") != "subscription" or request_id is None:
                assert request_id is None or msg.get("requestId") == request_id, msg
                return msg

    def notification(self, timeout: float = PATIENCE_S) -> dict:
        while True:
            msg = json.loads(self.ws.recv(timeout=timeout))
            if msg.get("action") == "subscription":
                return msg

    def close(self) -> None:
        self._connection.close()


class Watcher:
    """Another app, subscribed to the SoC, that must keep receiving while others misbehave."""

    def __init__(self, vehicle):
        self.client = Client(vehicle.viss_url)
        reply = self.client.send(action="subscribe", path=SOC, authorization=token(vehicle, f"read:{SOC}"))
        assert "subscriptionId" in reply, reply
        self.count = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                if json.loads(self.client.ws.recv()).get("action") == "subscription":
                    self.count += 1
        except Exception:
            return

    def assert_alive(self) -> None:
        before = self.count
        wait_for(lambda: self.count >= before + 2, "the other client stopped getting its subscription updates")


@pytest.fixture(scope="module")
def watcher(vehicle):
    w = Watcher(vehicle)
    yield w
    w.client.close()


@pytest.fixture
def client(vehicle, watcher):
    c = Client(vehicle.viss_url)
    yield c
    c.close()
    watcher.assert_alive()


def error_of(reply: dict) -> tuple[int, str]:
    assert "error" in reply, reply
    assert reply["error"]["message"], reply
    return reply["error"]["number"], reply["error"]["reason"]


# --- every message kind and filter -------------------------------------------------------------


def test_get_one_signal_with_a_viss_timestamp(client, vehicle):
    reply = client.send(action="get", path=SOC, authorization=token(vehicle))
    assert reply["action"] == "get" and reply["data"]["path"] == SOC
    assert 0 <= float(reply["data"]["dp"]["value"]) <= 100
    assert reply["data"]["dp"]["ts"].endswith("Z") and reply["ts"][10] == "T"


def test_get_a_branch_with_the_paths_filter_and_slash_separators(client, vehicle):
    reply = client.send(
        action="get",
        path=ROOT.replace(".", "/"),
        authorization=token(vehicle),
        filter={"type": "paths", "parameter": ["StateOfCharge.Current", "Temperature/Average"]},
    )
    assert [d["path"] for d in reply["data"]] == [SOC, f"{ROOT}.Temperature.Average"]
    reply = client.send(action="get", path=f"{ROOT}.CellVoltage", authorization=token(vehicle))
    assert reply["data"]["dp"]["value"] == ["3.3"] * 4  # only the array has a value: one data point


def test_get_static_metadata(client, vehicle):
    reply = client.send(
        action="get",
        path=f"{ROOT}.Charging",
        authorization=token(vehicle),
        filter={"type": "static-metadata", "parameter": ""},
    )
    limit = reply["metadata"]["Charging"]["children"]["ChargeLimit"]
    assert limit == {
        "type": "actuator",
        "description": "Target charge limit (state of charge) for battery.",
        "datatype": "uint8",
        "unit": "percent",
        "min": 0,
        "max": 100,
        "default": 100,
    }  # VSS 6.0's


def test_set_returns_what_the_bms_applied_and_audits_it_first(client, vehicle):
    request_id = uuid.uuid4().hex
    reply = client.send(action="set", path=LIMIT, value="30", requestId=request_id, authorization=token(vehicle))
    assert "error" not in reply, reply
    assert reply["data"]["dp"]["value"] == "50" and "clamped to 50 %" in reply["reason"]
    record = next(r for r in vehicle.store.audit(20) if r.request_id == request_id)
    assert (record.requested, record.applied, record.accepted) == ("30", 50, True)
    assert client.send(action="get", path=LIMIT, authorization=token(vehicle))["data"]["dp"]["value"] == "50"


def test_a_refusal_by_the_bms_says_why(client, vehicle):
    reply = client.send(
        action="set",
        path=CONDITIONING,
        value="FAST_CHARGING_PREPARATION",
        authorization=token(vehicle, f"actuate:{ROOT}.BatteryConditioning"),
    )
    assert error_of(reply) == (403, "forbidden_request") and "no charger" in reply["error"]["message"]


def test_subscribe_notifies_then_unsubscribe_ends_it(client, vehicle):
    reply = client.send(action="subscribe", path=SOC, authorization=token(vehicle))
    sub = reply["subscriptionId"]
    first, second = client.notification(), client.notification()
    assert first["subscriptionId"] == sub and first["data"]["path"] == SOC
    assert float(second["data"]["dp"]["value"]) != float(first["data"]["dp"]["value"])
    reply = client.send(action="unsubscribe", subscriptionId=sub)
    assert reply["action"] == "unsubscribe" and reply["subscriptionId"] == sub and "error" not in reply
    reply = client.send(action="unsubscribe", subscriptionId=sub)
    assert error_of(reply) == (404, "unavailable_data") and reply["subscriptionId"] == sub


def test_timebased_subscription_keeps_its_period(client, vehicle):
    client.send(
        action="subscribe",
        path=f"{ROOT}.Temperature.Average",
        authorization=token(vehicle),
        filter={"type": "timebased", "parameter": {"period": "200"}},
    )
    stamps = []
    for _ in range(4):
        client.notification()
        stamps.append(time.monotonic())
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    assert gaps[0] > 0.1 and gaps[1] < 1.0, gaps  # never faster than the period; its median near it, even loaded


def test_change_subscription_notifies_only_beyond_the_difference(client, vehicle):
    vehicle.hub.publish({RANGE: 100_000})
    client.send(
        action="subscribe",
        path=RANGE,
        authorization=token(vehicle),
        filter={"type": "change", "parameter": {"logic-op": "gt", "diff": "1000"}},
    )
    assert client.notification()["data"]["dp"]["value"] == "100000"  # the current value starts it
    vehicle.hub.publish({RANGE: 100_500})
    vehicle.hub.publish({RANGE: 102_000})
    assert client.notification()["data"]["dp"]["value"] == "102000"


def test_change_filter_applies_its_diff_with_its_sign_and_to_booleans(client, vehicle):
    vehicle.hub.publish({RANGE: 100_000})
    client.send(
        action="subscribe",
        path=RANGE,
        authorization=token(vehicle),
        filter={"type": "change", "parameter": {"logic-op": "lt", "diff": "-1000"}},
    )
    assert client.notification()["data"]["dp"]["value"] == "100000"
    for value in (101_000, 99_500, 98_000):  # up, down by 500 (not beyond -1000), down by 2000 from the last sent
        vehicle.hub.publish({RANGE: value})
    assert client.notification()["data"]["dp"]["value"] == "98000"
    charging = f"{ROOT}.Charging.IsCharging"
    client.send(
        action="subscribe",
        path=charging,
        authorization=token(vehicle),
        filter={"type": "change", "parameter": {"logic-op": "gt", "diff": "0"}},
    )  # false -> true only
    assert client.notification()["data"]["path"] == charging  # the current value starts it
    vehicle.hub.publish({charging: True})
    assert client.notification()["data"]["dp"]["value"] == "true"


def test_range_filter_notifies_only_values_inside_the_range(client, vehicle):
    vehicle.hub.publish({RANGE: 100_000})
    first = client.send(
        action="subscribe",
        path=RANGE,
        authorization=token(vehicle),
        filter={
            "type": "range",
            "parameter": [
                {"boundary-op": "lt", "boundary": "50000", "combination-op": "OR"},
                {"boundary-op": "gt", "boundary": "150000"},
            ],
        },
    )
    for value in (120_000, 40_000, 90_000, 200_000):
        vehicle.hub.publish({RANGE: value})
    assert [client.notification()["data"]["dp"]["value"] for _ in range(2)] == ["40000", "200000"]
    inside = client.send(
        action="subscribe",
        path=RANGE,
        authorization=token(vehicle),
        filter={
            "type": "range",
            "parameter": [{"boundary-op": "gte", "boundary": "100"}, {"boundary-op": "lte", "boundary": "200"}],
        },
    )
    vehicle.hub.publish({RANGE: 1000})  # inside the first range only
    vehicle.hub.publish({RANGE: 150})  # inside both
    heard = [(m["subscriptionId"], m["data"]["dp"]["value"]) for m in (client.notification() for _ in range(3))]
    assert sorted(heard) == sorted(
        [(first["subscriptionId"], "1000"), (first["subscriptionId"], "150"), (inside["subscriptionId"], "150")]
    )
    refused = client.send(
        action="subscribe",
        path=f"{ROOT}.ErrorCodes",
        authorization=token(vehicle),
        filter={"type": "range", "parameter": {"boundary-op": "gt", "boundary": "1"}},
    )
    assert error_of(refused) == (400, "bad_request") and "numeric" in refused["error"]["message"]


def test_curvelog_sends_the_points_a_curve_needs_when_its_buffer_is_full(client, vehicle):
    power = f"{ROOT}.Charging.MaximumChargingCurrent.DC"  # not published by the demo vehicle
    start = time.time()
    vehicle.hub.publish({power: 10.0}, start)
    client.send(
        action="subscribe",
        path=power,
        authorization=token(vehicle),
        filter={"type": "curvelog", "parameter": {"maxerr": "0.5", "bufsize": "6"}},
    )
    for k, value in enumerate([11.0, 12.0, 13.2, 20.0, 20.1], start=1):  # a ramp, then a step
        vehicle.hub.publish({power: value}, start + k)
    series = client.notification()["data"]
    assert series["path"] == power
    assert [float(dp["value"]) for dp in series["dp"]] == [10.0, 13.2, 20.0, 20.1]  # 11 and 12 lie on the ramp
    assert [dp["ts"] for dp in series["dp"]] == sorted(dp["ts"] for dp in series["dp"])


def test_history_filter_reads_the_recorded_values(client, vehicle, monkeypatch):
    capacity = f"{ROOT}.NetCapacity"  # recorded here, never published by the demo vehicle
    now = time.time()
    to_complete = f"{ROOT}.Charging.TimeToComplete"
    vehicle.store.append_history(
        [(now - 7200, capacity, 60), (now - 1800, capacity, 59), (now - 60, capacity, 58), (now - 30, to_complete, 600)]
    )
    reply = client.send(
        action="get", path=capacity, authorization=token(vehicle), filter={"type": "history", "parameter": "PT1H"}
    )
    assert reply["data"]["path"] == capacity and [dp["value"] for dp in reply["data"]["dp"]] == ["59", "58"]
    day = client.send(
        action="get",
        path=ROOT,
        authorization=token(vehicle),
        filter=[
            {"type": "paths", "parameter": ["NetCapacity", "Charging.TimeToComplete"]},
            {"type": "history", "parameter": "P1DT2H"},
        ],
    )
    assert [(d["path"], len(d["dp"])) for d in day["data"]] == [(capacity, 3), (to_complete, 1)]
    for period in ("P1Y", "PT", "P2W", "1H", "P999D"):
        bad = client.send(
            action="get", path=capacity, authorization=token(vehicle), filter={"type": "history", "parameter": period}
        )
        assert error_of(bad) == (400, "bad_request") and period in bad["error"]["message"], bad
    none = client.send(
        action="get",
        path=f"{ROOT}.StateOfHealth",
        authorization=token(vehicle),
        filter={"type": "history", "parameter": "PT10M"},
    )
    assert error_of(none) == (404, "unavailable_data")
    monkeypatch.setattr("openbms.vehicle.service.MAX_HISTORY_POINTS", 2)
    too_many = client.send(
        action="get", path=capacity, authorization=token(vehicle), filter={"type": "history", "parameter": "P1D"}
    )
    assert error_of(too_many) == (400, "bad_request") and "shorter period" in too_many["error"]["message"]


def test_dynamic_metadata_server_capabilities_availability_and_access_control(client, vehicle):
    capabilities = client.send(
        action="get",
        path="Vehicle",  # no token: access control does not apply to it
        filter={"type": "dynamic-metadata", "parameter": "server_capabilities"},
    )["metadata"]
    assert {"timebased", "change", "range", "curvelog", "history", "static_metadata", "dynamic_metadata"} <= set(
        capabilities["filter"]
    ) and capabilities["transport_protocol"] == ["https", "wss"]
    reply = client.send(
        action="get",
        path=ROOT,
        authorization=token(vehicle),
        filter=[
            {"type": "paths", "parameter": ["StateOfCharge.Current", "StateOfHealth"]},
            {"type": "dynamic-metadata", "parameter": ["availability"]},
        ],
    )
    assert [(d["path"], d["dp"]["value"]) for d in reply["data"]] == [
        (SOC, "available"),
        (f"{ROOT}.StateOfHealth", "unavailable"),
    ]
    rates = client.send(
        action="get",
        path=ROOT,
        authorization=token(vehicle),
        filter=[
            {"type": "paths", "parameter": ["StateOfCharge.Current", "StateOfHealth"]},
            {"type": "dynamic-metadata", "parameter": "samplerate"},
        ],
    )["data"]
    assert rates["path"] == SOC and 1 < float(rates["dp"]["value"]) < 40  # the demo publishes at 20 Hz
    never = client.send(
        action="get",
        path=f"{ROOT}.StateOfHealth",
        authorization=token(vehicle),
        filter={"type": "dynamic-metadata", "parameter": "samplerate"},
    )
    assert error_of(never) == (404, "unavailable_data")
    validate = client.send(
        action="get", path=f"{ROOT}.Charging.ChargeLimit", filter={"type": "dynamic-metadata", "parameter": "validate"}
    )
    assert validate["data"]["dp"]["value"] == "read-write"
    assert error_of(
        client.send(action="get", path=ROOT, filter={"type": "dynamic-metadata", "parameter": "availability"})
    ) == (401, "missing_token")
    wrong = client.send(
        action="get", path=ROOT, filter={"type": "dynamic-metadata", "parameter": "server_capabilities"}
    )
    assert error_of(wrong) == (400, "bad_request") and "Vehicle" in wrong["error"]["message"]


def test_static_metadata_selects_keys_and_paths(client, vehicle):
    reply = client.send(
        action="get",
        path=f"{ROOT}.Charging",
        filter=[
            {"type": "paths", "parameter": ["ChargeLimit", "IsCharging"]},
            {"type": "static-metadata", "parameter": ["datatype", "unit"]},
        ],
    )
    assert reply["metadata"] == {
        "Charging": {
            "children": {"IsCharging": {"datatype": "boolean"}, "ChargeLimit": {"datatype": "uint8", "unit": "percent"}}
        }
    }
    bad = client.send(action="get", path=ROOT, filter={"type": "static-metadata", "parameter": ["colour"]})
    assert error_of(bad) == (400, "bad_request") and "datatype" in bad["error"]["message"]


def test_a_request_path_with_a_wildcard_is_refused(client, vehicle):
    reply = client.send(action="get", path="Vehicle.*", authorization=token(vehicle))
    assert error_of(reply) == (400, "bad_request") and "paths filter" in reply["error"]["message"]
    matched = client.send(
        action="get",
        path="Vehicle",
        authorization=token(vehicle),
        filter={"type": "paths", "parameter": "*.*.Temperature.*"},
    )
    assert matched["data"]["path"] == f"{ROOT}.Temperature.Average"  # the only one with a value: one data point


def test_bad_filters_are_explained(client, vehicle):
    tok = token(vehicle)
    for bad, says in (
        ({"type": "timebased", "parameter": {"period": "5"}}, "at least 100 ms"),
        ({"type": "change", "parameter": {"logic-op": "about"}}, "logic-op"),
        ({"type": "curvelog", "parameter": {}}, "maxerr"),
        ({"type": "range", "parameter": [{"boundary-op": "gt"}]}, "boundary"),
        ({"type": "history", "parameter": "PT1H"}, "applies to get"),
        ({"type": "magic"}, "not supported"),
        (
            [
                {"type": "change", "parameter": {"logic-op": "gt", "diff": "1"}},
                {"type": "timebased", "parameter": {"period": "500"}},
            ],
            "at most one other",
        ),
    ):
        reply = client.send(action="subscribe", path=SOC, authorization=tok, filter=bad)
        assert error_of(reply) == (400, "bad_request") and says in reply["error"]["message"], reply


# --- refusals, each while the watcher keeps receiving -------------------------------------------


def test_no_token(client):
    assert error_of(client.send(action="get", path=SOC)) == (401, "missing_token")


def test_expired_token(client, vehicle):
    past = Authority(vehicle.store, VIN, clock=lambda: time.time() - 3600)
    expired = past.token(past.grant("old-app", [f"read:{SOC}"], 60))
    assert error_of(client.send(action="get", path=SOC, authorization=expired)) == (401, "expired_token")


def test_token_for_another_vehicle(client, vehicle):
    other = Authority(vehicle.store, "OTHERVIN000000000")
    foreign = other.token(other.grant("app", [f"read:{SOC}"], 60))
    reply = client.send(action="get", path=SOC, authorization=foreign)
    assert error_of(reply) == (401, "invalid_token") and "OTHERVIN" in reply["error"]["message"]


def test_tampered_token(client, vehicle):
    tampered = token(vehicle)[:-6] + "AAAAAA"
    assert error_of(client.send(action="get", path=SOC, authorization=tampered)) == (401, "invalid_token")


def test_out_of_scope_paths(client, vehicle):
    soc_only = token(vehicle, f"read:{SOC}")
    assert error_of(client.send(action="get", path=f"{ROOT}.CurrentVoltage", authorization=soc_only)) == (
        403,
        "forbidden_request",
    )
    assert error_of(client.send(action="set", path=LIMIT, value="80", authorization=soc_only)) == (
        403,
        "forbidden_request",
    )
    assert error_of(client.send(action="set", path=SOC, value="80", authorization=token(vehicle))) == (
        400,
        "invalid_data",
    )


def test_revocation_is_immediate_for_requests_and_subscriptions(client, vehicle):
    authority = vehicle.authority
    grant = authority.grant("revoked-app", [f"read:{ROOT}"], 600)
    tok = authority.token(grant)
    sub = client.send(action="subscribe", path=SOC, authorization=tok)["subscriptionId"]
    client.notification()
    response = http.delete(
        f"{vehicle.http_url}/owner/grants/{grant.id}", headers={"Authorization": f"Bearer {token(vehicle, 'owner')}"}
    )
    assert response.status_code == 200
    while "error" not in (ended := client.notification()):  # notifications queued before the revocation
        pass
    assert ended["subscriptionId"] == sub and error_of(ended) == (401, "invalid_token")
    assert "revoked" in client.send(action="get", path=SOC, authorization=tok)["error"]["message"]


def test_revocation_from_another_process_ends_subscriptions(client, vehicle):
    grant = vehicle.authority.grant("cli-revoked-app", [f"read:{ROOT}"], 600)
    tok = vehicle.authority.token(grant)
    client.send(action="subscribe", path=SOC, authorization=tok)
    Store(vehicle.store.url).revoke_grant(grant.id, time.time())  # as `openbms revoke` does
    assert error_of(client.send(action="get", path=SOC, authorization=tok)) == (401, "invalid_token")
    msg = wait_for(lambda: m if "error" in (m := client.notification()) else None, "the subscription did not end")
    assert error_of(msg) == (401, "invalid_token")


def test_replayed_command(client, vehicle):
    tok, request_id = token(vehicle), uuid.uuid4().hex
    assert "error" not in client.send(action="set", path=LIMIT, value="70", requestId=request_id, authorization=tok)
    replay = client.send(action="set", path=LIMIT, value="70", requestId=request_id, authorization=tok)
    assert error_of(replay) == (403, "forbidden_request") and replay["requestId"] == request_id


def test_malformed_json_and_requests(client, vehicle):
    client.ws.send("{not json")
    assert error_of(client.reply(None)) == (400, "bad_request")
    client.ws.send("[1, 2]")
    assert error_of(client.reply(None)) == (400, "bad_request")
    assert error_of(client.send(action="fly", path=SOC)) == (400, "bad_request")
    reply = client.send(action="set", path=LIMIT, value="101", authorization=token(vehicle))
    assert error_of(reply) == (400, "invalid_data") and "within [0, 100]" in reply["error"]["message"]


def test_oversized_message_and_long_path(client, vehicle):
    client.ws.send(json.dumps({"action": "get", "path": SOC, "requestId": "big", "padding": "x" * 4096}))
    assert error_of(client.reply(None)) == (400, "bad_request")  # not parsed, so no requestId to echo
    reply = client.send(action="get", path="Vehicle." + "A" * 300, authorization=token(vehicle))
    assert error_of(reply) == (400, "bad_request") and "characters long" in reply["error"]["message"]
    assert "data" in client.send(action="get", path=SOC, authorization=token(vehicle))  # still served


def audit_of(vehicle, request_id: str) -> list:
    return [r for r in vehicle.store.audit(200) if r.request_id == request_id]


def test_every_refused_set_is_audited_with_its_reason(client, vehicle):
    """Replays, expired, revoked and foreign tokens, rate-limited and malformed sets: each is in the audit."""
    tok, request_id = token(vehicle), uuid.uuid4().hex
    assert "error" not in client.send(action="set", path=LIMIT, value="71", requestId=request_id, authorization=tok)
    assert error_of(client.send(action="set", path=LIMIT, value="72", requestId=request_id, authorization=tok)) == (
        403,
        "forbidden_request",
    )
    first, replay = reversed(audit_of(vehicle, request_id))
    assert first.accepted and not replay.accepted and "replayed" in replay.reason and replay.requested == "72"

    past = Authority(vehicle.store, VIN, clock=lambda: time.time() - 3600)
    old = past.grant("old-app", [f"actuate:{LIMIT}"], 60)
    revoked = vehicle.authority.grant("gone-app", [f"actuate:{LIMIT}"], 600)
    vehicle.authority.revoke(revoked.id)
    cases = [
        (past.token(old), "old-app", old.id, "expired"),
        (vehicle.authority.token(revoked), "gone-app", revoked.id, "revoked"),
        (tok[:-6] + "AAAAAA", "(no valid token)", "", "invalid"),
        (None, "(no valid token)", "", "missing"),
    ]
    for credential, app, grant_id, why in cases:
        request_id = uuid.uuid4().hex
        assert (
            error_of(client.send(action="set", path=LIMIT, value="60", requestId=request_id, authorization=credential))[
                0
            ]
            == 401
        )
        (record,) = audit_of(vehicle, request_id)
        assert (record.app, record.grant_id, record.accepted, record.requested) == (app, grant_id, False, "60")
        assert why in record.reason

    request_id = uuid.uuid4().hex
    reply = client.send(action="set", path=LIMIT, value="8_0", requestId=request_id, authorization=tok)
    assert error_of(reply) == (400, "invalid_data")
    (record,) = audit_of(vehicle, request_id)
    assert record.requested == "8_0" and "JSON writes" in record.reason and not record.accepted

    hasty, n = token(vehicle, f"actuate:{LIMIT}", app="hasty-app"), 8 * int(LIMITS.burst)
    request_id = uuid.uuid4().hex
    for k in range(n):  # the token's burst spent at once, the set right behind it
        client.ws.send(json.dumps({"action": "get", "path": LIMIT, "requestId": f"hasty-{k}", "authorization": hasty}))
    client.ws.send(
        json.dumps({"action": "set", "path": LIMIT, "value": "65", "requestId": request_id, "authorization": hasty})
    )
    for k in range(n):
        client.reply(f"hasty-{k}")
    assert error_of(client.reply(request_id)) == (429, "too_many_requests")
    (record,) = audit_of(vehicle, request_id)
    assert record.app == "hasty-app" and "requests/s" in record.reason


def test_nan_infinity_and_huge_numbers_are_refused_and_the_audit_stays_readable(client, vehicle):
    read_only = token(vehicle, f"read:{ROOT}")
    owner = bearer(token(vehicle, "owner", app="owner"))
    for literal in ("NaN", "Infinity", "-Infinity", "1" * 400):
        request_id = uuid.uuid4().hex
        for credential in (read_only, token(vehicle)):
            client.ws.send(
                f'{{"action": "set", "path": "{LIMIT}", "value": {literal}, '
                f'"requestId": "{request_id}", "authorization": "{credential}"}}'
            )
            assert error_of(client.reply(request_id))[0] in (400, 403)
        rows = audit_of(vehicle, request_id)
        assert len(rows) == 2 and not any(r.accepted for r in rows)
        assert all(isinstance(r.requested, (str, int)) for r in rows)
    audit = http.get(f"{vehicle.http_url}/owner/audit", headers=owner, params={"limit": 200})
    assert audit.status_code == 200 and {"NaN", "Infinity", "-Infinity"} <= {r["requested"] for r in audit.json()}
    assert vehicle.hub.read(LIMIT)[0] != 111  # nothing applied


def test_deeply_nested_json_gets_one_error_and_the_connection_stays(client, vehicle):
    client.ws.send("[" * 1000 + "]" * 1000)
    reply = client.reply(None)
    assert error_of(reply) == (400, "bad_request") and "nests 1000 levels" in reply["error"]["message"]
    client.ws.send(f'{{"action": "get", "path": "{SOC}", "requestId": "x", "filter": {"[" * 40 + "]" * 40}}}')
    assert error_of(client.reply(None)) == (400, "bad_request")  # not parsed: no requestId to echo
    assert "data" in client.send(action="get", path=SOC, authorization=token(vehicle))
    url = f"{vehicle.http_url}/{SOC.replace('.', '/')}"
    deep = http.get(url, params={"filter": "[" * 1500}, headers=bearer(token(vehicle)))
    assert deep.status_code == 400 and "nests 1500 levels" in deep.json()["error"]["message"]


def test_a_frame_that_cannot_be_read_is_audited_as_a_malformed_request(client, vehicle):
    """Not JSON, not an object, no action: any of them may have been a set, so its refusal is audited with the
    frame as bounded text; a broken frame that names a read action is not."""
    marker = uuid.uuid4().hex
    frames = [
        f'{{"action": "set", "path": "{LIMIT}", "value": 11, "requestId": "{marker}-1"',
        f'[{{"action": "set", "path": "{LIMIT}", "value": 11, "requestId": "{marker}-2"}}]',
        f'"set {marker}-3"',
        f'{{"path": "{LIMIT}", "value": 11, "requestId": "{marker}-4"}}',
        f"{marker}-5 " + "\u0000x" * 700,
    ]
    before = vehicle.hub.read(LIMIT)[0]
    for frame in frames:
        client.ws.send(frame)
        assert error_of(client.reply(None)) == (400, "bad_request")
    client.ws.send(f'{{"action": "get", "path": "{SOC}", "requestId": "{marker}-6"')
    assert error_of(client.reply(None)) == (400, "bad_request")
    rows = {}
    for r in vehicle.store.audit(500):
        for k in range(1, 7):
            if f"{marker}-{k}" in json.dumps(r.requested) + r.request_id:
                rows[k] = r
    assert sorted(rows) == [1, 2, 3, 4, 5]  # the read is not there
    assert not any(r.accepted for r in rows.values()) and vehicle.hub.read(LIMIT)[0] == before
    assert "not valid JSON" in rows[1].reason and rows[1].requested == frames[0]
    assert "must be a JSON object" in rows[2].reason and "must be a JSON object" in rows[3].reason
    assert "'action' must be one of" in rows[4].reason and rows[4].request_id == f"{marker}-4"
    assert len(rows[5].requested) < 300 and rows[5].requested.endswith(f"({len(frames[4])} characters in all)")
    owner = bearer(token(vehicle, "owner", app="owner"))
    assert http.get(f"{vehicle.http_url}/owner/audit", headers=owner, params={"limit": 500}).status_code == 200


def test_a_request_to_change_something_at_a_malformed_url_is_audited(vehicle):
    """POST, PUT, PATCH and DELETE refused by their URL (a wildcard path, no such resource, a method it does not
    take) or by a body that is not JSON: each is audited with its method, URL and body; a GET is not."""
    tok, marker = token(vehicle), uuid.uuid4().hex
    before = vehicle.hub.read(LIMIT)[0]
    body = json.dumps({"value": "55", "requestId": marker})
    limit_url = "/" + LIMIT.replace(".", "/")
    cases = [
        ("POST", "/Vehicle/Powertrain/TractionBattery/Charging/*", 400),
        ("POST", "/Vehicl/Powertrain/TractionBattery/Charging/ChargeLimit", 400),  # the static files: 405
        ("PUT", limit_url, 400),
        ("PATCH", limit_url, 400),
        ("DELETE", "/owner/grants", 400),
        ("POST", "/index.html", 400),
    ]
    for method, url, status in cases:
        answer = http.request(method, vehicle.http_url + url, content=body, headers=bearer(tok))
        assert answer.status_code == status, (method, url, answer.text)
        (record,) = [r for r in vehicle.store.audit(500) if r.path == f"{method} {url}" and marker in r.requested]
        assert not record.accepted and record.reason == answer.json()["error"]["message"]
        assert (record.app, record.requested) == ("test-app", body)
    not_json = http.post(vehicle.http_url + limit_url, content=f"value=55&id={marker}", headers=bearer(tok))
    assert not_json.status_code == 400
    (record,) = [r for r in vehicle.store.audit(500) if r.path == LIMIT and marker in str(r.requested)]
    assert record.requested == f"value=55&id={marker}" and "not valid JSON" in record.reason
    too_long = http.post(f"{vehicle.http_url}/Vehicle/{marker}{'A' * 2000}", content=body, headers=bearer(tok))
    assert too_long.status_code == 400  # refused at the edge, before routing: audited all the same
    (record,) = [r for r in vehicle.store.audit(500) if r.path.startswith(f"POST /Vehicle/{marker}")]
    assert record.requested == body and "at most 1024" in record.reason
    assert http.get(f"{vehicle.http_url}/Vehicl/{marker}", headers=bearer(tok)).status_code == 404
    assert not [r for r in vehicle.store.audit(500) if f"/Vehicl/{marker}" in r.path]  # a read: not audited
    assert vehicle.hub.read(LIMIT)[0] == before


def test_a_flood_of_refusals_is_counted_not_written_row_by_row(tmp_path):
    """One client's repeated refusal is one row with a count; past `refusal_kinds` different ones in a window,
    the rest count on one more row: 600 junk frames make 6 rows, and every one of them is counted."""
    hub = SignalHub()
    DemoVehicle(hub).publish()
    store = Store(f"sqlite:///{tmp_path / 'openbms.db'}")
    with running_server(hub, store, limits=Limits(refusal_kinds=5, refusal_window_s=3600)) as server:
        flood = Client(server.viss_url)
        for k in range(600):
            flood.ws.send('{"action": "set", "value": 8' if k % 2 else f"junk {k}")
            assert error_of(flood.reply(None)) == (400, "bad_request")
        rows = wait_for(
            lambda: (found := store.audit(1000)) and sum(r.count for r in found) == 600 and found,
            "the counts of the repeated refusals were not written",
        )
    store.close()
    assert len(rows) == 6 and not any(r.accepted for r in rows)
    counts = sorted(r.count for r in rows)
    assert counts == [1, 1, 1, 1, 296, 300], counts
    overflow = next(r for r in rows if r.count == 296)
    assert "more than 5 different refusals of peer:127.0.0.1" in overflow.reason
    assert next(r for r in rows if r.count == 300).last_time >= overflow.time


def test_head_and_get_never_actuate(vehicle):
    url = f"{vehicle.http_url}/{LIMIT.replace('.', '/')}"
    tok = token(vehicle)
    before = vehicle.hub.read(LIMIT)[0]
    body = json.dumps({"value": "55" if before != 55 else "56", "requestId": uuid.uuid4().hex})
    for method in ("HEAD", "GET"):
        response = http.request(method, url, content=body, headers={**bearer(tok), "content-type": "application/json"})
        assert response.status_code == 200
    assert vehicle.hub.read(LIMIT)[0] == before
    assert not audit_of(vehicle, json.loads(body)["requestId"])


def test_a_token_from_another_issuer_is_refused(client, vehicle):
    claims = {**jwt.decode(token(vehicle), options={"verify_signature": False}), "iss": "someone-else"}
    forged = jwt.encode(claims, vehicle.authority._private_key, algorithm="EdDSA")  # this vehicle's key, other iss
    reply = client.send(action="get", path=SOC, authorization=forged)
    assert error_of(reply) == (401, "invalid_token") and "issuer" in reply["error"]["message"].lower()


def test_unknown_path(client, vehicle):
    reply = client.send(action="get", path=f"{ROOT}.Flux", authorization=token(vehicle))
    assert error_of(reply) == (404, "unavailable_data")


def test_too_many_subscriptions(client, vehicle):
    tok = token(vehicle)
    for _ in range(LIMITS.max_subscriptions):
        assert "subscriptionId" in client.send(action="subscribe", path=SOC, authorization=tok)
    assert error_of(client.send(action="subscribe", path=SOC, authorization=tok)) == (429, "too_many_requests")


def test_rate_limit_per_token(client, vehicle):
    tok, n = token(vehicle), 4 * int(LIMITS.burst)  # sent at once: the bucket refills too slowly, even loaded
    for k in range(n):
        client.ws.send(json.dumps({"action": "get", "path": SOC, "requestId": f"burst-{k}", "authorization": tok}))
    replies = [client.reply(f"burst-{k}") for k in range(n)]
    assert error_of(replies[-1]) == (429, "too_many_requests")
    assert "data" in client.send(action="get", path=SOC, authorization=token(vehicle))  # other tokens are served


def test_a_client_without_the_subprotocol_is_turned_away(vehicle):
    with pytest.raises(InvalidStatus, match="403"), connect(vehicle.viss_url, open_timeout=PATIENCE_S):
        pass


# --- HTTP ---------------------------------------------------------------------------------------


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def test_http_get_and_set(vehicle):
    url = f"{vehicle.http_url}/{LIMIT.replace('.', '/')}"
    tok = token(vehicle)
    response = http.post(url, json={"value": "95", "requestId": uuid.uuid4().hex}, headers=bearer(tok))
    assert response.status_code == 200 and response.json()["data"]["dp"]["value"] == "95"
    assert http.get(url, headers=bearer(tok)).json()["data"]["dp"]["value"] == "95"
    filtered = http.get(
        f"{vehicle.http_url}/{ROOT.replace('.', '/')}",
        headers=bearer(tok),
        params={"filter": json.dumps({"type": "paths", "parameter": ["StateOfCharge/Current"]})},
    )
    assert filtered.json()["data"]["path"] == SOC


def test_http_refusals(vehicle):
    url = f"{vehicle.http_url}/{LIMIT.replace('.', '/')}"
    missing = http.get(url)
    assert missing.status_code == 401 and missing.json()["error"]["reason"] == "missing_token"
    assert "invalid_token" in missing.headers["www-authenticate"]
    no_request_id = http.post(url, json={"value": "80"}, headers=bearer(token(vehicle)))
    assert no_request_id.status_code == 400 and "requestId" in no_request_id.json()["error"]["message"]
    too_big = http.post(url, content=b"x" * 5000, headers=bearer(token(vehicle)))
    assert too_big.status_code == 400 and "bytes" in too_big.json()["error"]["message"]
    unknown = http.get(f"{vehicle.http_url}/Vehicle/Flux", headers=bearer(token(vehicle)))
    assert unknown.status_code == 404 and unknown.json()["error"]["reason"] == "unavailable_data"
    for response in (
        http.get(f"{vehicle.http_url}/Some/Unknown/Datapoint"),
        http.put(url, json={"value": "80"}),
        http.get(f"{vehicle.http_url}/Vehicle/*", headers=bearer(token(vehicle))),
    ):
        body = response.json()  # every refusal is a VISS error object with the server's time
        assert response.status_code == body["error"]["number"] and body["ts"].endswith("Z"), body
        assert response.headers["content-type"] == "application/json"


def test_owner_endpoints(vehicle):
    owner = bearer(token(vehicle, "owner", app="owner"))
    created = http.post(
        f"{vehicle.http_url}/owner/grants",
        headers=owner,
        json={"app": "fleet-app", "scopes": [f"read:{SOC}"], "ttl_s": 60},
    )
    assert created.status_code == 201
    app_token, grant_id = created.json()["token"], created.json()["grant"]["id"]
    assert http.get(f"{vehicle.http_url}/{SOC.replace('.', '/')}", headers=bearer(app_token)).status_code == 200
    listed = http.get(f"{vehicle.http_url}/owner/grants", headers=owner).json()
    assert {"id": grant_id, "status": "active"}.items() <= next(g for g in listed if g["id"] == grant_id).items()
    assert http.get(f"{vehicle.http_url}/owner/grants", headers=bearer(app_token)).status_code == 403
    bad = http.post(f"{vehicle.http_url}/owner/grants", headers=owner, json={"app": "x", "scopes": ["read:Nope"]})
    assert bad.status_code == 400 and "read:Nope" in bad.json()["error"]["message"]
    assert http.delete(f"{vehicle.http_url}/owner/grants/nope", headers=owner).status_code == 404

    audit = http.get(f"{vehicle.http_url}/owner/audit", headers=owner, params={"limit": 5}).json()
    assert 0 < len(audit) <= 5 and {"app", "grant_id", "path", "requested", "applied", "accepted"} <= audit[0].keys()
    granted = next(r for r in vehicle.store.audit(50) if r.applied == grant_id)  # the owner's changes are audited
    assert (granted.path, granted.accepted, granted.app) == ("owner:grants", True, "owner")
    assert http.delete(f"{vehicle.http_url}/owner/grants/{grant_id}", headers=owner).status_code == 200
    revoked, refused_delete = [r for r in vehicle.store.audit(50) if r.path.startswith("owner:grants/")][:2]
    assert revoked.path == f"owner:grants/{grant_id}" and revoked.accepted
    assert refused_delete.path == "owner:grants/nope" and not refused_delete.accepted
    assert any(r.path == "owner:grants" and not r.accepted and "read:Nope" in r.reason for r in vehicle.store.audit(50))

    history = wait_for(  # the recorder samples once a period (1 s)
        lambda: (
            (
                h := http.get(
                    f"{vehicle.http_url}/owner/history",
                    headers=owner,
                    params={"path": SOC, "start": time.time() - 60, "points": 10},
                ).json()
            )["points"]
            and h
        ),
        "no history was recorded",
    )
    assert history["path"] == SOC and 0 < len(history["points"]) <= 10
    bad_points = http.get(f"{vehicle.http_url}/owner/history", headers=owner, params={"path": SOC, "points": "x"})
    assert bad_points.status_code == 400


def test_static_dashboard_is_served(vehicle):
    assert "dashboard" in http.get(f"{vehicle.http_url}/").text


def test_dashboard_websocket_on_the_http_port(vehicle):
    c = Client(vehicle.http_url.replace("http", "ws") + "/viss")
    assert "data" in c.send(action="get", path=SOC, authorization=token(vehicle))
    c.close()


# --- the edge: hosts, origins, headers, slow peers ---------------------------------------------


def test_every_http_answer_carries_the_security_headers(vehicle):
    owner = bearer(token(vehicle, "owner", app="owner"))
    answers = [
        http.get(f"{vehicle.http_url}/"),
        http.get(f"{vehicle.http_url}/missing.js"),
        http.get(f"{vehicle.http_url}/{SOC.replace('.', '/')}"),
        http.post(
            f"{vehicle.http_url}/owner/grants",
            headers=owner,
            json={"app": "headers-app", "scopes": [f"read:{SOC}"], "ttl_s": 60},
        ),
    ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"
    assert answers[3].status_code == 201 and "token" in answers[3].json()
    assert answers[3].headers["cache-control"] == "no-store"  # the answer that carries a new token
    assert answers[2].headers["cache-control"] == "no-store" and answers[0].headers["cache-control"] == "no-cache"


def test_only_the_served_names_and_the_dashboards_origin_get_in(vehicle):
    url = f"{vehicle.http_url}/{SOC.replace('.', '/')}"
    rebound = http.get(url, headers={**bearer(token(vehicle)), "Host": "attacker.example"})
    assert rebound.status_code == 400 and "--server-name" in rebound.json()["error"]["message"]
    assert http.get(url.replace("127.0.0.1", "localhost"), headers=bearer(token(vehicle))).status_code == 200
    for ws_url in (vehicle.viss_url, vehicle.http_url.replace("http", "ws") + "/viss"):
        with pytest.raises(InvalidStatus, match="403"):
            connect(ws_url, subprotocols=["VISSv2"], origin="http://attacker.example", open_timeout=PATIENCE_S)
    with connect(
        vehicle.http_url.replace("http", "ws") + "/viss",
        subprotocols=["VISSv2"],
        origin=vehicle.http_url,
        open_timeout=PATIENCE_S,
    ) as page:  # the dashboard, from its own page
        page.send(json.dumps({"action": "get", "path": SOC, "requestId": "1", "authorization": token(vehicle)}))
        assert "data" in json.loads(page.recv(timeout=PATIENCE_S))


def test_a_long_path_is_refused_before_routing(vehicle):
    answer = http.get(f"{vehicle.http_url}/Vehicle/{'A' * 2000}", headers=bearer(token(vehicle)))
    assert answer.status_code == 400 and "at most 1024" in answer.json()["error"]["message"]


@pytest.fixture
def strict_server(tmp_path):
    """A server with short edge limits, and a hub that publishes a 2 000-cell array a hundred times a second."""
    hub, store = SignalHub(), Store(f"sqlite:///{tmp_path / 'edge.db'}")
    stop = threading.Event()

    def flood():
        while not stop.wait(0.01):
            hub.publish({f"{ROOT}.CellVoltage.CellVoltages": [3.3] * 2000, SOC: 50.0})

    threading.Thread(target=flood, daemon=True).start()
    with running_server(
        hub, store, vehicle_id=VIN, limits=Limits(send_queue_bytes=65_536), edge=Edge(header_timeout_s=1.0, stall_s=1.0)
    ) as server:
        yield server
    stop.set()
    store.close()


def host_and_port(url: str) -> tuple[str, int]:
    host, port = url.rpartition("/")[2].rsplit(":", 1)
    return host, int(port)


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server ends the connection (EOF or reset); True when it did."""
    sock.settimeout(PATIENCE_S)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_a_peer_that_never_finishes_its_headers_is_closed(strict_server):
    sock = socket.create_connection(host_and_port(strict_server.http_url))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    def drip():  # slowloris: a header line every 0.2 s, the head never complete
        try:
            while True:
                sock.send(b"X-a: b\r\n")
                time.sleep(0.2)
        except OSError:
            return

    threading.Thread(target=drip, daemon=True).start()
    assert closed_by_server(sock)
    sock.close()


def test_a_client_that_never_reads_is_disconnected(strict_server):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(host_and_port(strict_server.viss_url))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: VISSv2\r\n\r\n"
        ).encode()
    )
    subscribe = json.dumps(
        {"action": "subscribe", "path": ROOT, "requestId": "1", "authorization": token(strict_server, f"read:{ROOT}")}
    ).encode()
    mask = os.urandom(4)
    sock.sendall(
        bytes([0x81, 0xFE])
        + struct.pack("!H", len(subscribe))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(subscribe))
    )
    fanout = strict_server.server.interface.fanout
    wait_for(lambda: len(fanout) == 1, "the subscription did not start")
    wait_for(lambda: len(fanout) == 0, "the client that does not read kept its subscription")
    assert closed_by_server(sock)
    sock.close()


# --- TLS ----------------------------------------------------------------------------------------


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openbms test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls_for_both_transports(tmp_path):
    import ssl

    cert, key = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=cert)
    hub = SignalHub(stale_after_s=PATIENCE_S)  # published once: live for the whole test
    DemoVehicle(hub).publish()
    store = Store(f"sqlite:///{tmp_path / 'tls.db'}")
    with running_server(hub, store, vehicle_id=VIN, cert=cert, key=key) as server:
        assert server.viss_url.startswith("wss://") and server.http_url.startswith("https://")
        tok = token(server)
        with connect(server.viss_url, subprotocols=["VISSv2"], ssl=trust, open_timeout=PATIENCE_S) as ws:
            ws.send(json.dumps({"action": "get", "path": SOC, "requestId": "1", "authorization": tok}))
            assert json.loads(ws.recv(timeout=PATIENCE_S))["data"]["path"] == SOC
        response = httpx.get(f"{server.http_url}/{SOC.replace('.', '/')}", headers=bearer(tok), verify=trust)
        assert response.status_code == 200
    store.close()
