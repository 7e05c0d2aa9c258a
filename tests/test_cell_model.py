"""The ESC cell model: its JSON document, bundled cells, and the physics `simulate` must obey."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import openbms
from openbms.cell import BUNDLED, CellModel, load_cell, simulate
from openbms.cell.model import TABLES

ARRAYS = (
    "ocv_temperature_c",
    "soc",
    "ocv_v",
    "temperature_c",
    "capacity_ah",
    "coulombic_efficiency",
    "hysteresis_rate",
    "m0_v",
    "m_v",
    "rc_tau_s",
    "resistance_soc",
    "r0_ohm",
    "rc_r_ohm",
    "hysteresis_envelope_v",
)


@pytest.fixture(scope="module")
def cell() -> CellModel:
    return load_cell("a123_lfp")


def _doc(cell: CellModel) -> dict:
    """A fresh, JSON-clean copy of the cell's document, safe to corrupt."""
    return json.loads(json.dumps(cell.to_dict()))


# -- bundled cells and the JSON document ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_cells_load_and_are_lfp(name):
    """Every bundled name loads into a valid model with a plausible LFP OCV."""
    m = openbms.load_cell(name)
    assert m.name == name and m.chemistry == "LFP"
    assert m.n_rc >= 1 and m.hysteresis_envelope_v is not None
    mid = float(m.ocv(0.5, 25.0))
    assert 3.2 < mid < 3.4  # the LFP plateau
    assert m.voltage_min_v < float(m.ocv(0.0, 25.0)) < mid < float(m.ocv(1.0, 25.0)) <= m.voltage_max_v + 0.1


def test_blade_is_the_a123_cell_scaled_to_138_ah(cell):
    """The vehicle cell is the identified one in parallel: capacity up, resistance down, same OCV."""
    blade = load_cell("blade_lfp")
    factor = 138.0 / float(cell.param("capacity_ah", 25.0))
    assert float(blade.param("capacity_ah", 25.0)) == pytest.approx(138.0)
    np.testing.assert_allclose(blade.r0_ohm, cell.r0_ohm / factor, rtol=1e-5, atol=1e-9)  # the JSON keeps 9 decimals
    np.testing.assert_allclose(blade.ocv_v, cell.ocv_v)


def test_json_round_trip_preserves_every_array(tmp_path, cell):
    """Save then load gives the same model: every table, the fit and the provenance."""
    path = cell.save(tmp_path / "sub" / "cell.json")
    back = load_cell(path)
    assert (back.name, back.chemistry) == (cell.name, cell.chemistry)
    assert (back.voltage_min_v, back.voltage_max_v) == (cell.voltage_min_v, cell.voltage_max_v)
    for name in ARRAYS:
        a, b = getattr(cell, name), getattr(back, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6, err_msg=name)  # the document rounds to µV
    assert back.fit == cell.fit and back.provenance == cell.provenance
    # A second trip is exact: the rounding happened once.
    again = load_cell(back.save(tmp_path / "again.json"))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(back, name), err_msg=name)


def test_round_trip_without_hysteresis_envelope(tmp_path, cell):
    """The envelope is optional: a model without one stays without one."""
    bare = CellModel(**{**cell.__dict__, "hysteresis_envelope_v": None})
    back = load_cell(bare.save(tmp_path / "bare.json"))
    assert back.hysteresis_envelope_v is None
    np.testing.assert_allclose(back.ocv_v, cell.ocv_v, atol=1e-6)


def _corrupt(doc, what):
    if what == "schema":
        doc["schema"] = "openbms.cell/0"
    elif what == "missing":
        del doc["parameters"]["r0_ohm"]
    elif what == "shape":
        doc["parameters"]["r0_ohm"] = [row[:5] for row in doc["parameters"]["r0_ohm"]]
    elif what == "ocv_rows":
        doc["ocv"]["voltage_v"] = doc["ocv"]["voltage_v"][:-1]
    elif what == "values":
        doc["parameters"]["capacity_ah"] = doc["parameters"]["capacity_ah"][:-1]
    elif what == "text":
        doc["limits"]["voltage_min_v"] = "low"
    return doc


@pytest.mark.parametrize(
    "what, message",
    [
        ("schema", r"cell\.json: schema is 'openbms\.cell/0', expected 'openbms\.cell/1'"),
        ("missing", r"cell\.json: missing field 'r0_ohm' in the cell document"),
        ("shape", r"cell\.json: .*parameters\.r0_ohm must be n_temperatures x n_knots"),
        ("ocv_rows", r"cell\.json: .*ocv\.voltage_v must be 8x201, got \(7, 201\)"),
        ("values", r"cell\.json: .*parameters\.capacity_ah must have 8 values"),
        ("text", r"cell\.json: could not convert string to float: 'low'"),
    ],
)
def test_bad_documents_name_the_problem(tmp_path, cell, what, message):
    """A broken cell file is refused with the file and the broken field in the message."""
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(_corrupt(_doc(cell), what)))
    with pytest.raises(ValueError, match=message):
        load_cell(path)


def test_unreadable_files_and_unknown_names(tmp_path):
    """Not JSON, no file, or a name that is neither bundled nor a path: each says which."""
    (tmp_path / "cell.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cell\.json: not JSON \(line 1"):
        load_cell(tmp_path / "cell.json")
    with pytest.raises(ValueError, match=r"absent\.json: cannot read cell model"):
        load_cell(tmp_path / "absent.json")
    with pytest.raises(ValueError, match=r"unknown cell 'a123_nmc': give a bundled name \(a123_lfp, blade_lfp\)"):
        load_cell("a123_nmc")


@pytest.mark.parametrize("mangle", ["top-level list", "ocv list"])
def test_non_object_documents_give_value_error(tmp_path, cell, mangle):
    """A valid JSON file that is not a cell document must still be a ValueError (the CLI catches only those)."""
    doc = [1, 2] if mangle == "top-level list" else {**_doc(cell), "ocv": [1, 2]}
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="cell.json"):
        load_cell(path)


def test_wrong_table_dimensions_name_the_field(tmp_path, cell):
    """A table with the wrong number of dimensions names the table."""
    doc = _doc(cell)
    doc["parameters"]["r0_ohm"] = doc["parameters"]["r0_ohm"][0]  # 1-D instead of 2-D
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="r0_ohm"):
        load_cell(path)


@pytest.mark.parametrize("mangle", ["nan ocv", "envelope shape"])
def test_invalid_ocv_tables_are_refused(tmp_path, cell, mangle):
    """Validation covers the OCV table's values and the envelope's shape, not only the parameters."""
    doc = _doc(cell)
    if mangle == "nan ocv":
        doc["ocv"]["voltage_v"][5][100] = float("nan")  # json writes NaN and reads it back
    else:
        doc["ocv"]["hysteresis_envelope_v"] = [[0.01, 0.02]]
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="cell.json"):
        load_cell(path)


def test_tables_list_matches_the_document(cell):
    """Every table the loader reads with a fixed dimension is written by to_dict."""
    par = cell.to_dict()["parameters"]
    for name, ndim in TABLES.items():
        assert np.asarray(par[name]).ndim == ndim, name


# -- simulate ----------------------------------------------------------------------------------


def _drive(n=600, seed=1):
    """A bumpy current profile around −1 A, 1 s steps."""
    rng = np.random.default_rng(seed)
    t = np.arange(float(n))
    i = -1.0 + 2.0 * np.sin(t / 30.0) + rng.normal(0.0, 0.5, n)
    return t, i


def test_single_and_batched_currents_agree(cell):
    """A (time,) current and the same current as a column of (time, cells) give identical results."""
    t, i = _drive()
    one = simulate(cell, t, i, 25.0, soc0=0.8)
    many = simulate(cell, t, np.column_stack([i, 0.5 * i, i]), 25.0, soc0=[0.8, 0.5, 0.8])
    assert one.voltage_v.shape == (len(t),) and many.voltage_v.shape == (len(t), 3)
    for col in (0, 2):
        np.testing.assert_array_equal(many.voltage_v[:, col], one.voltage_v)
        np.testing.assert_array_equal(many.soc[:, col], one.soc)
    assert not np.allclose(many.voltage_v[:, 1], one.voltage_v)


def test_per_cell_models_scale_soc_rate(cell):
    """A cell with 90 % of the capacity moves its SoC 1/0.9 times as fast under the same current."""
    t = np.arange(0.0, 1801.0)
    i = np.full((len(t), 2), -1.5)
    sim = simulate([cell, cell.scaled(capacity=0.9)], t, i, 25.0, soc0=0.9)
    drop = 0.9 - sim.soc[-1]
    assert drop[0] > 0.3
    assert drop[1] / drop[0] == pytest.approx(1 / 0.9, rel=1e-9)
    # Each cell also matches its own single-cell simulation.
    alone = simulate(cell.scaled(capacity=0.9), t, i[:, 1], 25.0, soc0=0.9)
    np.testing.assert_allclose(sim.voltage_v[:, 1], alone.voltage_v, rtol=0, atol=1e-12)


def test_coulomb_counting(cell):
    """1 A·h out moves SoC by 1/Q; 1 A·h in moves it by η/Q (η applies to charge only)."""
    q = float(cell.param("capacity_ah", 25.0))
    eta = float(cell.param("coulombic_efficiency", 25.0))
    assert eta < 1.0  # else the charge half proves nothing
    t = np.arange(0.0, 3601.0)  # 3600 one-second steps; the last row's current is never integrated
    down = simulate(cell, t, np.full(len(t), -1.0), 25.0, soc0=0.9)
    up = simulate(cell, t, np.full(len(t), 1.0), 25.0, soc0=0.1)
    assert 0.9 - down.soc[-1] == pytest.approx(1.0 / q, rel=1e-9)
    assert up.soc[-1] - 0.1 == pytest.approx(eta / q, rel=1e-9)
    np.testing.assert_allclose(down.final_soc, down.soc[-1])


def test_voltage_after_long_rest_is_ocv_plus_hysteresis(cell):
    """After the RC branches have relaxed only OCV + M0·s + M·h remains (s = −1 after a discharge)."""
    t = np.arange(0.0, 1200.0 + 20 * 3600.0)  # 20 h: the slowest branch (τ = 1 h) decays to e^−20
    i = np.where(t < 1200, -2.0, 0.0)
    sim = simulate(cell, t, i, 25.0, soc0=0.9, hysteresis0=0.0)
    h, z = float(sim.final_hysteresis[0]), float(sim.final_soc[0])
    assert -1.0 < h < -0.05  # the discharge pulled h toward −1
    expected = float(cell.ocv(z, 25.0) + cell.param("m0_v", 25.0) * -1.0 + cell.param("m_v", 25.0) * h)
    assert sim.voltage_v[-1] == pytest.approx(expected, abs=1e-6)
    assert abs(sim.voltage_v[-1] - float(cell.ocv(z, 25.0))) > 1e-3  # hysteresis is visible, not negligible


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_hysteresis_tends_to_the_sign_of_the_current(cell, direction):
    """h decays toward +1 on charge and −1 on discharge, by exp(−γ·|ΔSoC|)."""
    gamma = float(cell.param("hysteresis_rate", 25.0))
    t = np.arange(0.0, 3001.0)
    i = np.full(len(t), 1.2 * direction)
    soc0 = 0.05 if direction > 0 else 0.95
    h0 = -direction  # start on the opposite side
    sim = simulate(cell, t, i, 25.0, soc0=soc0, hysteresis0=h0)
    moved = abs(float(sim.final_soc[0]) - soc0)
    assert moved > 0.4
    expected = direction + (h0 - direction) * np.exp(-gamma * moved)
    assert float(sim.final_hysteresis[0]) == pytest.approx(expected, abs=1e-9)
    assert float(sim.final_hysteresis[0]) * direction > 0.5


@pytest.mark.parametrize(
    "soc, temperature", [(0.03, 25.0), (0.15, 25.0), (0.55, 25.0), (0.95, 25.0), (0.3, 10.0), (0.07, 40.0)]
)
def test_resistance_matches_the_instantaneous_voltage_step(cell, soc, temperature):
    """The voltage step when a current starts is R0(z, T)·I, with R0 from resistance_ohm."""
    t = np.arange(0.0, 6.0)
    current = -3.0
    i = np.where(t < 3, 0.0, current)
    # Already on the discharge side, so the instantaneous hysteresis sign does not flip.
    sim = simulate(cell, t, i, temperature, soc0=soc, hysteresis0=-1.0)
    step = sim.voltage_v[3] - sim.voltage_v[2]
    assert step == pytest.approx(float(cell.resistance_ohm(soc, temperature)) * current, rel=1e-9)


def test_resistance_depends_on_soc(cell):
    """LFP's resistance rises steeply toward empty; the model keeps that."""
    r = cell.resistance_ohm(np.array([0.02, 0.5]), 25.0)
    assert r.shape == (2,)
    assert r[0] > 1.5 * r[1]


def test_soc_from_ocv_inverts_ocv_on_the_monotone_part(cell):
    """Where OCV rises strictly, soc_from_ocv(ocv(z)) == z; the inversion is monotone everywhere."""
    for temperature in (25.0, 20.0):
        curve = cell.ocv(cell.soc, temperature)
        before = np.maximum.accumulate(curve)
        after = np.minimum.accumulate(curve[::-1])[::-1]
        # grid points above every earlier value and below every later one, and their right neighbours
        monotone = (curve > np.concatenate([[-np.inf], before[:-1]])) & (curve < np.concatenate([after[1:], [np.inf]]))
        k = np.flatnonzero(monotone[:-1] & monotone[1:])
        assert len(k) > 150
        z = np.concatenate([cell.soc[k], 0.5 * (cell.soc[k] + cell.soc[k + 1])])
        back = cell.soc_from_ocv(cell.ocv(z, temperature), temperature)
        np.testing.assert_allclose(back, z, atol=1e-9)
    sweep = cell.soc_from_ocv(np.linspace(3.0, 3.5, 200), 25.0)
    assert np.all(np.diff(sweep) >= 0)


def test_soc_from_ocv_at_mixed_temperatures_matches_each_alone(cell):
    """A (2, 3) batch over three temperatures inverts each voltage at its own temperature."""
    v = np.array([[3.25, 3.30, 3.34], [3.28, 3.31, 3.40]])
    t = np.array([[25.0, -5.0, 25.0], [40.0, -5.0, 10.0]])
    batch = cell.soc_from_ocv(v, t)
    assert batch.shape == (2, 3)
    for at in np.ndindex(v.shape):
        assert batch[at] == cell.soc_from_ocv(v[at], t[at])
    assert np.shape(cell.soc_from_ocv(3.3, 25.0)) == ()


@pytest.mark.parametrize(
    "time, current, message",
    [
        (np.arange(10.0), np.zeros(9), r"time_s must be 1-D with one entry per current row"),
        (np.arange(10.0).reshape(5, 2), np.zeros(5), r"time_s must be 1-D"),
        (np.array([0.0, 2.0, 1.0, 3.0]), np.zeros(4), r"time_s must increase"),
    ],
)
def test_simulate_rejects_bad_time(cell, time, current, message):
    """Time must match the current row by row and never go back."""
    with pytest.raises(ValueError, match=message):
        simulate(cell, time, current)


def test_simulate_takes_a_time_repeated_at_a_step_change(cell):
    """A step's end and the next step's start logged at one instant: a zero-length step moves nothing."""
    repeated = simulate(cell, np.array([0.0, 10.0, 10.0, 20.0]), np.array([-1.0, -1.0, 0.0, 0.0]))
    plain = simulate(cell, np.array([0.0, 10.0, 20.0]), np.array([-1.0, 0.0, 0.0]))
    np.testing.assert_allclose(repeated.voltage_v[[0, 2, 3]], plain.voltage_v)
    np.testing.assert_allclose(repeated.final_soc, plain.final_soc)


def test_simulate_rejects_wrong_model_count_and_bad_broadcast(cell):
    """One model per cell, and per-cell inputs that fit the cells."""
    t = np.arange(5.0)
    with pytest.raises(ValueError, match="got 2 cell models for 3 cells"):
        simulate([cell, cell], t, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"soc0 of shape \(2,\) does not broadcast to \(3,\)"):
        simulate(cell, t, np.zeros((5, 3)), soc0=[0.5, 0.6])


def test_step_ratio_is_stored_and_optional(tmp_path):
    """The fresh cell's step reference for resistance SoH survives a round trip; older documents
    without it load with a neutral 1."""
    cell = load_cell("a123_lfp")
    assert np.all((cell.step_ratio > 0.8) & (cell.step_ratio < 1.1))  # measured 0.91-0.99
    doc = cell.to_dict()
    np.testing.assert_allclose(CellModel.from_dict(doc).step_ratio, cell.step_ratio, atol=1e-6)
    del doc["parameters"]["step_ratio"]
    assert np.all(CellModel.from_dict(doc).step_ratio == 1.0)
    doc["parameters"]["step_ratio"] = [0.0] * len(cell.temperature_c)
    with pytest.raises(ValueError, match="step_ratio must be"):
        CellModel.from_dict(doc)


def test_stepper_matches_simulate():
    from openbms.cell.simulate import CellStepper

    model = load_cell("a123_lfp")
    t = np.arange(300.0)
    current = np.where(t < 150, -5.0, 2.0)[:, None] * np.array([1.0, 0.5])
    ref = simulate(model, t, current, soc0=[0.8, 0.6])
    stepper = CellStepper(model, 2, soc0=[0.8, 0.6])
    v = np.array([stepper.step(current[k], 1.0) for k in range(len(t))])
    np.testing.assert_allclose(v, ref.voltage_v, atol=1e-12)
    with pytest.raises(ValueError, match="dt_s"):
        stepper.step(1.0, 0.0)


def test_a_cell_driven_past_empty_is_named_in_a_warning(cell):
    """Past empty the model extrapolates (negative SoC, then negative volts): say so, where it began."""
    from openbms.cell.simulate import CellLimitWarning

    q = float(cell.param("capacity_ah", 25.0))
    t = np.arange(0.0, 4000.0)
    current = np.stack([np.full(len(t), -0.1 * q), np.full(len(t), -1.0 * q)], axis=1)  # cell 2 empties at 1 h
    with pytest.warns(
        CellLimitWarning, match=r"cell 2 was driven past (empty|0 V) at sample 3[0-9]{3} \(t = 3[0-9]{3} s\)"
    ):
        sim = simulate(cell, t, current, soc0=1.0)
    assert sim.soc[-1, 1] < 0 and sim.soc[-1, 0] > 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(cell, t[:3000], current[:3000], soc0=1.0)  # within range: no warning
