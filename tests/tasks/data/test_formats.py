"""Every file type the README promises (.xlsx, .xlsm, .xls, .csv, .parquet) reads to the same validated
series as the .xlsx, in process and through `lstm-pipeline validate`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.ingest import read_table
from tasks.data.validate import validate_table
from tasks.settings import load_settings

SOURCE = Path(__file__).parents[2] / "fixtures" / "etth1_head.csv"
MACRO_TYPE = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"


def _xlsm(xlsx: Path, path: Path) -> Path:
    """The workbook as Excel saves it with macros enabled: the same parts, the workbook's content type
    `macroEnabled` (what makes a file .xlsm; this one holds no macros)."""
    with zipfile.ZipFile(xlsx) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "[Content_Types].xml":
                data = data.replace(b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                                    MACRO_TYPE.encode())
            out.writestr(item, data)
    return path


def _xls(frame: pd.DataFrame, path: Path) -> Path:
    """A legacy BIFF8 workbook (Excel 97-2003), timestamps as date cells."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("data")
    when = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss")
    for col, name in enumerate(frame.columns):
        sheet.write(0, col, name)
    for row, values in enumerate(frame.itertuples(index=False), start=1):
        sheet.write(row, 0, values[0].to_pydatetime(), when)
        for col, value in enumerate(values[1:], start=1):
            sheet.write(row, col, float(value))
    book.save(str(path))
    return path


@pytest.fixture(scope="module")
def books(valid_workbook, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    frame = pd.read_csv(SOURCE, parse_dates=["date"])
    frame.to_parquet(folder / "station.parquet")
    return {".xlsx": valid_workbook, ".xlsm": _xlsm(valid_workbook, folder / "station.xlsm"),
            ".xls": _xls(frame, folder / "station.xls"), ".csv": SOURCE, ".parquet": folder / "station.parquet"}


def _series(path: Path) -> pd.DataFrame:
    settings = load_settings(None, ["data.target=OT", "data.features=[HUFL]"])
    return validate_table(read_table(path, settings.data), settings, str(path))[0]


@pytest.mark.parametrize("suffix", [".xlsm", ".xls", ".csv", ".parquet"])
def test_each_file_type_reads_to_the_same_series_as_the_xlsx(books, suffix):
    if suffix == ".xlsm":
        with zipfile.ZipFile(books[suffix]) as book:
            assert MACRO_TYPE.encode() in book.read("[Content_Types].xml")
    expected = _series(books[".xlsx"])
    got = _series(books[suffix])
    assert len(got) == 720 and list(got.columns) == ["OT", "HUFL"]
    pd.testing.assert_index_equal(got.index, expected.index, check_names=False)
    # float32 in the workbook, float64 in the CSV: equal to the last digits a float32 keeps.
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".xlsm", ".xls", ".parquet"])
def test_the_command_line_validates_each_file_type(books, suffix):
    done = subprocess.run([sys.executable, "-m", "flows.cli", "validate", str(books[suffix]), "--target", "OT"],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert "rows: 720" in done.stdout and "frequency h" in done.stdout
