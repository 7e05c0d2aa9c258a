"""The validation plant: sensors that err exactly as configured, drive power, and PyBaMM truth that adds up."""

from __future__ import annotations

import numpy as np
import pytest

from openbms.io.columns import CELL_TEMPERATURE, CURRENT, TIME, VOLTAGE
from openbms.sim.plant import PLANTS, Plant
from openbms.sim.scenario import Scenario
from openbms.sim.sensors import IDEAL, Sensors


def _signals(n=200_000, seed=7):
    rng = np.random.default_rng(seed)
    t = np.arange(float(n))
    return t, rng.uniform(-5.0, 5.0, n), rng.uniform(3.0, 3.5, n), np.full(n, 25.0)


# -- sensors ------------------------------------------------------------------------------------


def test_current_offset_and_gain_are_applied_exactly():
    """Measured current = true·(1 + gain error) + offset, nothing else, when noise is off."""
    t, i, v, temp = _signals(1000)
    frame = Sensors(
        current_offset_a=0.05, current_gain_error=0.02, voltage_noise_v=0.0, voltage_lsb_v=0.0, temperature_offset_c=1.5
    ).measure(t, i, v, temp)
    assert list(frame.columns) == [TIME, CURRENT, VOLTAGE, CELL_TEMPERATURE]
    np.testing.assert_array_equal(frame[TIME], t)
    np.testing.assert_allclose(frame[CURRENT], i * 1.02 + 0.05, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(frame[VOLTAGE], v)
    np.testing.assert_array_equal(frame[CELL_TEMPERATURE], 26.5)


def test_ideal_sensors_change_nothing():
    t, i, v, temp = _signals(1000)
    frame = IDEAL.measure(t, i, v, temp)
    np.testing.assert_array_equal(frame[CURRENT], i)
    np.testing.assert_array_equal(frame[VOLTAGE], v)


def test_voltage_is_quantised_to_the_lsb():
    """With a 1 mV LSB and no noise every reading is a whole mV, within half an LSB of the truth."""
    t, i, v, temp = _signals(10_000)
    measured = Sensors(voltage_noise_v=0.0, voltage_lsb_v=0.001).measure(t, i, v, temp)[VOLTAGE].to_numpy()
    mv = measured * 1000.0
    np.testing.assert_allclose(mv, np.round(mv), rtol=0, atol=1e-6)
    assert np.max(np.abs(measured - v)) <= 0.0005 + 1e-12
    assert len(np.unique(np.round(mv))) > 100


def test_noise_has_the_configured_spread_and_is_seeded():
    """Voltage and current noise are zero-mean with the given std; one seed, one realisation."""
    t, i, v, temp = _signals()
    sensors = Sensors(current_noise_a=0.01, voltage_noise_v=0.002, voltage_lsb_v=0.0, seed=3)
    frame = sensors.measure(t, i, v, temp)
    dv, di = frame[VOLTAGE].to_numpy() - v, frame[CURRENT].to_numpy() - i
    assert np.std(dv) == pytest.approx(0.002, rel=0.02) and abs(np.mean(dv)) < 5e-5
    assert np.std(di) == pytest.approx(0.01, rel=0.02) and abs(np.mean(di)) < 2e-4
    again = sensors.measure(t, i, v, temp)
    np.testing.assert_array_equal(again[VOLTAGE], frame[VOLTAGE])
    other = Sensors(current_noise_a=0.01, voltage_noise_v=0.002, voltage_lsb_v=0.0, seed=4).measure(t, i, v, temp)
    assert not np.array_equal(other[VOLTAGE], frame[VOLTAGE])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"voltage_noise_v": -0.001}, "must not be negative"),
        ({"voltage_lsb_v": -0.001}, "must not be negative"),
        ({"current_noise_a": -0.1}, "must not be negative"),
        ({"current_gain_error": 0.5}, r"current gain error 0.5 is not a sensor error"),
        ({"current_gain_error": -0.7}, r"current gain error -0.7 is not a sensor error"),
    ],
)
def test_sensor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sensors(**kwargs).validate()


def test_scenario_validation_needs_no_physics():
    """Bad scenarios are refused before any simulation is started."""
    with pytest.raises(ValueError, match="unknown experiment 'gitt'"):
        Scenario(experiment="gitt").validate()
    with pytest.raises(ValueError, match=r"unknown drive cycle\(s\) \['us06'\]"):
        Scenario(cycles=("udds", "us06")).validate()
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        Scenario(repeat=0).validate()
    with pytest.raises(ValueError, match="soc0 must be a fraction"):
        Scenario(soc0=1.2).validate()
    with pytest.raises(ValueError, match="must not be negative"):
        Scenario(sensors=Sensors(voltage_noise_v=-1)).validate()


# -- drive power --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drive():
    pytest.importorskip("fastsim")
    from openbms.sim import drive

    return drive


def test_udds_cell_power_mostly_discharges(drive):
    """+ = charging: a car driving UDDS draws more than it regenerates, so the mean is negative."""
    t, p = drive.cell_power(["udds"], 7.6)
    assert len(t) == len(p) and np.all(np.diff(t) > 0)
    moving = np.abs(p) > 1e-6
    assert np.mean(p) < 0
    assert np.mean(p[moving] < 0) > 0.6  # most non-idle seconds draw power
    assert -np.sum(p[p < 0]) > 2 * np.sum(p[p > 0])  # regeneration returns a fraction of it
    np.testing.assert_array_equal(p[-60:], 0.0)  # the stop after the cycle


def test_cell_power_scales_with_cell_energy(drive):
    """Power is the pack's share by energy: a cell with twice the energy carries twice the power."""
    t1, p1 = drive.cell_power(["udds"], 7.6)
    t2, p2 = drive.cell_power(["udds"], 15.2)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(p2, 2 * p1, rtol=1e-12)
    _, pack_w, pack_wh = drive.pack_power("udds")
    np.testing.assert_allclose(p1[: len(pack_w)], pack_w * 7.6 / pack_wh, rtol=1e-12)


def test_cycles_run_one_after_another(drive):
    """Two cycles: time keeps increasing through the stop between them, and each repeats exactly."""
    t1, p1 = drive.cell_power(["udds"], 7.6)
    t2, p2 = drive.cell_power(["udds", "udds"], 7.6)
    assert np.all(np.diff(t2) > 0) and len(t2) == 2 * len(t1)
    np.testing.assert_array_equal(p2[: len(p1)], p1)
    np.testing.assert_array_equal(p2[len(p1) :], p1)
    with pytest.raises(ValueError, match="unknown drive cycle 'wltp'"):
        drive.cell_power(["wltp"], 7.6)


# -- the plant ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"name": "sony_lco"},
            r"unknown plant 'sony_lco': choose from \['chen2020_nmc', 'prada2013_lfp', 'prada2013_lfp_dfn'",
        ),
        ({"capacity_fade": 0.5}, "capacity_fade must be in"),
        ({"capacity_fade": -0.1}, "capacity_fade must be in"),
        ({"kinetics_slowdown": 0.9}, "kinetics_slowdown in"),
    ],
)
def test_plant_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Plant(**kwargs)


def test_plants_are_the_documented_cells():
    assert PLANTS["prada2013_lfp"].chemistry == "LFP" and PLANTS["prada2013_lfp"].hysteresis
    assert PLANTS["chen2020_nmc"].chemistry == "NMC" and not PLANTS["chen2020_nmc"].hysteresis


@pytest.fixture(scope="module")
def pybamm():
    return pytest.importorskip("pybamm")


def test_aged_plant_has_less_capacity(pybamm):
    """10 % less active material is 10 % less capacity."""
    fresh = Plant("prada2013_lfp").capacity_ah()
    aged = Plant("prada2013_lfp", capacity_fade=0.1).capacity_ah()
    assert 2.0 < fresh < 2.6  # an A123-like 26650
    assert aged / fresh == pytest.approx(0.9, abs=0.005)


@pytest.fixture(scope="module")
def udds(pybamm, drive):
    """One UDDS on the LFP plant with the default (noisy, 1 mV) sensors."""
    return Scenario(plant=Plant("prada2013_lfp"), experiment="drive", cycles=("udds",), repeat=1).run()


@pytest.mark.slow
def test_drive_truth_adds_up(udds):
    """The truth SoC moves exactly as the true current integrated over the true capacity."""
    measured, truth = udds
    assert truth.termination == "final time"
    assert truth.soc[0] == pytest.approx(0.9)
    assert np.all(np.diff(truth.time_s) == 1.0)
    drop = truth.soc[-1] - truth.soc[0]
    counted = np.trapezoid(truth.current_a, truth.time_s) / 3600.0 / truth.capacity_ah
    assert drop < -0.01  # a UDDS takes a couple of percent
    assert abs(drop - counted) < 1e-3
    assert truth.capacity_ah == pytest.approx(Plant("prada2013_lfp").capacity_ah())
    # Truth frame: the BDF columns plus SoC and capacity.
    frame = truth.frame()
    assert {"SOC / 1", "Capacity / Ah", TIME, CURRENT, VOLTAGE} <= set(frame.columns)


@pytest.mark.slow
def test_drive_measurements_are_truth_plus_sensor_error(udds):
    """Default sensors: current exact, voltage within a few σ of 2 mV noise (plus half a 1 mV LSB)."""
    measured, truth = udds
    assert len(measured) == len(truth.time_s)
    np.testing.assert_array_equal(measured[TIME], truth.time_s)
    np.testing.assert_array_equal(measured[CURRENT], truth.current_a)
    error = measured[VOLTAGE].to_numpy() - truth.voltage_v
    assert np.std(error) == pytest.approx(0.002, rel=0.15)
    assert np.max(np.abs(error)) < 5 * 0.002 + 0.0005
    assert measured["Ambient Temperature / degC"].eq(25.0).all()
    assert measured.attrs["source"] == "plant prada2013_lfp (drive)"


@pytest.fixture(scope="module")
def lfp_ocv(pybamm):
    return Scenario(plant=Plant("prada2013_lfp"), experiment="ocv", sensors=IDEAL).run()


@pytest.mark.slow
def test_lfp_plant_shows_hysteresis(lfp_ocv):
    """At C/30 the charge curve sits above the discharge curve mid-SoC by more than resistance explains
    (without the hysteresis option the gap is ~6 mV; with it, ~36 mV)."""
    _, truth = lfp_ocv
    i, v, z = truth.current_a, truth.voltage_v, truth.soc
    rate = np.median(np.abs(i[np.abs(i) > 1e-3]))  # C/30 of the nominal capacity
    discharge = np.abs(i + rate) < 1e-3
    charge = np.abs(i - rate) < 1e-3
    assert discharge.sum() > 20 * 3600 and charge.sum() > 20 * 3600
    for soc in (0.3, 0.5, 0.7):
        v_dis = np.interp(soc, z[discharge][::-1], v[discharge][::-1])
        v_chg = np.interp(soc, z[charge], v[charge])
        assert v_chg - v_dis > 0.020, soc


@pytest.mark.slow
def test_lfp_ocv_test_reaches_truth_empty(lfp_ocv):
    """A C/30 discharge to the plant's lower limit is empty in the truth too, but for the last
    fraction of a percent that the voltage under load gives away (the NMC plant's ends at 0.001)."""
    _, truth = lfp_ocv
    assert truth.soc.min() < 0.01


def test_iec_power_test_pulses_at_the_standards_socs():
    """IEC 62660-1's power test: C/3 moves that land each pulse profile on 90, 70, 50, 35 and 20 % SoC,
    net of the charge each profile takes out; discharge and charge pulses in every profile; PyBaMM reads it."""
    from openbms.sim.plant import Plant
    from openbms.sim.run import IEC_SOC_LEVELS, iec_power_steps, iec_power_test, iec_soc_moves

    profile = iec_power_steps(2.5, 3.6)
    assert {np.sign(c) for c, _, _ in profile} == {-1.0, 0.0, 1.0}
    taken = -sum(c * s for c, s, _ in profile) / 3600.0
    soc, before_profile = 1.0, []
    for seconds in iec_soc_moves():
        soc -= seconds / 3 / 3600.0
        before_profile.append(soc)
        soc -= taken
    np.testing.assert_allclose(before_profile, IEC_SOC_LEVELS, atol=1e-9)
    pybamm = pytest.importorskip("pybamm", reason="the sim extra")
    steps = iec_power_test(Plant("prada2013_lfp"))
    assert len(pybamm.Experiment(steps).steps) == 1 + 5 * 7 + 3
