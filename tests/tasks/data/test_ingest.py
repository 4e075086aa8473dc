import pandas as pd
import pytest

from tasks.data.ingest import read_table
from tasks.errors import InputError
from tasks.settings import DataSettings


def test_reads_xlsx_with_excel_row_numbers_and_detects_the_time_column(valid_workbook):
    raw = read_table(valid_workbook, DataSettings(target="OT"))
    assert (raw.time_column, raw.target, raw.sheet) == ("date", "OT", "data")
    assert raw.frame.index[0] == 2  # the header is Excel row 1
    assert len(raw.frame) == 720 and raw.row_unit == "Excel row"
    assert any("auto-detected" in n for n in raw.notes)


def test_csv_and_xlsx_hold_the_same_values(catalogue):
    cfg = DataSettings(target="OT")
    xlsx, csv = read_table(catalogue["valid"], cfg), read_table(catalogue["valid_csv"], cfg)
    assert list(xlsx.frame["OT"]) == list(csv.frame["OT"])
    assert csv.row_unit == "line" and csv.frame.index[0] == 2


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


def test_text_that_pandas_would_take_for_missing_stays_text(catalogue):
    raw = read_table(catalogue["text_in_numeric"], DataSettings(target="OT"))
    assert raw.frame.loc[12, "OT"] == "n/a"


def test_error_cells_and_formulas_without_values_are_read_as_excel_shows_them(catalogue):
    # pandas reads both as blanks; they must not look like gaps that data.fill_gaps would fill.
    errors = read_table(catalogue["error_cells"], DataSettings(target="OT")).frame["OT"]
    assert (errors[62], errors[63]) == ("#DIV/0!", "#N/A")
    formulas = read_table(catalogue["formulas_no_cache"], DataSettings(target="OT")).frame["OT"]
    assert formulas[2].startswith("=B2*0+") and formulas.map(type).eq(str).all()


def test_truly_blank_cells_stay_blank(catalogue):
    frame = read_table(catalogue["blank_run"], DataSettings(target="OT")).frame
    assert frame.loc[102:113, "OT"].isna().all() and frame["OT"].notna().sum() == 708


@pytest.mark.parametrize("case, cfg, fragment", [
    ("data_on_second_sheet", {"target": "OT"}, "the data is on sheet 'load', not on sheet 'notes'; pass --sheet load"),
    ("data_on_second_sheet", {}, "pass --sheet load"),
    ("title_rows", {"target": "OT"}, "the header is on Excel row 3, not Excel row 1"),
    ("title_rows", {}, "pass --header-row 3"),
])
def test_a_misplaced_table_is_pointed_at(catalogue, case, cfg, fragment):
    with pytest.raises(InputError) as err:
        read_table(catalogue[case], DataSettings(**cfg))
    assert fragment in str(err.value)


def test_sheet_and_header_row_options_read_what_the_pointers_point_at(catalogue):
    on_load = read_table(catalogue["data_on_second_sheet"], DataSettings(target="OT", sheet="load"))
    titled = read_table(catalogue["title_rows"], DataSettings(target="OT", header_row=3))
    assert on_load.sheet == "load" and len(on_load.frame) == 720
    assert titled.frame.index[0] == 4 and len(titled.frame) == 720


def test_title_lines_above_a_csv_header_are_pointed_at(tmp_path, catalogue):
    path = tmp_path / "titled.csv"
    path.write_text("Transformer station 1\n\n" + catalogue["valid_csv"].read_text())
    with pytest.raises(InputError, match="the header is on line 3, not line 1.*--header-row 3"):
        read_table(path, DataSettings(target="OT"))
    assert len(read_table(path, DataSettings(target="OT", header_row=3)).frame) == 720


@pytest.mark.parametrize("case, fragment", [
    ("entity_bomb", "refused: the workbook declares XML entities"),
    ("decompression_bomb", "refused: its parts inflate to 2.0 GiB"),
    ("csv_renamed", "not an Excel workbook (text"),
    ("truncated", "damaged or incomplete"),
    ("empty_file", "the file is empty"),
    ("directory", "is a folder"),
])
def test_unreadable_and_hostile_files_are_refused(catalogue, case, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        read_table(catalogue[case], DataSettings(target="OT"))


def test_entities_are_refused_by_the_parser_too(tmp_path, catalogue):
    """Past the prolog check (a DOCTYPE after 4 KB of comment), calamine's refusal gets the same message."""
    import io
    import zipfile

    src = catalogue["entity_bomb"].read_bytes()
    path = tmp_path / "late_doctype.xlsx"
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                head, sep, rest = data.partition(b"?>")
                data = head + sep + b"<!--" + b" " * 5000 + b"-->" + rest
            zout.writestr(info.filename, data)
    with pytest.raises(InputError, match="declares XML entities"):
        read_table(path, DataSettings(target="OT"))


def test_the_cache_key_follows_content_and_suffix_not_path(tmp_path, catalogue):
    """A CSV renamed .xlsx has the CSV's bytes: it must not be served the CSV's cached table."""
    from tasks.data.ingest import _content_key

    cfg = DataSettings(target="OT")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(catalogue["valid_csv"].read_bytes())
    key = {name: _content_key(None, {"path": path, "cfg": cfg})
           for name, path in [("csv", catalogue["valid_csv"]), ("copy", copy), ("renamed", catalogue["csv_renamed"])]}
    assert key["csv"] == key["copy"] != key["renamed"]


def test_a_headerless_sheet_keeps_its_first_row_as_data_with_excel_row_numbers(tmp_path):
    path = tmp_path / "bare.csv"
    path.write_text("2016-07-01 00:00,1.5\n2016-07-01 01:00,2.5\n2016-07-01 02:00,3.5\n")
    raw = read_table(path, DataSettings())
    assert (raw.time_column, raw.target) == ("column_1", "column_2")
    assert raw.frame.index[0] == 1 and raw.frame["column_2"].tolist() == [1.5, 2.5, 3.5]
    assert raw.notes[0] == "no header row (line 1 holds data, not column names): columns named column_1, column_2"


def test_a_text_column_is_an_id_column_only_when_each_timestamp_recurs_once_per_id(tmp_path):
    times = pd.date_range("2020-01-01", periods=6, freq="h")
    status = tmp_path / "status.csv"  # one series with a status column: not long format
    pd.DataFrame({"date": times, "status": ["ok", "ok", "bad", "ok", "ok", "ok"], "y": range(6)}).to_csv(
        status, index=False)
    assert len(read_table(status, DataSettings()).frame) == 6
    stacked = tmp_path / "stacked.csv"
    pd.DataFrame({"date": [*times, *times], "region": ["north"] * 6 + ["south"] * 6, "y": range(12)}).to_csv(
        stacked, index=False)
    with pytest.raises(InputError) as err:
        read_table(stacked, DataSettings())
    assert "2 series in id column 'region' (long format): north, south; pass --series ID" in str(err.value)
    assert read_table(stacked, DataSettings(series="south")).frame["y"].tolist() == list(range(6, 12))
