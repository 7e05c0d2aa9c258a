"""Lab formats through their own libraries: BioLogic .mpr (galvani), BDF files (batterydf)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from openbms.io import DataError, read_timeseries, write_timeseries
from openbms.io import columns, labfiles

galvani = pytest.importorskip("galvani", reason="the labfiles extra: pip install -e '.[labfiles]'")
bdf = pytest.importorskip("bdf", reason="the labfiles extra: pip install -e '.[labfiles]'")
from galvani import BioLogic  # noqa: E402

# EC-Lab column ids (galvani's table): flags (mode, ox/red, error), time/s, Ewe/V, I/mA, Ns, Q charge, Q discharge
MPR_COLUMNS = [1, 2, 3, 4, 6, 8, 131, 498, 499]


def _module(shortname: bytes, longname: bytes, data: bytes, version: int) -> bytes:
    header = np.zeros(1, dtype=BioLogic.VMPmodule_hdr_v1)
    header["shortname"], header["longname"] = shortname.ljust(10), longname.ljust(25)
    header["length"], header["version"], header["date"] = len(data), version, b"11/30/26"
    return b"MODULE" + header.tobytes() + data


def write_mpr(path, frame: pd.DataFrame, column_ids=MPR_COLUMNS) -> None:
    """An .mpr file as EC-Lab lays it out (settings and a version-2 data module): what galvani reads."""
    dtype, _ = BioLogic.VMPdata_dtype_from_colIDs(column_ids)
    records = np.zeros(len(frame), dtype=dtype)
    for name in dtype.names:
        if name in frame:
            records[name] = frame[name].to_numpy()
    head = np.uint32(len(frame)).tobytes() + np.uint8(len(column_ids)).tobytes()
    head += np.asarray(column_ids, dtype="<u2").tobytes()
    data = head.ljust(405, b"\x00") + records.tobytes()
    settings = _module(b"VMP Set", b"VMP settings", b"\x00" * 64, 0)
    path.write_bytes(BioLogic.MPR_MAGIC + settings + _module(b"VMP data", b"VMP data", data, 2))


@pytest.fixture
def biologic_frame(bdf_frame) -> pd.DataFrame:
    """The small BDF series in EC-Lab's names and units (mA, mA·h; + = charging)."""
    return pd.DataFrame(
        {
            "time/s": bdf_frame["Test Time / s"],
            "Ewe/V": bdf_frame["Voltage / V"],
            "I/mA": 1e3 * bdf_frame["Current / A"],
            "Ns": (bdf_frame["Current / A"].diff().fillna(0) != 0).cumsum(),
            "Q charge/mA.h": 1e3 * bdf_frame["Charging Capacity / Ah"],
            "Q discharge/mA.h": 1e3 * bdf_frame["Discharging Capacity / Ah"],
        }
    )


def test_mpr_reads_through_galvani_into_bdf_columns(tmp_path, bdf_frame, biologic_frame):
    path = tmp_path / "pulse.mpr"
    write_mpr(path, biologic_frame)
    assert len(BioLogic.MPRfile(str(path)).data) == len(bdf_frame)  # the library itself reads it
    df = read_timeseries(path)
    for label in ("Test Time / s", "Current / A", "Voltage / V", "Charging Capacity / Ah"):
        np.testing.assert_allclose(df[label], bdf_frame[label], rtol=1e-6, atol=1e-6)
    assert df["Step Index / 1"].iloc[-1] == 2


def test_mpr_with_averaged_current_and_wrong_sign(tmp_path, biologic_frame):
    averaged = biologic_frame.rename(columns={"I/mA": "<I>/mA"})
    path = tmp_path / "averaged.mpr"
    write_mpr(path, averaged, [1, 2, 3, 4, 6, 76, 131, 498, 499])  # 76: <I>/mA
    assert read_timeseries(path)["Current / A"].min() == pytest.approx(-2.0)
    flipped = biologic_frame.assign(**{"I/mA": -biologic_frame["I/mA"]})
    write_mpr(tmp_path / "flipped.mpr", flipped)
    with pytest.raises(DataError, match=r"flipped.mpr, column 'Current / A', row \d+: current sign contradicts"):
        read_timeseries(tmp_path / "flipped.mpr")


def test_bad_mpr_files_are_named(tmp_path, biologic_frame):
    path = tmp_path / "cut.mpr"
    write_mpr(path, biologic_frame)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"cut.mpr: not a readable BioLogic .mpr file"):
        read_timeseries(path)
    (tmp_path / "text.mpr").write_text("time,voltage\n0,3.3\n")
    with pytest.raises(DataError, match=r"text.mpr: not a readable BioLogic .mpr file .*magic"):
        read_timeseries(tmp_path / "text.mpr")
    write_mpr(tmp_path / "no_current.mpr", biologic_frame, [1, 2, 3, 4, 6, 131])
    with pytest.raises(DataError, match=r"no_current.mpr, column 'I/mA': missing column 'I/mA' \(Current / A\)"):
        read_timeseries(tmp_path / "no_current.mpr")


def test_a_missing_library_names_the_extra(tmp_path, biologic_frame, monkeypatch):
    write_mpr(tmp_path / "cell.mpr", biologic_frame)
    real = labfiles.importlib.import_module
    monkeypatch.setattr(
        labfiles.importlib,
        "import_module",
        lambda name: (_ for _ in ()).throw(ImportError(name)) if name == "galvani" else real(name),
    )
    with pytest.raises(
        DataError, match=r"cell.mpr: reading BioLogic .mpr files needs the galvani package: pip install"
    ):
        read_timeseries(tmp_path / "cell.mpr")


def test_our_labels_are_the_bdf_packages():
    """Every BDF label this project reads or writes is one batterydf defines (not retyped wrong)."""
    table = set(labfiles.bdf_label_table().values())
    assert set(columns.KNOWN) <= table


@pytest.mark.parametrize("name", ["cell.bdf", "cell.bdf.csv", "cell.bdf.parquet"])
def test_bdf_files_written_here_read_by_batterydf_and_back(tmp_path, bdf_frame, name):
    path = write_timeseries(bdf_frame.assign(**{"SOC / 1": 0.5}), tmp_path / name)
    if name != "cell.bdf":  # batterydf's loader knows .bdf.csv and .bdf.parquet by name
        theirs = bdf.read(str(path))
        np.testing.assert_allclose(theirs["Voltage / V"], bdf_frame["Voltage / V"])
        assert "Surface Temperature T1 / degC" in theirs
    ours = read_timeseries(path)
    assert list(ours.columns) == list(bdf_frame.columns) + ["SOC / 1"]
    assert path.stat().st_mode & 0o777 == _ordinary_mode(tmp_path)  # not a temporary file's 0600


def _ordinary_mode(folder) -> int:
    """The permissions an ordinary open() leaves on a new file here."""
    probe = folder / "probe"
    probe.write_text("")
    return probe.stat().st_mode & 0o777


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # batterydf's own use of pandas
def test_bdf_files_written_by_batterydf_in_machine_labels(tmp_path, bdf_frame):
    from bdf import io as bdf_io

    path = tmp_path / "theirs.bdf.csv"
    bdf_io.save(bdf_frame, path)  # its default: machine-readable labels (test_time_second, ...)
    assert "test_time_second" in path.read_text().splitlines()[0]
    back = read_timeseries(path)
    np.testing.assert_allclose(back["Current / A"], bdf_frame["Current / A"])
    plain = tmp_path / "theirs.csv"  # the same under a plain name: recognised by its labels
    plain.write_text(path.read_text())
    assert "Surface Temperature T1 / degC" in read_timeseries(plain)


def test_labels_written_before_the_bdf_names_are_still_read(tmp_path, bdf_frame):
    old = bdf_frame.rename(columns={"Surface Temperature T1 / degC": "Temperature T1 / degC"})
    old.to_csv(tmp_path / "old.csv", index=False)
    assert read_timeseries(tmp_path / "old.csv")["Surface Temperature T1 / degC"].iloc[0] == 25.0


def test_a_bad_bdf_file_names_column_and_row(tmp_path, bdf_frame):
    frame = bdf_frame.astype({"Voltage / V": object})
    frame.loc[7, "Voltage / V"] = "3.2x"
    frame.to_csv(tmp_path / "bad.bdf.csv", index=False)
    with pytest.raises(DataError, match=r"bad.bdf.csv, column 'Voltage / V', row 8: expected a number, found '3.2x'"):
        read_timeseries(tmp_path / "bad.bdf.csv")
    with pytest.raises(ValueError, match=r"not BDF labels"):
        write_timeseries(bdf_frame.assign(note=1.0), tmp_path / "x.bdf")
    assert not list(tmp_path.glob("*x.bdf*"))  # nothing half-written left behind


def test_mpt_text_export_read_by_batterydf_agrees_with_galvani(tmp_path, bdf_frame):
    """EC-Lab's text export (decimal commas, CRLF) through batterydf's plugin; galvani reads the same."""
    rows = [
        f"{t:.1f}\t{v:.6f}\t{1e3 * i:.3f}".replace(".", ",")
        for t, v, i in bdf_frame[["Test Time / s", "Voltage / V", "Current / A"]].to_numpy()
    ]
    lines = ["EC-Lab ASCII FILE", "Nb header lines : 4", "Technique : Galvanostatic Cycling", "time/s\tEwe/V\tI/mA"]
    path = tmp_path / "export.mpt"
    path.write_bytes(("\r\n".join(lines + rows) + "\r\n").encode("latin-1"))
    theirs, _ = BioLogic.MPTfile(str(path))
    ours = read_timeseries(path)
    np.testing.assert_allclose(ours["Current / A"], 1e-3 * theirs["I/mA"])
    np.testing.assert_allclose(ours["Voltage / V"], theirs["Ewe/V"])
    (tmp_path / "broken.mpt").write_text("EC-Lab ASCII FILE\nNb header lines : x\n")
    with pytest.raises(DataError, match=r"broken.mpt: batterydf cannot read this file"):
        read_timeseries(tmp_path / "broken.mpt")
