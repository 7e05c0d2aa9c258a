"""The running BMS behind the vehicle interface: an unmodified third-party client reads the
state, sets the charge limit, and the BMS visibly obeys; a restart resumes from the store."""

from __future__ import annotations

import json
import queue
import time

import numpy as np
import pytest

from openbms.cell import load_cell
from openbms.runtime.bms import Bms
from openbms.runtime.cli import make_source
from openbms.runtime.service import NV_KEY, BmsLoop
from openbms.runtime.sources import SimSource
from openbms.runtime.vehicle import SimulatedVehicle
from openbms.vehicle.hub import Requester, SignalHub
from openbms.vehicle.server import running_server
from openbms.vehicle.store import StorageError, Store
from openbms.vehicle.vss import ROOT

pytest.importorskip("kuksa_client")
from test_vehicle_kuksa import kuksa_connect  # noqa: E402
from serving import free_ports, spawn_serve  # noqa: E402
from waiting import PATIENCE_S, wait_for  # noqa: E402

pytestmark = pytest.mark.usefixtures("warm_kernels")
CELL = load_cell("blade_lfp")
SOC = f"{ROOT}.StateOfCharge.Current"
LIMIT = f"{ROOT}.Charging.ChargeLimit"
WHO = Requester("test", "grant", "1")


def charging_vehicle(series=30):
    """Plugged in at 60 %: the BMS charges at once, so its decisions show within seconds."""
    return SimSource(SimulatedVehicle(CELL, series, 3, soc0=0.6, plugged_at_start=True, seed=3))


@pytest.fixture
def live(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'openbms.db'}")
    source = charging_vehicle()
    bms = Bms(CELL, source.series, source.sensors, nv=store.load_nv(NV_KEY))
    hub = SignalHub()
    loop = BmsLoop(source, bms, hub, store, speed=100.0).start()
    with running_server(hub, store) as server:
        yield server, bms, loop, store
    loop.stop()
    store.close()


def test_kuksa_client_reads_the_bms_and_the_bms_obeys_its_charge_limit(live):
    server, bms, loop, _ = live
    client = kuksa_connect(server.viss_url)
    try:
        token = server.authority.token(
            server.authority.grant("other-brand-app", (f"read:{ROOT}", f"actuate:{LIMIT}"), 600)
        )
        client.authorize(token)
        soc = wait_for(
            lambda: None if "error" in (r := json.loads(client.getValue(SOC))) else r,
            "the BMS published no SoC",
            poll_s=0.1,
        )
        assert 40 < float(soc["data"]["dp"]["value"]) < 80

        updates: queue.Queue = queue.Queue()
        client.subscribe(SOC, lambda message: updates.put(json.loads(message)))
        values = [float(updates.get(timeout=PATIENCE_S)["data"]["dp"]["value"]) for _ in range(3)]
        assert values[-1] > values[0]  # charging: the SoC rises live

        refused = json.loads(client.setValue(LIMIT, "30", attribute="targetValue"))
        assert refused["data"]["dp"]["value"] == "50"  # clamped, and why, in the percent it was asked in
        assert refused["reason"] == "a charge limit of 30 % is outside 50–100 %: set to 50 %"
        applied = json.loads(client.setValue(LIMIT, "62", attribute="targetValue"))
        assert applied["data"]["dp"]["value"] == "62"
        assert bms.charger.soc_target == pytest.approx(0.62)
        wait_for(
            lambda: bms.charger.state == "complete" and bms.last.charge_request_a == 0,
            "the BMS did not stop charging at the new limit",
        )  # its output follows its charger's state
        assert max(bms.last_estimate["cell_soc"]) == pytest.approx(0.62, abs=0.02)
        state = {
            name: json.loads(client.getValue(f"{ROOT}.OpenBMS.{name}"))["data"]["dp"]["value"]
            for name in ("ContactorState", "IsBalancing", "ThermalWarning")
        }  # the overlay's states, live
        assert state["ContactorState"] in ("CHARGE", "NORMAL", "STANDBY") and state["ThermalWarning"] == "NONE"
        assert state["IsBalancing"] in ("true", "false")
    finally:
        client.stop()
        client.join(5)


def test_a_restart_resumes_from_the_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'openbms.db'}")
    source = charging_vehicle()
    bms = Bms(CELL, source.series, source.sensors)
    bms.actuate(LIMIT, 75, WHO, lambda result, state: store.save_nv(NV_KEY, state[NV_KEY]))
    assert store.load_nv(NV_KEY)["charge_limit"] == pytest.approx(0.75)  # committed with the command
    loop = BmsLoop(source, bms, SignalHub(), store, speed=1000.0).start()
    wait_for(lambda: loop.samples >= 100, "the BMS ran no samples")
    loop.stop()
    saved = store.load_nv(NV_KEY)
    assert saved["charge_limit"] == pytest.approx(0.75) and len(saved["cell_soc"]) == source.series
    again = Bms(CELL, source.series, source.sensors, nv=saved)
    assert again.charger.soc_target == pytest.approx(0.75)
    # the filters resume where they stopped: the next sample continues both runs alike
    sample = source.next_sample()
    _, resumed = again.step(sample)
    _, continued = bms.step(sample)
    assert resumed[SOC] == pytest.approx(continued[SOC], abs=1e-3)  # percent; only the last bleed differs
    assert resumed[f"{ROOT}.StateOfHealth"] == pytest.approx(continued[f"{ROOT}.StateOfHealth"])
    store.close()


def test_actuators_answer_what_was_applied_and_commit_it_first():
    source = charging_vehicle()
    bms = Bms(CELL, source.series, source.sensors)
    committed = []

    def commit(result, state):
        committed.append((result, state[NV_KEY]))

    assert not bms.actuate(f"{ROOT}.CurrentCurrent", 1.0, WHO, commit).accepted
    assert (
        bms.actuate(f"{ROOT}.BatteryConditioning.RequestedMode", "FAST_CHARGING_PREPARATION", WHO, commit).applied
        == "FAST_CHARGING_PREPARATION"
    )
    assert committed[-1][1]["conditioning"] == "FAST_CHARGING_PREPARATION"
    stop = bms.actuate(f"{ROOT}.Charging.StartStopCharging", "STOP", WHO, commit)
    assert stop.accepted and bms.charger.state == "stopped" and committed[-1][1]["charge_wanted"] is False
    high = bms.actuate(f"{ROOT}.Charging.ChargeLimit", 120, WHO, commit)
    assert (high.applied, high.reason) == (100, "a charge limit of 120 % is outside 50–100 %: set to 100 %")
    kept = bms.actuate(f"{ROOT}.Charging.ChargeLimit", 73, WHO, commit)
    assert (kept.applied, kept.reason) == (73, "charge limit set to 73 %")


def test_a_replay_needs_the_recordings_cell(tmp_path, capsys):
    """A pack file does not name its cell: the vehicle's blade cell is never assumed for it."""
    from openbms.cli import main

    assert main(["serve", "--source", f"replay:{tmp_path / 'pack.csv'}", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "a pack file does not say which cell it holds" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.db").exists()  # refused before anything started


def test_a_command_that_cannot_be_committed_is_undone():
    source = charging_vehicle()
    bms = Bms(CELL, source.series, source.sensors)
    bms.step(source.next_sample())
    state, target = bms.charger.state, bms.charger.soc_target

    def read_only(result, state):
        raise StorageError("the audit log cannot be written: attempt to write a readonly database")

    for path, value in (
        (LIMIT, 60),
        (f"{ROOT}.Charging.StartStopCharging", "STOP"),
        (f"{ROOT}.BatteryConditioning.RequestedMode", "DRIVING_PREPARATION"),
    ):
        with pytest.raises(StorageError):
            bms.actuate(path, value, WHO, read_only)
    assert (bms.charger.state, bms.charger.soc_target, bms.charge_wanted, bms.conditioning) == (
        state,
        target,
        True,
        "INACTIVE",
    )


def test_bad_sources_are_refused_clearly():
    with pytest.raises(ValueError, match="--source must be"):
        make_source("tcp:1234", CELL, 10, 2)
    with pytest.raises(Exception, match="no such file"):
        make_source("replay:/nonexistent.csv", CELL, 10, 2)


def test_the_bms_runs_on_a_can_bus_and_answers_on_it():
    """Measurements in as CAN frames (the shipped DBC) on python-can's virtual bus; the BMS's frames out."""
    can = pytest.importorskip("can")
    from openbms.runtime.can import CanBusSource, encode_sample, load_dbc

    source = charging_vehicle(series=12)
    feed = can.Bus(interface="virtual", channel="openbms-test")
    listen = can.Bus(interface="virtual", channel="openbms-test")
    bus_source = CanBusSource("virtual:openbms-test", 12, 3)
    bms = Bms(CELL, 12, 3)
    loop = BmsLoop(bus_source, bms, SignalHub(), speed=1e6, sink=bus_source.sink).start()
    try:
        for _ in range(5):
            for frame in encode_sample(source.next_sample()):
                feed.send(frame)
            time.sleep(0.05)
        wait_for(lambda: loop.samples >= 3, "the BMS did not process the CAN samples")
        dbc = load_dbc()
        state = None
        while (frame := listen.recv(1.0)) is not None:
            if frame.arbitration_id == dbc.get_message_by_name("BMS_State").frame_id:
                state = dbc.decode_message(frame.arbitration_id, frame.data)
        assert state is not None and 40 < state["SOC"] < 80
    finally:
        loop.stop()
        feed.shutdown()
        listen.shutdown()


def test_a_lost_temperature_reading_does_not_stop_the_publication():
    source = charging_vehicle(series=12)
    bms = Bms(CELL, 12, 3)
    sample = source.next_sample()
    sample.temperature_c[1] = np.nan
    _, values = bms.step(sample)
    SignalHub().publish(values)  # every value fits the catalogue
    assert values[f"{ROOT}.OpenBMS.CellTemperatures"][1] == -273.15
    assert np.isfinite(values[f"{ROOT}.Temperature.Average"])


def test_a_bad_sample_is_skipped_and_the_bms_carries_on():
    class Glitchy:
        obeys, series, sensors = False, 12, 3

        def __init__(self):
            self.inner, self.n = charging_vehicle(series=12), 0

        def next_sample(self):
            self.n += 1
            sample = self.inner.next_sample()
            if self.n == 3:
                sample.current_a = float("nan")  # a lost current reading
            return sample if self.n < 20 else None

        finite = True

        def apply(self, *args):
            pass

    hub = SignalHub()
    loop = BmsLoop(Glitchy(), Bms(CELL, 12, 3, balancer=None), hub, speed=1e6).start()
    loop.thread.join(PATIENCE_S)
    assert loop.samples == 18 and hub.read(SOC)[0] is not None


def test_the_main_command_serves_on_a_fresh_database_and_saves_on_stop(tmp_path):
    """`openbms serve` as `make run` starts it: the owner's URL works, a token from `openbms token` reads the
    SoC, and a stop (SIGTERM) saves the BMS's state."""
    import signal

    import httpx

    from openbms.cli import main

    ports = free_ports(2)
    db = f"sqlite:///{tmp_path / 'openbms.db'}"
    serve = spawn_serve(db, *ports)
    try:
        url = serve.stdout.readline().strip()
        assert url.startswith(f"http://127.0.0.1:{ports[0]}/#token="), url
        owner = url.partition("#token=")[2]
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                page = httpx.get(url.partition("#")[0], timeout=30)
                reading = httpx.get(
                    f"http://127.0.0.1:{ports[0]}/{SOC.replace('.', '/')}",
                    headers={"Authorization": f"Bearer {owner}"},
                    timeout=30,
                )
                if reading.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and serve.poll() is None, serve.stderr.read()
            time.sleep(0.2)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert 0 <= float(reading.json()["data"]["dp"]["value"]) <= 100
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=PATIENCE_S)
    assert "state saved" in err
    store = Store(db)
    assert len(store.load_nv(NV_KEY)["cell_soc"]) == 20
    store.close()
    assert main(["token", "--db", db, "--app", "x", "--scope", f"read:{SOC}"]) == 0


def test_a_pack_file_sets_the_simulated_pack_and_the_bms(tmp_path):
    from openbms.pack.config import load_pack

    path = tmp_path / "pack.yaml"
    path.write_text(
        "cell: a123_lfp\nseries: 12\ntemperature_sensors: 3\nvariation: {capacity: 0.03}\n"
        "balancing: {threshold_soc: 0.03}\nshort: {warning_c: 0.002}\n"
    )
    pack = load_pack(path)
    model = pack.cell_model(tmp_path)
    source = make_source("sim", model, pack.series, pack.temperature_sensors, pack.spread())
    assert source.vehicle.plant.spread.capacity == 0.03
    bms = Bms(model, 12, 3, balancer=pack.balancer(), config=pack.monitor_config(2.3))
    assert bms.balancer.threshold_soc == 0.03 and bms.monitor.shorts.rule.warning_c == 0.002
    bms.step(source.next_sample())
    (tmp_path / "bad.yaml").write_text("series: 12\nbalancing: {threshold: 1}\n")
    with pytest.raises(ValueError, match="unknown field 'threshold'"):
        load_pack(tmp_path / "bad.yaml").balancer()


def test_serve_without_the_sim_extra_names_the_missing_package_and_how_to_install_it(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastsim'] = None  # as if the sim extra were not installed\n"
        "from openbms.cli import main\n"
        f"sys.exit(main(['serve', '--db', 'sqlite:///{tmp_path / 'x.db'}', '--port', '0', '--viss-port', '0']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE_S, check=False)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, said
    assert "needs the package fastsim" in said and "pip install 'openbms[sim]'" in said and "Traceback" not in said


def test_range_starts_from_the_vehicles_own_consumption_and_moves_gently():
    """The simulated car states what it draws per km; range starts there and its first drive moves it little.
    Told 85 % too much, the first kilometres move the consumption by their share of the prior's 30 km."""
    from openbms.runtime.bms import CONSUMPTION_PRIOR_KM

    source = SimSource(SimulatedVehicle(CELL, 12, 3, seed=0))
    rated = source.rated_consumption_wh_per_km
    bms = Bms(CELL, 12, 3, rated_consumption_wh_per_km=rated)
    wrong = Bms(CELL, 12, 3, rated_consumption_wh_per_km=1.85 * rated)
    km_per_kwh = []
    for _ in range(1500):  # a minute parked, then the first commute
        sample = source.next_sample()
        _, signals = bms.step(sample)
        wrong._learn_consumption(sample)  # the same drive, learnt from the wrong prior
        km_per_kwh.append(signals[f"{ROOT}.Range"] / max(signals[f"{ROOT}.StateOfCharge.CurrentEnergy"], 1e-9))
    assert bms.consumption_km > 5
    assert bms.consumption_wh_per_km == pytest.approx(rated, rel=0.1)  # the car drives as it says it does
    assert max(km_per_kwh) / min(km_per_kwh) < 1.15  # range per kWh left barely moves in the first drive
    moved = (1.85 * rated - wrong.consumption_wh_per_km) / (0.85 * rated)
    share = wrong.consumption_km / (CONSUMPTION_PRIOR_KM + wrong.consumption_km)
    assert 0.5 * share < moved < 1.5 * share
    assert Bms(CELL, 12, 3, nv=wrong.nv_state()).consumption_km == wrong.consumption_km  # kept across restarts
