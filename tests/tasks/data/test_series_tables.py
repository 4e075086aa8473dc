"""Several series from one file: picked (wide columns, long ids), each validated on its own, reported together."""

import pandas as pd
import pytest

from tasks.data.ingest import read_tables
from tasks.data.validate import validate_tables
from tasks.errors import InputError
from tasks.settings import DataSettings, parse_settings

SMALL = {"split": {"train": 0.6, "val": 0.2, "test": 0.2}, "window": {"input_length": 24, "horizon": 6}}


def settings(**data):
    return parse_settings(SMALL | {"data": data})


def problems(path, s) -> list[str]:
    with pytest.raises(InputError) as err:
        validate_tables(read_tables(path, s.data), s, str(path))
    return [str(p) for p in err.value.problems]


def test_wide_columns_are_series_named_or_all(valid_workbook):
    every = read_tables(valid_workbook, DataSettings(target="all"))
    assert list(every.tables) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"] and every.several
    assert every.id_column is None and all(t.target == i for i, t in every.tables.items())
    two = read_tables(valid_workbook, DataSettings(target="OT, HUFL"))
    assert list(two.tables) == ["OT", "HUFL"] and list(two.tables["HUFL"].frame.columns) == ["date", "HUFL"]
    assert not read_tables(valid_workbook, DataSettings(target="OT")).several


def test_long_ids_are_series_some_or_all(catalogue):
    every = read_tables(catalogue["long_uneven"], DataSettings(series="all"))
    assert list(every.tables) == ["A", "B", "S", "G"] and every.id_column == "store"
    assert [len(t.frame) for t in every.tables.values()] == [720, 480, 30, 719]
    assert list(read_tables(catalogue["long_uneven"], DataSettings(series="B,A")).tables) == ["B", "A"]
    with pytest.raises(InputError, match="no series 'X' in id column 'store'"):
        read_tables(catalogue["long_uneven"], DataSettings(series="A,X"))


def test_every_series_problem_is_reported_at_once_with_its_id(catalogue):
    found = problems(catalogue["long_uneven"], settings(series="all"))
    assert any("series S: only 30 data rows" in p for p in found)
    assert any("series G, column 'date': 1 missing timestamp" in p and "Excel row 1332" in p for p in found)
    assert found[-1].startswith(f"{catalogue['long_uneven']}: 2 of 4 series failed (S, G)")


def test_skip_bad_series_leaves_them_out_and_says_why(catalogue):
    s = settings(series="all", skip_bad_series=True)
    valid = validate_tables(read_tables(catalogue["long_uneven"], s.data), s, "book")
    assert list(valid.series) == ["A", "B"] and list(valid.skipped) == ["S", "G"]
    assert "only 30 data rows" in valid.skipped["S"]
    # With nothing left, skipping is no way out.
    with pytest.raises(InputError):
        validate_tables(read_tables(catalogue["long_uneven"], s.data.model_copy(update={"series": "S,G"})), s, "b")


def test_a_text_column_among_all_is_refused_by_name(catalogue):
    found = problems(catalogue["wide_text_column"], settings(target="all"))
    assert any("column 'note': 720 cells hold text" in p for p in found)


def test_series_at_other_frequencies_are_refused(tmp_path):
    hourly = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=60, freq="h"), "store": "A", "y": 1.0})
    daily = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=60, freq="D"), "store": "B", "y": 2.0})
    path = tmp_path / "mixed.csv"
    pd.concat([hourly, daily]).assign(y=lambda f: f["y"] + range(120)).to_csv(path, index=False)
    found = problems(path, settings(series="all"))
    assert found == [f"{path}: the series are not spaced alike (A every 1 hour, B every 1 day); one model forecasts "
                     "series of one frequency; train the series of each frequency apart (--series A,B, or --target A,B)"]


def test_a_wide_column_that_starts_later_is_its_own_span(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=80, freq="h"), "a": range(80),
                          "b": [None] * 10 + list(range(70))})
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    s = settings(target="all")
    tables = read_tables(path, s.data)
    assert len(tables.tables["b"].frame) == 70 and "series b: its values run from line 12 to 81" in \
        tables.tables["b"].notes[-1]
    valid = validate_tables(tables, s, str(path))
    assert valid.series["b"][1].start == "2020-01-01 10:00:00"


def test_a_name_with_a_comma_or_named_all_is_one_column(tmp_path):
    path = tmp_path / "sales.csv"
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=80, freq="h"), "Sales, EUR": range(80),
                  "all": range(80, 160)}).to_csv(path, index=False)
    one = read_tables(path, DataSettings(target="Sales, EUR"))
    assert list(one.tables) == ["Sales, EUR"] and not one.several
    assert list(read_tables(path, DataSettings(target="all")).tables) == ["all"]  # a column named all
    assert read_tables(path, DataSettings(target="all,")).several  # a comma after it: the list of one


def test_wide_series_without_a_time_column_keep_their_place_in_the_sheet(tmp_path):
    path = tmp_path / "steps.csv"
    pd.DataFrame({"a": range(80), "b": [None] * 10 + list(range(70))}).to_csv(path, index=False)
    tables = read_tables(path, DataSettings(target="all", time_column="none"))
    assert tables.tables["a"].frame["step"].iloc[10] == tables.tables["b"].frame["step"].iloc[0] == 10


def test_numeric_ids_stay_numbers_in_the_models_input(tmp_path):
    from tasks.data.panel import Member, Prepared

    path = tmp_path / "ids.csv"
    frame = pd.concat([pd.DataFrame({"date": pd.date_range("2020-01-01", periods=60, freq="h"), "id": i,
                                     "y": [float(i + k % 7) for k in range(60)]}) for i in (1, 2)])
    frame.to_csv(path, index=False)
    s = settings(series="all")
    valid = validate_tables(read_tables(path, s.data), s, str(path))
    data = Prepared(tuple(Member(i, *v) for i, v in valid.series.items()), "d", str(path), True, "id")
    latest = data.latest(24)
    assert latest["id"].tolist() == [1] * 24 + [2] * 24 and list(valid.series) == ["1", "2"]
