"""The `openbms` command, run in-process: it writes what it says, and bad input is exit 2 with a clear error."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from openbms.cell import load_cell
from openbms.cli import main

MEASURED_COLUMNS = [
    "Test Time / s",
    "Current / A",
    "Voltage / V",
    "Surface Temperature T1 / degC",
    "Ambient Temperature / degC",
]
TRUTH_COLUMNS = [
    "Test Time / s",
    "Current / A",
    "Voltage / V",
    "Surface Temperature T1 / degC",
    "SOC / 1",
    "Capacity / Ah",
]


def _flat(text: str) -> str:
    """The console wraps long lines (and long paths) at its width: compare without whitespace."""
    return re.sub(r"\s+", "", text)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.lstrip().startswith("error:"), err
    return _flat(err)


# -- identify -----------------------------------------------------------------------------------


def test_identify_writes_a_loadable_cell_and_a_plot(a123_dir, tmp_path, capsys):
    """The 25 degC slice of the A123 data in, a cell JSON and a fit plot out."""
    ocv = sorted(str(p) for p in (a123_dir / "ocv").glob("A123_OCV_P25_S*.csv.gz"))
    dyn = sorted(str(p) for p in (a123_dir / "dyn").glob("A123_DYN_*_P25_s*.csv.gz"))
    output = tmp_path / "cells" / "p25.json"
    code = main(["identify", "--ocv", *ocv, "--dynamic", *dyn, "--n-rc", "1", "--chemistry", "LFP", "-o", str(output)])
    assert code == 0
    cell = load_cell(output)
    assert cell.name == "p25" and cell.chemistry == "LFP" and cell.n_rc == 1
    assert list(cell.fit["rmse_mv"]) == ["25"] and cell.fit["rmse_mv"]["25"] < 15.0
    assert 2.0 <= float(cell.capacity_ah[0]) <= 2.1
    assert cell.provenance["data"] == [p.rsplit("/", 1)[-1] for p in ocv + dyn]
    plot = output.with_name("p25_fit.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, err = capsys.readouterr()
    assert "dyn_P25" in out  # the score table
    assert "wrote" in err and "p25_fit.png" in _flat(err)


def test_identify_missing_file(tmp_path, capsys):
    absent = tmp_path / "absent.csv"
    assert main(["identify", "--ocv", str(absent), "--dynamic", str(absent), "-o", str(tmp_path / "c.json")]) == 2
    assert _flat(f"{absent}: no such file") in _error(capsys)
    assert not (tmp_path / "c.json").exists()


def test_identify_wrong_columns(tmp_path, bdf_frame, capsys):
    """A file with other columns is named, with what was expected and the nearest match."""
    path = tmp_path / "cycler.csv"
    bdf_frame.rename(columns={"Voltage / V": "Volts", "Current / A": "Amps"}).to_csv(path, index=False)
    assert main(["identify", "--ocv", str(path), "--dynamic", str(path), "-o", str(tmp_path / "c.json")]) == 2
    err = _error(capsys)
    assert _flat(f"{path}: unrecognised columns") in err
    assert _flat("'Voltage / V' not found") in err and _flat("--columns map.json") in err


def test_error_messages_are_printed_verbatim(tmp_path, capsys):
    """Column names with bracketed units ('Zeit [s]') appear in the error as they are in the file."""
    path = tmp_path / "other.csv"
    frame = pd.DataFrame({"Zeit [s]": [0.0, 1.0], "Strom [A]": [1.0, 1.0], "Spannung [V]": [3.3, 3.3]})
    frame.to_csv(path, index=False)
    assert main(["identify", "--ocv", str(path), "--dynamic", str(path), "-o", str(tmp_path / "c.json")]) == 2
    assert _flat("'Zeit [s]'") in _error(capsys)


def test_identify_missing_a123_dir(tmp_path, capsys):
    missing = tmp_path / "no_such_dir"
    assert main(["identify", "--a123", str(missing), "-o", str(tmp_path / "c.json")]) == 2
    assert _flat(f"A123 data not found at {missing}: pass --a123 DIR or set OPENBMS_A123_DIR") in _error(capsys)


def test_identify_needs_dynamic_tests(a123_dir, tmp_path, capsys):
    """OCV files alone are refused, not silently identified against nothing."""
    ocv = sorted(str(p) for p in (a123_dir / "ocv").glob("A123_OCV_P25_S*.csv.gz"))
    assert main(["identify", "--ocv", *ocv, "-o", str(tmp_path / "c.json")]) == 2
    assert _flat("at least one OCV test and one dynamic test") in _error(capsys)


# -- derive-cell --------------------------------------------------------------------------------


def test_derive_cell_scales_capacity_and_resistance(tmp_path, capsys):
    """138 Ah from a 2.05 Ah cell: capacity ×67 at 25 degC, every resistance ÷67, OCV unchanged."""
    output = tmp_path / "x.json"
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "138", "--name", "x", "-o", str(output)]) == 0
    source, derived = load_cell("a123_lfp"), load_cell(output)
    factor = 138.0 / float(source.param("capacity_ah", 25.0))
    assert derived.name == "x"
    assert float(derived.param("capacity_ah", 25.0)) == pytest.approx(138.0, rel=1e-9)
    np.testing.assert_allclose(derived.capacity_ah, source.capacity_ah * factor, rtol=1e-9)
    np.testing.assert_allclose(derived.r0_ohm, source.r0_ohm / factor, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(derived.rc_r_ohm, source.rc_r_ohm / factor, rtol=1e-5, atol=1e-9)
    assert np.all(derived.resistance_ohm(0.5, 25.0) < source.resistance_ohm(0.5, 25.0) / 60)
    np.testing.assert_array_equal(derived.ocv_v, source.ocv_v)
    np.testing.assert_array_equal(derived.rc_tau_s, source.rc_tau_s)
    assert derived.provenance["derived_from"] == "a123_lfp"
    assert "wrote" in capsys.readouterr().err


def test_derive_cell_names_and_places_what_it_is_not_told(tmp_path, monkeypatch):
    """The README's form needs neither --name nor -o: each defaults from the other, or from the source."""
    monkeypatch.chdir(tmp_path)
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "138"]) == 0
    assert load_cell(tmp_path / "out" / "a123_lfp_138ah.json").name == "a123_lfp_138ah"
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "50", "-o", "cells/big.json"]) == 0
    assert load_cell(tmp_path / "cells" / "big.json").name == "big"
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "60", "--name", "blade"]) == 0
    assert float(load_cell(tmp_path / "out" / "blade.json").param("capacity_ah", 25.0)) == pytest.approx(60.0)


def test_derive_cell_refuses_a_capacity_that_is_not_positive(tmp_path, capsys):
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "0", "-o", str(tmp_path / "x.json")]) == 2
    assert _flat("--capacity-ah must be positive, got 0") in _error(capsys)
    assert not (tmp_path / "x.json").exists()


def test_derive_cell_unknown_source(tmp_path, capsys):
    assert (
        main(["derive-cell", "no_such_cell", "--capacity-ah", "100", "--name", "x", "-o", str(tmp_path / "x.json")])
        == 2
    )
    assert _flat("unknown cell 'no_such_cell'") in _error(capsys)


def test_derive_cell_records_its_own_command(tmp_path, monkeypatch):
    """The provenance says how the cell was made."""
    monkeypatch.setattr(sys, "argv", ["python", "unrelated.py", "--flag"])
    output = tmp_path / "x.json"
    assert main(["derive-cell", "a123_lfp", "--capacity-ah", "138", "--name", "x", "-o", str(output)]) == 0
    command = json.loads(output.read_text())["provenance"]["command"]
    assert command.startswith("openbms derive-cell a123_lfp"), command


# -- simulate -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_simulate_writes_measured_and_truth(tmp_path, capsys):
    """An HPPC test of the NMC plant: measured BDF beside its truth, which adds SoC and capacity."""
    pytest.importorskip("pybamm")
    output = tmp_path / "m.csv"
    assert main(["simulate", "--experiment", "hppc", "--plant", "chen2020_nmc", "-o", str(output)]) == 0
    measured = pd.read_csv(output)
    truth = pd.read_csv(tmp_path / "m_truth.csv")
    assert list(measured.columns) == MEASURED_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    assert len(measured) == len(truth) > 10_000
    np.testing.assert_array_equal(measured["Test Time / s"], truth["Test Time / s"])
    assert truth["SOC / 1"].iloc[0] == 1.0 and truth["SOC / 1"].min() < 0.05
    assert truth["Capacity / Ah"].nunique() == 1 and 4.5 < truth["Capacity / Ah"].iloc[0] < 5.5
    error = measured["Voltage / V"] - truth["Voltage / V"]
    assert 0.0015 < error.std() < 0.0025  # the default 2 mV noise
    mv = measured["Voltage / V"].to_numpy() * 1000
    np.testing.assert_allclose(mv, np.round(mv), atol=1e-6)  # the default 1 mV LSB
    assert "m_truth.csv" in _flat(capsys.readouterr().err)


def test_simulate_rejects_zero_repeats(tmp_path, capsys):
    assert main(["simulate", "--repeat", "0", "-o", str(tmp_path / "m.csv")]) == 2
    assert _flat("repeat must be at least 1") in _error(capsys)
    assert not (tmp_path / "m.csv").exists()


def test_simulate_rejects_unknown_cycle(tmp_path, capsys):
    assert main(["simulate", "--cycles", "udds,us06", "-o", str(tmp_path / "m.csv")]) == 2
    assert _flat("unknown drive cycle(s) ['us06']") in _error(capsys)


def test_usage_errors_exit_2(capsys):
    """argparse's own refusals keep the same exit code."""
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--plant", "sony_lco", "-o", "x.csv"])
    assert exc.value.code == 2
    assert "invalid choice: 'sony_lco'" in capsys.readouterr().err


@pytest.fixture
def drive_file(tmp_path):
    """A cell drive simulated with the bundled model, as a BDF file with a temperature column."""
    from openbms.cell import simulate

    cell = load_cell("a123_lfp")
    t = np.arange(0.0, 1800.0)
    current = np.where((t // 30) % 3 == 0, -4.0, np.where((t // 30) % 3 == 1, 1.0, 0.0))
    sim = simulate(cell, t, current, 25.0, soc0=0.8)
    frame = pd.DataFrame(
        {
            "Test Time / s": t,
            "Current / A": current,
            "Voltage / V": sim.voltage_v,
            "Surface Temperature T1 / degC": 25.0,
        }
    )
    path = tmp_path / "drive.csv"
    frame.to_csv(path, index=False)
    return path, sim.soc


@pytest.mark.parametrize("name", ["states.parquet", "states.csv.gz"])
def test_estimate_writes_states_and_a_plot(drive_file, tmp_path, capsys, name):
    """Either kind of output, and the plot beside it named after it (states.png)."""
    path, truth = drive_file
    out = tmp_path / name
    assert main(["estimate", str(path), "--cell", "a123_lfp", "--soc0", "0.8", "-o", str(out), "--plot"]) == 0
    states = pd.read_parquet(out) if name.endswith(".parquet") else pd.read_csv(out)
    for column in (
        "Test Time / s",
        "SOC / 1",
        "SOC Bound / 1",
        "Capacity / Ah",
        "Resistance / ohm",
        "Max Charge Power / W",
        "Max Discharge Power / W",
        "Max Charge Current / A",
        "Max Discharge Current / A",
        "Max Discharge Power 30 s / W",
    ):
        assert column in states
    assert np.max(np.abs(states["SOC / 1"] - truth)) < 0.03
    assert (tmp_path / "states.png").stat().st_size > 10_000
    assert "estimate at the end" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # batterydf's own use of pandas
def test_estimate_writes_a_bdf_file_the_bdf_package_reads(drive_file, tmp_path, capsys):
    bdf = pytest.importorskip("bdf", reason="the labfiles extra: pip install -e '.[labfiles]'")
    path, truth = drive_file
    out = tmp_path / "states.bdf.parquet"
    assert main(["estimate", str(path), "--cell", "a123_lfp", "--soc0", "0.8", "-o", str(out)]) == 0
    states = bdf.read(str(out), validate=False)
    assert np.max(np.abs(states["SOC / 1"] - truth)) < 0.03 and "Test Time / s" in states


@pytest.mark.parametrize(
    "output, plot, message",
    [
        ("{tmp}", None, "is a directory: give a file name"),
        ("{tmp}/s.xlsx", None, "s.xlsx: cannot write this kind of file; use one of .csv"),
        ("{tmp}/s.csv", "{tmp}/p.txt", "p.txt: cannot write this kind of file; use one of .png, .svg, .pdf"),
    ],
    ids=["directory", "spreadsheet", "plot as text"],
)
def test_estimate_refuses_an_output_it_cannot_write_before_working(drive_file, tmp_path, capsys, output, plot, message):
    path, _ = drive_file
    plot_args = [] if plot is None else ["--plot", plot.format(tmp=tmp_path)]
    assert main(["estimate", str(path), "-o", output.format(tmp=tmp_path)] + plot_args) == 2
    assert _flat(message) in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.csv"]  # nothing half-written


def test_estimate_names_a_temperature_flag_in_kelvin(drive_file, tmp_path, capsys):
    path, _ = drive_file
    assert main(["estimate", str(path), "--temperature", "298.15", "-o", str(tmp_path / "s.csv")]) == 2
    assert _flat("--temperature 298.15 is outside -100 to 150 degC (is it in kelvin?)") in _error(capsys)


@pytest.mark.parametrize(
    "column_map, message",
    [
        (
            {"columns": {"t": "Test Time / s", "i": "Current / A", "v": "Voltage / V"}, "scale": {"i": "0.001"}},
            "scale factors must be finite non-zero numbers, got {'i': '0.001'}",
        ),
        (
            {"columns": {"t": "Test Time / s", "i": "Current / A", "v": "Voltage / V"}, "scale": None},
            '"scale" must be an object of column: factor',
        ),
        ({"columns": {"t": "Test Time / s", "i": "Current / A"}}, "gives no column for ['Voltage / V']"),
    ],
    ids=["scale as text", "scale null", "no voltage"],
)
def test_estimate_refuses_a_column_map_it_cannot_use(tmp_path, capsys, column_map, message):
    pd.DataFrame({"t": [0.0, 1.0], "i": [-1.0, -1.0], "v": [3.3, 3.3]}).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "map.json").write_text(json.dumps(column_map))
    assert (
        main(
            [
                "estimate",
                str(tmp_path / "d.csv"),
                "--temperature",
                "25",
                "--columns",
                str(tmp_path / "map.json"),
                "-o",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    assert _flat(message) in _error(capsys)


@pytest.mark.parametrize(
    "name, degc",
    [("A123_DYN_50_P25_s1.csv", 25), ("A123_DYN_10_N25_s1.csv", -25), ("A123_DYN_10_N25_s2.csv", 25)],
    ids=["P25", "N25", "N25 set-up script"],
)
def test_estimate_takes_an_a123_files_temperature_from_its_name(a123_dir, tmp_path, capsys, name, degc):
    """The README's example on the A123 data it names: those files carry the temperature in the name only."""
    source = a123_dir / "dyn" / name.replace("N25_s2", "N25_s1").replace(".csv", ".csv.gz")
    pd.read_csv(source, nrows=600).to_csv(tmp_path / name, index=False)
    assert main(["estimate", str(tmp_path / name), "--soc0", "1.0", "-o", str(tmp_path / "s.csv")]) == 0
    assert _flat(f"temperature {degc} degC, from the A123 file's name") in _flat(capsys.readouterr().err)
    assert len(pd.read_csv(tmp_path / "s.csv")) == 600


def test_estimate_refuses_bad_soc0_and_missing_temperature(drive_file, tmp_path, capsys):
    path, _ = drive_file
    assert main(["estimate", str(path), "--soc0", "1.5", "-o", str(tmp_path / "s.csv")]) == 2
    assert _flat("--soc0 must be a fraction in [0, 1]") in _error(capsys)
    frame = pd.read_csv(path).drop(columns=["Surface Temperature T1 / degC"])
    frame.to_csv(tmp_path / "no_temp.csv", index=False)
    assert main(["estimate", str(tmp_path / "no_temp.csv"), "-o", str(tmp_path / "s.csv")]) == 2
    assert _flat("no temperature column") in _error(capsys)
    assert main(["estimate", str(tmp_path / "no_temp.csv"), "--temperature", "25", "-o", str(tmp_path / "s.csv")]) == 0
