"""Readers: every format in, BDF out; every kind of bad input named by file, column and row."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openbms.io import ColumnMap, DataError, read_tests, read_timeseries, write_timeseries


def test_bdf_csv_and_parquet_round_trip(tmp_path, bdf_frame):
    for name in ("cell.csv", "cell.parquet"):
        path = write_timeseries(bdf_frame, tmp_path / name)
        back = read_timeseries(path)
        assert list(back.columns) == list(bdf_frame.columns)
        np.testing.assert_allclose(back.to_numpy(), bdf_frame.to_numpy())
        assert back.attrs["source"] == str(path)


def test_user_column_map_with_milliamps_and_sign(tmp_path, bdf_frame):
    raw = bdf_frame.rename(columns={"Test Time / s": "t", "Voltage / V": "U", "Current / A": "I_mA"})
    raw["I_mA"] = -1000 * raw["I_mA"]  # this cycler: mA, + = discharge
    raw.to_csv(tmp_path / "other.csv", index=False)
    mapping = {
        "columns": {"t": "Test Time / s", "U": "Voltage / V", "I_mA": "Current / A"},
        "scale": {"I_mA": 0.001},
        "current_sign": "discharge-positive",
    }
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    df = read_timeseries(tmp_path / "other.csv", ColumnMap.from_json(tmp_path / "map.json"))
    np.testing.assert_allclose(df["Current / A"], bdf_frame["Current / A"])


def _write(tmp_path, df, name="bad.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column", ["Voltage / V", "Current / A"])
def test_missing_column_is_named_with_a_suggestion(tmp_path, bdf_frame, column):
    path = _write(tmp_path, bdf_frame.rename(columns={column: column.replace(" / ", "/")}))
    with pytest.raises(DataError, match=r"(?s)bad\.csv.*did you mean"):
        read_timeseries(path)


def test_nan_names_column_and_row(tmp_path, bdf_frame):
    bdf_frame.loc[7, "Voltage / V"] = np.nan
    with pytest.raises(DataError, match=r"bad\.csv, column 'Voltage / V', row 8: missing"):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_text_in_numeric_column(tmp_path, bdf_frame):
    bdf_frame["Current / A"] = bdf_frame["Current / A"].astype(object)
    bdf_frame.loc[3, "Current / A"] = "oops"
    with pytest.raises(DataError, match=r"column 'Current / A', row 4: expected a number, found 'oops'"):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_a_tagged_path_keeps_a_compound_suffix():
    from openbms.io.writers import beside, tagged

    assert tagged(Path("out/m.csv.gz"), "_truth") == Path("out/m_truth.csv.gz")
    assert tagged(Path("m.parquet"), "_truth") == Path("m_truth.parquet")
    assert beside(Path("out/m.v2.csv.gz"), ".png") == Path("out/m.v2.png")  # a plot beside the states


def test_dates_instead_of_seconds(tmp_path, bdf_frame):
    bdf_frame["Test Time / s"] = pd.date_range("2026-01-01", periods=len(bdf_frame), freq="s")
    bdf_frame.to_parquet(tmp_path / "dates.parquet")
    with pytest.raises(
        DataError, match=r"column 'Test Time / s': expected numbers, found datetime64.* \(times are seconds\)"
    ):
        read_timeseries(tmp_path / "dates.parquet")


def test_non_monotonic_time(tmp_path, bdf_frame):
    bdf_frame.loc[10, "Test Time / s"] = 5.0
    with pytest.raises(
        DataError, match=r"column 'Test Time / s', row 11: time must increase, but goes from 9.0 s to 5.0 s"
    ):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_milliamps_labelled_as_amps_is_caught_by_capacity_columns(tmp_path, bdf_frame):
    bdf_frame["Current / A"] *= 1000
    with pytest.raises(DataError, match="looks like mA"):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_milliamps_without_capacity_columns_is_caught_by_magnitude(tmp_path, bdf_frame):
    frame = bdf_frame.drop(columns=["Charging Capacity / Ah", "Discharging Capacity / Ah"])
    frame["Current / A"] *= 5000
    with pytest.raises(DataError, match=r"row 1: 10000 A is not a plausible current: it looks like mA"):
        read_timeseries(_write(tmp_path, frame))


def test_sign_contradicting_capacity_columns(tmp_path, bdf_frame):
    bdf_frame["Current / A"] *= -1
    with pytest.raises(DataError, match=r"column 'Current / A', row 2: current sign contradicts the capacity columns"):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_unrecognised_file_and_bad_map(tmp_path, bdf_frame):
    path = _write(tmp_path, bdf_frame.rename(columns=lambda c: c.split(" / ")[0].lower()))
    with pytest.raises(DataError, match="unrecognised columns.*column map"):
        read_timeseries(path)
    with pytest.raises(ValueError, match="not BDF labels"):
        ColumnMap("x", {"a": "Volts"})
    (tmp_path / "map.json").write_text("{not json")
    with pytest.raises(ValueError, match="map.json: cannot read column map"):
        ColumnMap.from_json(tmp_path / "map.json")


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_timeseries(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("Test Time / s,Current / A,Voltage / V\n")
    with pytest.raises(DataError, match="no data rows"):
        read_timeseries(tmp_path / "empty.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        read_timeseries(tmp_path / "junk.parquet")


def test_a123_files_read_with_their_own_sign(a123_dir):
    ocv = read_timeseries(a123_dir / "ocv" / "A123_OCV_P25_S1.csv.gz")
    dyn = read_timeseries(a123_dir / "dyn" / "A123_DYN_50_P25_s1.csv.gz")
    # Both discharge overall; the dynamic file's own + = discharge was converted.
    assert ocv["Current / A"].min() < 0 and dyn["Current / A"].mean() < 0
    assert dyn["Discharging Capacity / Ah"].iloc[-1] > 5


def test_a123_dynamic_file_read_with_the_wrong_sign_is_refused(a123_dir):
    with pytest.raises(DataError, match="current sign contradicts"):
        read_timeseries(a123_dir / "dyn" / "A123_DYN_50_P25_s1.csv.gz", current_sign="charge-positive")


def test_a123_scripts_join_into_one_test(a123_dir):
    (test,) = read_tests(sorted((a123_dir / "dyn").glob("*P25_s*.csv.gz")))
    assert test.name == "dyn_P25" and test.temperature_c == 25.0 and len(test.sources) == 3
    assert np.all(np.diff(test.data["Test Time / s"]) > 0)
    assert test.fit_rows.sum() < len(test.data)  # the drive cycle only, not the set-up scripts


def test_a123_script_missing_or_repeated(a123_dir, tmp_path):
    files = sorted((a123_dir / "dyn").glob("*P25_s*.csv.gz"))
    with pytest.raises(DataError, match=r"needs scripts 1..n in order, found \[1, 3\]"):
        read_tests([files[0], files[2]])
    with pytest.raises(DataError, match=r"script\(s\) \[1\] given twice"):
        read_tests([files[0], files[0]])


def test_single_file_test_needs_a_temperature(tmp_path, bdf_frame):
    path = _write(tmp_path, bdf_frame.drop(columns=["Surface Temperature T1 / degC"]), "cell.csv")
    with pytest.raises(DataError, match="needs a temperature column"):
        read_tests([path])


def test_gzip_csv(tmp_path, bdf_frame):
    path = tmp_path / "cell.csv.gz"
    with gzip.open(path, "wt") as f:
        bdf_frame.to_csv(f, index=False)
    assert len(read_timeseries(path)) == len(bdf_frame)


def test_a_time_shared_by_two_steps_is_accepted(tmp_path, bdf_frame):
    """PyBaMM and many cyclers log a step's end and the next step's start at one instant."""
    frame = bdf_frame.copy()
    frame.loc[20:, "Test Time / s"] -= 1.0  # row 21 (rest starts) shares row 20's time (discharge ends)
    df = read_timeseries(_write(tmp_path, frame))
    t = df["Test Time / s"].to_numpy()
    assert t[19] == t[20] and len(df) == len(frame)


def test_a_time_repeated_within_a_step_is_refused(tmp_path, bdf_frame):
    """With a step index, a repeated time must be a step change; without one it is taken as one."""
    frame = bdf_frame.copy()
    frame.loc[10:, "Test Time / s"] -= 1.0  # rows 10 and 11: the same discharge, the same instant
    assert len(read_timeseries(_write(tmp_path, frame))) == len(frame)
    frame["Step Index / 1"] = 1
    with pytest.raises(DataError, match=r"row 11: time repeats \(9.0 s at rows 10 and 11\) within one step"):
        read_timeseries(_write(tmp_path, frame))
    frame["Step Index / 1"] = np.where(frame.index < 10, 1, 2)
    assert len(read_timeseries(_write(tmp_path, frame))) == len(frame)


def test_decreasing_time_names_both_rows(tmp_path, bdf_frame):
    bdf_frame.loc[10, "Test Time / s"] = 5.0
    with pytest.raises(DataError, match=r"row 11: time must increase, but goes from 9.0 s to 5.0 s \(rows 10 and 11\)"):
        read_timeseries(_write(tmp_path, bdf_frame))


def test_ambient_fills_a_missing_or_partial_temperature_column(tmp_path, bdf_frame):
    """--ambient: the chamber's temperature where the file has none, and the test says what was filled."""
    missing = _write(tmp_path, bdf_frame.drop(columns=["Surface Temperature T1 / degC"]), "no_temperature.csv")
    partial_frame = bdf_frame.copy()
    partial_frame.loc[30:, "Surface Temperature T1 / degC"] = np.nan
    partial = _write(tmp_path, partial_frame, "partial.csv")
    with pytest.raises(
        DataError, match=r"partial.csv, column 'Surface Temperature T1 / degC', row 31: missing.*--ambient DEGC"
    ):
        read_timeseries(partial)
    with pytest.raises(DataError, match=r"no_temperature.csv: .*needs a temperature column.*--ambient DEGC"):
        read_tests([missing])
    a, b = read_tests([missing, partial], ambient_c={None: 20.0, "partial.csv": 15.0})
    assert a.temperature_c == 20.0 and (a.data["Ambient Temperature / degC"] == 20.0).all()
    assert a.assumptions == ["no_temperature.csv: no ambient temperature column: 20 degC from --ambient"]
    assert b.temperature_c == 15.0
    assert (b.data["Surface Temperature T1 / degC"].iloc[30:] == 15.0).all() and (
        b.data["Surface Temperature T1 / degC"].iloc[:30] == 25.0
    ).all()
    assert any("30 of 60 rows without 'Surface Temperature T1 / degC'" in note for note in b.assumptions)


def test_sign_error_suggests_the_flag(tmp_path, bdf_frame):
    bdf_frame["Current / A"] *= -1
    with pytest.raises(DataError, match=r"--current-sign discharge-positive"):
        read_timeseries(_write(tmp_path, bdf_frame))
