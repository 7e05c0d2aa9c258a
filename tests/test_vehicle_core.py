"""The vehicle interface without a network: catalogue rules, tokens and grants, and the store across restarts."""

from __future__ import annotations

import json
import os
import sqlite3
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from openbms.vehicle import vss
from openbms.vehicle.errors import VissError
from openbms.vehicle.filters import essential_points, history_seconds
from openbms.vehicle.auth import AuthError, Authority
from openbms.vehicle.hub import Requester, SetResult, SignalHub
from openbms.vehicle.refusals import RefusalLog
from openbms.vehicle.store import AuditRecord, StorageError, Store

ROOT = "Vehicle.Powertrain.TractionBattery"
SOC = f"{ROOT}.StateOfCharge.Current"
LIMIT = f"{ROOT}.Charging.ChargeLimit"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'vehicle.db'}")
    yield s
    s.close()


VSS_UNITS = ("percent", "A", "Ah", "V", "W", "kW", "kWh", "s", "m", "Ohm", "Celsius")  # names of VSS 6.0 units.yaml
OFFICIAL_VSS = Path(
    os.environ.get("OPENBMS_VSS_JSON", Path(__file__).parents[1] / ".." / "shared" / "vss" / "vss_release_6.0.json")
)


def test_catalogue_follows_vss_datatypes_and_units():
    assert vss.node(SOC).unit == "percent" and vss.node(SOC).datatype == "float"
    assert vss.node(LIMIT).type == "actuator" and vss.node(LIMIT).datatype == "uint8"
    assert vss.node("Vehicle.Powertrain.TractionBattery.Range").unit == "m"
    assert vss.node("Vehicle.Powertrain.TractionBattery.Temperature.Average").unit == "Celsius"
    assert not vss.node("Vehicle.Powertrain.TractionBattery.Charging").is_leaf


@pytest.mark.skipif(not OFFICIAL_VSS.is_file(), reason=f"the official VSS 6.0 export is not at {OFFICIAL_VSS}")
def test_the_shipped_branch_is_the_official_vss_6_0_export_s():
    official = json.loads(OFFICIAL_VSS.read_text(encoding="utf-8"))
    shipped = json.loads(resources.files("openbms.vehicle").joinpath("data", vss.VSS_FILE).read_text(encoding="utf-8"))
    assert shipped == vss.branch_of(official, vss.ROOT)
    official_nodes = vss.load(official, {})
    branch = [path for path in official_nodes if vss.covers(vss.ROOT, path)]
    assert len(branch) > 100  # every node of the branch is served, with VSS's own metadata
    for path in branch:
        assert vss.node(path).metadata() == official_nodes[path].metadata(), path


def test_the_overlay_only_adds_below_its_own_branch():
    def data(name: str) -> dict:
        return json.loads(resources.files("openbms.vehicle").joinpath("data", name).read_text(encoding="utf-8"))

    overlaid, standard = vss.load(data(vss.OVERLAY_FILE), {}), vss.load(data(vss.VSS_FILE), {})
    assert [p for p in overlaid if p in standard] == ["Vehicle", "Vehicle.Powertrain", vss.ROOT]  # the way down
    added = [p for p in overlaid if p not in standard]
    assert all(vss.covers(f"{vss.ROOT}.OpenBMS", p) for p in added)
    assert {
        f"{vss.ROOT}.OpenBMS.{name}"
        for name in (
            "StateOfChargeBound",
            "Health.StateOfCertifiedEnergy",
            "Health.StateOfCertifiedRange",
            "MaxChargePower",
            "MaxDischargePower",
            "ContactorState",
            "IsBalancing",
            "BalancingCells",
            "ThermalWarning",
            "InsulationResistance",
        )
    } <= set(added)
    for path in added:  # in VSS's own terms
        n = vss.node(path)
        assert n.type in ("branch", "sensor") and n.metadata()["description"], path
        assert n.unit in (None, *VSS_UNITS), path


def test_an_overlay_replaces_keys_and_adds_nodes():
    base = {
        "A": {
            "type": "branch",
            "description": "a",
            "children": {"B": {"type": "sensor", "datatype": "float", "description": "b", "unit": "V"}},
        }
    }
    layer = {
        "A": {"children": {"B": {"unit": "mV"}, "C": {"type": "sensor", "datatype": "boolean", "description": "c"}}}
    }
    nodes = vss.load(base, layer)
    assert list(nodes) == ["A", "A.B", "A.C"] and nodes["A.B"].unit == "mV" and nodes["A.B"].datatype == "float"
    assert nodes["A"].children == ("A.B", "A.C") and nodes["A"].metadata() == {"type": "branch", "description": "a"}


def test_coerce_accepts_wire_strings_and_names_the_broken_rule():
    assert vss.coerce(LIMIT, "80") == 80
    assert vss.coerce(SOC, "55.5") == 55.5
    assert vss.coerce("Vehicle.Powertrain.TractionBattery.Charging.IsCharging", "true") is True
    with pytest.raises(vss.InvalidValue, match=r"within \[0, 100\] percent"):
        vss.coerce(LIMIT, "120")
    with pytest.raises(vss.InvalidValue, match="whole number"):
        vss.coerce(LIMIT, "80.5")
    with pytest.raises(vss.InvalidValue, match="START, STOP"):
        vss.coerce("Vehicle.Powertrain.TractionBattery.Charging.StartStopCharging", "GO")
    with pytest.raises(vss.InvalidValue, match="finite"):
        vss.coerce(SOC, "nan")
    with pytest.raises(vss.UnknownPath, match="not a signal"):
        vss.coerce("Vehicle.Powertrain.TractionBattery.Nope", 1)


def test_branches_and_paths_filter_select_leaves():
    soc_leaves = vss.select("Vehicle.Powertrain.TractionBattery.StateOfCharge")
    assert soc_leaves == [
        SOC,
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.CurrentEnergy",
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed",
    ]
    picked = vss.select("Vehicle.Powertrain.TractionBattery", ["StateOfCharge.Current", "Temperature/*"])
    assert picked[0] == SOC and len(picked) == 5  # Average, CellTemperature, Max, Min
    with pytest.raises(vss.InvalidValue, match="characters long"):
        vss.normalize_path("Vehicle." + "x" * 300)
    assert vss.normalize_path("Vehicle/Powertrain/TractionBattery") == "Vehicle.Powertrain.TractionBattery"


def test_curve_logging_keeps_every_sample_within_maxerr_of_the_curve():
    times = np.linspace(0.0, 60.0, 601)
    values = 50 + 20 * np.sin(times / 7) + np.where(times > 30, 15.0, 0.0)  # a wave with a step
    for max_error in (0.05, 0.5, 5.0):
        keep = essential_points(list(times), list(values), max_error)
        assert keep[0] == 0 and keep[-1] == len(times) - 1 and keep == sorted(set(keep))
        curve = np.interp(times, times[keep], values[keep])
        assert np.max(np.abs(curve - values)) <= max_error + 1e-12
    assert len(essential_points(list(times), list(values), 0.05)) > len(essential_points(list(times), list(values), 5))
    assert essential_points([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], 0.0) == [0, 3]  # a line needs its ends only


def test_history_periods_are_iso_8601_days_to_seconds():
    assert history_seconds("P2DT12H") == 2.5 * 86400 and history_seconds("PT10M") == 600
    assert history_seconds("PT1H30M15.5S") == 5415.5 and history_seconds("P1D") == 86400
    for bad in ("P1Y", "P1M", "P2W", "PT", "P", "PT-5M", "2H", "", "P999D"):
        with pytest.raises(VissError, match="period") as exc:
            history_seconds(bad)
        assert exc.value.reason == "bad_request"


def test_error_objects_use_only_the_specifications_pairs():
    assert VissError("missing_token", "x").as_dict() == {"number": 401, "reason": "missing_token", "message": "x"}
    assert VissError("unavailable_data", "x").number == 404 and VissError("invalid_data", "x").number == 400
    with pytest.raises(ValueError, match="not a VISS v2 error reason"):
        VissError("token_missing", "x")


def test_hub_asks_the_handler_and_publishes_what_was_committed():
    hub, committed = SignalHub(), []
    hub.set_actuator_handler(lambda path, value, who, commit: SetResult(True, max(50, min(100, value)), "clamped"))
    result = hub.request_set(LIMIT, "30", Requester("app", "g", "r1"), lambda r, state: committed.append(r))
    assert result == SetResult(True, 50, "clamped") and committed == [result]  # committed for a stateless handler
    assert hub.read(LIMIT)[0] == 50
    with pytest.raises(vss.InvalidValue, match="not an actuator"):
        hub.request_set(SOC, 10, Requester("app", "g", "r2"), lambda r, state: committed.append(r))


def test_a_set_that_cannot_be_committed_is_not_published():
    hub = SignalHub()
    hub.publish({LIMIT: 90})
    hub.set_actuator_handler(lambda path, value, who, commit: SetResult(True, value, ""))

    def full_disk(result, state):
        raise StorageError("the audit log cannot be written: database or disk is full")

    with pytest.raises(StorageError):
        hub.request_set(LIMIT, 60, Requester("app", "g", "r1"), full_disk)
    assert hub.read(LIMIT)[0] == 90


@pytest.mark.parametrize("value", ["8_0", " 80 ", "80 ", "0x50", "NaN", "Infinity", "1e400", "", "eighty"])
def test_wire_numbers_are_json_numbers_only(value):
    with pytest.raises(vss.InvalidValue, match="expected a"):
        vss.coerce(LIMIT, value)


def test_numbers_are_checked_exactly_and_without_overflow():
    assert vss.coerce(LIMIT, "80") == 80 and vss.coerce(LIMIT, "8e1") == 80 and vss.coerce(LIMIT, 80.0) == 80
    with pytest.raises(vss.InvalidValue, match="a number of about 400 digits is outside"):
        vss.coerce(LIMIT, 10**399)
    with pytest.raises(vss.InvalidValue, match="beyond any float"):
        vss.coerce(f"{ROOT}.CurrentCurrent", 10**399)
    for bad in (float("nan"), float("inf"), True, None, [80]):
        with pytest.raises(vss.InvalidValue):
            vss.coerce(LIMIT, bad)


def test_tokens_are_bound_to_vehicle_expiry_scope_and_live_grants(store):
    clock = Clock()
    authority = Authority(store, "VIN00000000000001", clock)
    grant = authority.grant(
        "charger-app", ["read:Vehicle.Powertrain.TractionBattery.StateOfCharge", f"actuate:{LIMIT}"], ttl_s=60
    )
    access = authority.verify(authority.token(grant))
    assert access.app == "charger-app" and access.grant_id == grant.id
    assert access.can_read(SOC) and access.can_read(LIMIT) and access.can_actuate(LIMIT)
    assert not access.can_read("Vehicle.Powertrain.TractionBattery.CurrentVoltage")
    assert not access.can_actuate(SOC)

    other_vehicle = Authority(store, "VIN00000000000002", clock)
    with pytest.raises(AuthError, match="issued for vehicle") as exc:
        other_vehicle.verify(authority.token(grant))
    assert exc.value.number == 401
    with pytest.raises(AuthError) as exc:
        authority.verify(authority.token(grant)[:-4] + "AAAA")
    assert exc.value.reason == "invalid_token"
    with pytest.raises(AuthError) as exc:
        authority.verify(None)
    assert exc.value.reason == "missing_token"

    clock.now += 61
    with pytest.raises(AuthError) as exc:
        authority.verify(authority.token(grant))
    assert exc.value.reason == "expired_token"

    clock.now -= 61
    authority.revoke(grant.id)
    with pytest.raises(AuthError, match="revoked"):
        authority.verify(authority.token(grant))
    with pytest.raises(ValueError, match="no grant"):
        authority.revoke("nope")


@pytest.mark.parametrize(
    "scopes, message",
    [
        ([], "at least one scope"),
        (["write:Vehicle"], "must be 'read:<path>'"),
        (["read:Vehicle.Nope"], "not a signal"),
    ],
)
def test_grants_refuse_bad_scopes(store, scopes, message):
    with pytest.raises(ValueError, match=message):
        Authority(store, "VIN1").grant("app", scopes, 60)


def test_a_restart_keeps_grants_audit_key_history_and_nv_state(tmp_path):
    url = f"sqlite:///{tmp_path / 'persist.db'}"
    first = Store(url)
    authority = Authority(first, "VIN1")
    grant = authority.grant("app", ["read:Vehicle"], 3600)
    token = authority.token(grant)
    first.record_set(AuditRecord(1.0, "app", grant.id, "req-1", LIMIT, "30", 50, True, "clamped to 50 %"))
    first.append_history([(t, SOC, 50.0 + t) for t in range(10)])
    first.save_nv("estimator", {"soc": 0.5, "capacity_ah": 201.0})
    first.close()

    second = Store(url)
    again = Authority(second, "VIN1")
    assert again.verify(token).grant_id == grant.id  # the same key signs and verifies
    assert [g.id for g in second.grants()] == [grant.id]
    record = second.audit()[0]
    assert (record.requested, record.applied, record.reason) == ("30", 50, "clamped to 50 %")
    assert second.seen_request(grant.id, "req-1") and not second.seen_request(grant.id, "req-2")
    assert second.load_nv("estimator") == {"soc": 0.5, "capacity_ah": 201.0}
    assert second.load_nv("missing") is None
    points = second.history(SOC, 0, 9, max_points=5)
    assert len(points) == 5 and points[0] == (0.5, 50.5)
    # a young history in a long window: the buckets span the 9 s found, not the week asked for
    week = second.history(SOC, 9 - 7 * 86400, 9, max_points=5)
    assert week == points
    second.close()


def test_refusals_are_counted_per_client_and_window(tmp_path):
    """Repeats of one refusal count on its row; another client has its own; a new window starts a new row, and
    a window that ended before its counts were written still gets them."""
    store = Store(f"sqlite:///{tmp_path / 'refusals.db'}")
    now = [1000.0]
    refusals = RefusalLog(store, lambda: now[0], window_s=60.0, kinds_per_window=2)

    def refused(app: str, value: str = "30") -> AuditRecord:
        return AuditRecord(now[0], app, "", "r", LIMIT, value, None, False, "forbidden")

    for _ in range(3):
        refusals.record("peer:a", refused("a"))
    refusals.record("peer:b", refused("b"))
    refusals.record("peer:a", refused("a", "31"))
    refusals.record("peer:a", refused("a", "32"))  # a third kind in the window: the overflow row
    now[0] += 61.0
    refusals.record("peer:a", refused("a"))
    refusals.flush()
    rows = [(r.app, r.requested, r.count) for r in reversed(store.audit())]
    assert rows == [("a", "30", 3), ("b", "30", 1), ("a", "31", 1), ("a", None, 1), ("a", "30", 1)]
    assert "more than 2 different refusals of peer:a" in store.audit()[1].reason


def test_a_database_from_before_the_audit_counted_repeats_opens_and_reads(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, time FLOAT, app VARCHAR(200), grant_id VARCHAR(64), "
            "request_id VARCHAR(200), path VARCHAR(256), requested TEXT, applied TEXT, accepted BOOLEAN, reason TEXT)"
        )
        db.execute("INSERT INTO audit VALUES (1, 5.0, 'app', 'g', 'r', 'p', '\"80\"', '80', 1, 'set')")
    (record,) = Store(f"sqlite:///{path}").audit()
    assert (record.requested, record.applied, record.count, record.last_time) == ("80", 80, 1, None)
