import pandas as pd
import pytest

from tasks.errors import InputError
from tasks.ingest import read_table
from tasks.settings import DataSettings


def test_reads_xlsx_with_excel_row_numbers_and_detects_the_time_column(valid_workbook):
    raw = read_table(valid_workbook, DataSettings(target="OT"))
    assert (raw.time_column, raw.target, raw.sheet) == ("date", "OT", "data")
    assert raw.frame.index[0] == 2  # the header is Excel row 1
    assert len(raw.frame) == 720
    assert any("auto-detected" in n for n in raw.notes)


def test_csv_and_xlsx_hold_the_same_values(catalogue):
    cfg = DataSettings(target="OT")
    xlsx, csv = read_table(catalogue["valid"], cfg), read_table(catalogue["valid_csv"], cfg)
    assert list(xlsx.frame["OT"]) == list(csv.frame["OT"])


def test_features_are_kept(valid_workbook):
    raw = read_table(valid_workbook, DataSettings(target="OT", features=("HUFL",)))
    assert list(raw.frame.columns) == ["date", "OT", "HUFL"]


def test_ambiguous_target_lists_candidates(valid_workbook):
    with pytest.raises(InputError) as err:
        read_table(valid_workbook, DataSettings())
    assert "HUFL" in str(err.value) and "--target" in str(err.value)


def test_single_numeric_column_is_picked_and_said(tmp_path):
    path = tmp_path / "one.csv"
    pd.DataFrame({"when": pd.date_range("2024-01-01", periods=5, freq="D"), "sales": range(5)}).to_csv(path, index=False)
    raw = read_table(path, DataSettings(time_column="when"))
    assert raw.target == "sales" and any("sales" in n for n in raw.notes)


def test_digest_depends_on_content_not_path(tmp_path, valid_workbook):
    copy = tmp_path / "renamed.xlsx"
    copy.write_bytes(valid_workbook.read_bytes())
    cfg = DataSettings(target="OT")
    assert read_table(copy, cfg).digest == read_table(valid_workbook, cfg).digest
