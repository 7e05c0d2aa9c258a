"""Faults the BMS must survive without lying: kill -9 in a storm of commands, a read-only database, an
unwritable WAL, a full disk, an immutable -shm file, and a BMS that falls silent.

What is checked each time: an acknowledged command is in effect after a restart and in the audit; a
command the storage cannot take is refused and not applied; the BMS keeps running, puts the storage
fault on its alarm timeline and clears it when the storage recovers; stale data is never served as live.
Faults that need root (chattr, mounting a small tmpfs) are skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event
from serving import free_ports, spawn_serve
from waiting import PATIENCE_S, http, wait_for
from websockets.sync.client import connect

from openbms.cell import load_cell
from openbms.runtime.bms import Bms
from openbms.runtime.service import NV_KEY, STORAGE_FAULT, BmsLoop
from openbms.runtime.sources import SimSource
from openbms.runtime.vehicle import SimulatedVehicle
from openbms.vehicle.hub import SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import Store
from openbms.vehicle.vss import ROOT

pytestmark = pytest.mark.usefixtures("warm_kernels")
LIMIT = f"{ROOT}.Charging.ChargeLimit"
MODE = f"{ROOT}.BatteryConditioning.RequestedMode"
START_STOP = f"{ROOT}.Charging.StartStopCharging"
SOC = f"{ROOT}.StateOfCharge.Current"
ERRORS = f"{ROOT}.ErrorCodes"
MODES = ("INACTIVE", "DRIVING_PREPARATION", "FAST_CHARGING_PREPARATION")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def url_of(path: str) -> str:
    return "/" + path.replace(".", "/")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post_set(client: httpx.Client, token: str, path: str, value: object) -> tuple[str, httpx.Response]:
    request_id = uuid.uuid4().hex
    return request_id, client.post(
        url_of(path), json={"value": str(value), "requestId": request_id}, headers=bearer(token)
    )


# --- kill -9 --------------------------------------------------------------------------------------


def start_serve(db: str) -> tuple[subprocess.Popen, str, str]:
    """`openbms serve` on `db`, answering reads: (process, owner token, HTTP base URL)."""
    http_port, viss_port = free_ports(2)
    proc = spawn_serve(db, http_port, viss_port)
    url = proc.stdout.readline().strip()
    assert "#token=" in url, proc.stderr.read() if proc.poll() is not None else url
    base, owner = f"http://127.0.0.1:{http_port}", url.partition("#token=")[2]

    def reads() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        try:
            return httpx.get(base + url_of(SOC), headers=bearer(owner), timeout=30).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(reads, "openbms serve did not start serving", poll_s=0.2)
    return proc, owner, base


class SetStorm(threading.Thread):
    """Sets of the charge limit, the conditioning mode and start/stop at about 25 a second, one at a time,
    until the server dies; `acknowledged` keeps (request id, path, applied value) of every 200 answer,
    `round_trip_s` how long each took."""

    def __init__(self, base: str, token: str, rng: random.Random):
        super().__init__(daemon=True)
        self.base, self.token, self.rng = base, token, rng
        self.acknowledged: list[tuple[str, str, str]] = []
        self.round_trip_s: list[float] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=PATIENCE_S) as client:
            while True:
                path = self.rng.choice((LIMIT, LIMIT, MODE, START_STOP))
                value = {
                    LIMIT: self.rng.randint(50, 100),
                    MODE: self.rng.choice(MODES),
                    START_STOP: self.rng.choice(("START", "STOP")),
                }[path]
                sent = time.monotonic()
                try:
                    request_id, response = post_set(client, self.token, path, value)
                except httpx.TransportError:
                    return  # killed
                if response.status_code == 200:
                    self.round_trip_s.append(time.monotonic() - sent)
                    self.acknowledged.append((request_id, path, response.json()["data"]["dp"]["value"]))
                time.sleep(0.04)


def durable_state(db: str) -> tuple[dict, dict]:
    """(the saved BMS state, the audit by request id) as a restart finds them."""
    store = Store(db)
    try:
        return store.load_nv(NV_KEY), {r.request_id: r for r in store.audit(1_000_000)}
    finally:
        store.close()


def last_accepted(audit: dict, path: str):
    """The newest accepted record of `path` (the audit comes newest first)."""
    return next((r for r in audit.values() if r.path == path and r.accepted), None)


def test_kill_9_at_random_instants_of_a_set_storm_loses_no_acknowledged_command(tmp_path):
    db = f"sqlite:///{tmp_path / 'openbms.db'}"
    rng = random.Random(22)
    acknowledged: list[tuple[str, str, str]] = []
    for _ in range(3):
        proc, owner, base = start_serve(db)
        storm = SetStorm(base, owner, rng)
        storm.start()
        wait_for(lambda storm=storm: len(storm.acknowledged) >= 3, "no set was acknowledged")
        time.sleep(rng.uniform(0.0, 2.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(PATIENCE_S)
        storm.join(PATIENCE_S)
        acknowledged += storm.acknowledged

        nv, audit = durable_state(db)
        for request_id, path, applied in acknowledged:
            assert request_id in audit and audit[request_id].accepted, (request_id, path, applied)
            assert str(audit[request_id].applied) == applied
        # What a restart resumes is the last command committed (acknowledged, or killed just before its reply).
        limit, mode = last_accepted(audit, LIMIT), last_accepted(audit, MODE)
        assert round(100 * nv["charge_limit"]) == (limit.applied if limit else 90)
        assert mode is None or nv["conditioning"] == mode.applied
        charge = last_accepted(audit, START_STOP)
        assert charge is None or nv["charge_wanted"] == (charge.applied == "START")
    proc, owner, base = start_serve(db)
    try:
        reading = httpx.get(base + url_of(LIMIT), headers=bearer(owner), timeout=PATIENCE_S).json()
        assert int(reading["data"]["dp"]["value"]) == round(100 * nv["charge_limit"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=PATIENCE_S)


# --- storage faults under a live BMS ---------------------------------------------------------------


@contextmanager
def live_bms(directory: Path, stale_after_s: float = 10.0, source=None):
    """A live BMS (20 cells, charging, 100x real time) and its server on a database in `directory`:
    (server, bms, loop, HTTP client, owner token)."""
    store = Store(f"sqlite:///{directory / 'openbms.db'}")
    cell = load_cell("blade_lfp")
    source = source or SimSource(SimulatedVehicle(cell, 20, 2, soc0=0.6, plugged_at_start=True, seed=3))
    bms = Bms(cell, source.series, source.sensors)
    hub = SignalHub(stale_after_s=stale_after_s)
    loop = BmsLoop(source, bms, hub, store, speed=100.0).start()
    try:
        with running_server(hub, store) as server:
            wait_for(lambda: hub.read(SOC)[1] is not None, "the BMS published nothing")
            owner = server.authority.token(server.authority.grant("owner", ["owner"], 3600))
            with httpx.Client(base_url=server.http_url, timeout=PATIENCE_S) as client:
                yield server, bms, loop, client, owner
    finally:
        loop.stop()
        store.close()


@pytest.fixture
def live(tmp_path):
    with live_bms(tmp_path) as running:
        yield running


class Fault:
    """Make `store`'s database refuse every write, as a read-only file does, until cleared: SQLite's own
    `query_only` switch, set on each connection as the pool hands it out."""

    def __init__(self, store: Store):
        self.on, self.engine = False, store.engine
        event.listen(store.engine, "checkout", self._apply)

    def remove(self) -> None:
        event.remove(self.engine, "checkout", self._apply)

    def _apply(self, dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute(f"PRAGMA query_only={'ON' if self.on else 'OFF'}")


def storage_fault_shown(server) -> bool:
    return any(code.startswith(STORAGE_FAULT) for code in server.hub.read(ERRORS)[0] or [])


def assert_refused_and_not_applied(server, bms, client, owner, value: int) -> None:
    before = bms.charger.soc_target
    request_id, response = post_set(client, owner, LIMIT, value)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["reason"] == "service_unavailable" and "not applied" in error["message"]
    assert bms.charger.soc_target == before and server.hub.read(LIMIT)[0] == round(100 * before)
    assert not any(r.request_id == request_id and r.accepted for r in server.store.audit(1000))


def assert_set_works(server, bms, client, owner, value: int) -> None:
    request_id, response = post_set(client, owner, LIMIT, value)
    assert response.status_code == 200, response.text
    assert bms.charger.soc_target == pytest.approx(value / 100)
    assert server.store.audit(1)[0].request_id == request_id


def test_a_read_only_database_refuses_commands_keeps_the_bms_running_and_recovers(live):
    server, bms, loop, client, owner = live
    fault = Fault(server.store)
    fault.on = True
    assert_refused_and_not_applied(server, bms, client, owner, 61)
    samples = loop.samples
    wait_for(lambda: storage_fault_shown(server), "the storage fault is not on the alarm timeline")
    wait_for(lambda: loop.samples > samples + 50, "the BMS stopped when its state could not be saved")
    assert http.get(server.http_url + url_of(SOC), headers=bearer(owner)).status_code == 200  # reads go on
    events = [json.loads(e) for e in server.hub.read(f"{ROOT}.OpenBMS.Events")[0]]
    assert any(e["kind"] == STORAGE_FAULT and "readonly" in e["explanation"] for e in events)

    fault.on = False
    wait_for(lambda: not storage_fault_shown(server), "the storage fault did not clear when writes came back")
    assert loop.storage_fault is None
    assert_set_works(server, bms, client, owner, 62)


def chattr(path: Path, flag: str) -> None:
    if not IS_ROOT or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make a file immutable")
    if subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"this filesystem does not support chattr {flag}")


def test_an_unwritable_wal_refuses_commands_and_applies_nothing(live, tmp_path):
    server, bms, _, client, owner = live
    wal = tmp_path / "openbms.db-wal"
    wait_for(wal.exists, "the database has no WAL file")
    chattr(wal, "+i")
    try:
        assert_refused_and_not_applied(server, bms, client, owner, 63)
        wait_for(lambda: storage_fault_shown(server), "the storage fault is not on the alarm timeline")
    finally:
        subprocess.run(["chattr", "-i", str(wal)], check=True)
    wait_for(lambda: not storage_fault_shown(server), "the storage fault did not clear")
    assert_set_works(server, bms, client, owner, 64)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, check=False
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Take every free block of `directory`'s filesystem (unbuffered: nothing is left to flush on close)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue
    return filler


def test_a_full_disk_refuses_commands_and_recovers_when_space_comes_back(small_disk):
    with live_bms(small_disk) as (server, bms, _, client, owner):
        filler = fill(small_disk)
        outcomes, in_effect = [], bms.charger.soc_target
        for value in range(60, 100):  # the space the WAL already has takes some writes first
            request_id, response = post_set(client, owner, LIMIT, value)
            outcomes.append((request_id, response.status_code))
            if response.status_code != 200:
                break
            in_effect = value / 100
        assert outcomes[-1][1] == 503 and "full" in response.json()["error"]["message"], outcomes
        assert bms.charger.soc_target == pytest.approx(in_effect)  # the refused one was not applied
        wait_for(lambda: storage_fault_shown(server), "the full disk is not on the alarm timeline")
        filler.unlink()
        wait_for(lambda: not storage_fault_shown(server), "the storage fault did not clear")
        assert_set_works(server, bms, client, owner, 55)
        audit = {r.request_id: r for r in server.store.audit(1000)}
        assert all(audit[rid].accepted for rid, status in outcomes if status == 200)


def test_an_immutable_shm_file_stops_serve_with_the_reason(tmp_path):
    shm = tmp_path / "openbms.db-shm"
    shm.write_bytes(b"")
    chattr(shm, "+i")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "openbms.cli",
                "serve",
                "--db",
                f"sqlite:///{tmp_path / 'openbms.db'}",
                "--port",
                "0",
                "--viss-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
            check=False,
        )
    finally:
        subprocess.run(["chattr", "-i", str(shm)], check=True)
    assert proc.returncode == 2, proc.stderr
    assert "openbms.db-shm cannot be opened for writing" in " ".join(proc.stderr.split())


# --- a BMS that falls silent --------------------------------------------------------------------------


class GatedSource:
    """The simulated vehicle behind a gate: closed, the bus goes quiet (the BMS hears nothing)."""

    def __init__(self, inner: SimSource):
        self.inner, self.open = inner, threading.Event()
        self.open.set()
        self.series, self.sensors, self.obeys = inner.series, inner.sensors, inner.obeys

    def next_sample(self):
        if self.open.wait(0.05):
            return self.inner.next_sample()
        return None

    def apply(self, *args) -> None:
        self.inner.apply(*args)


def test_stale_data_is_never_served_as_live_and_resumes_with_the_bms(tmp_path):
    cell = load_cell("blade_lfp")
    gate = GatedSource(SimSource(SimulatedVehicle(cell, 20, 2, soc0=0.6, plugged_at_start=True, seed=3)))
    with (
        live_bms(tmp_path, stale_after_s=1.0, source=gate) as (server, _, _, client, owner),
        connect(server.viss_url, subprotocols=["VISSv2"], open_timeout=PATIENCE_S) as ws,
    ):
        ws.send(json.dumps({"action": "subscribe", "path": SOC, "requestId": "s", "authorization": owner}))
        assert "subscriptionId" in json.loads(ws.recv(timeout=PATIENCE_S))
        gate.open.clear()
        stale = wait_for(
            lambda: (r := client.get(url_of(SOC), headers=bearer(owner))).status_code == 503 and r,
            "stale data was still served",
        )
        error = stale.json()["error"]
        assert error["reason"] == "service_unavailable" and "no data from the BMS since" in error["message"]
        while "error" not in (note := json.loads(ws.recv(timeout=PATIENCE_S))):
            pass  # values published before it fell silent
        assert (note["error"]["number"], note["error"]["reason"]) == (503, "service_unavailable")

        gate.open.set()
        wait_for(
            lambda: client.get(url_of(SOC), headers=bearer(owner)).status_code == 200,
            "the data did not come back with the BMS",
        )
        assert "data" in json.loads(ws.recv(timeout=PATIENCE_S))  # notifications resume
