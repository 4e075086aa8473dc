import pandas as pd
import pytest
from pandas.tseries.frequencies import to_offset

from tasks.data.ingest import read_table
from tasks.data.validate import validate_table
from tasks.errors import rows_text
from tasks.errors import InputError


def _validate(path, settings):
    return validate_table(read_table(path, settings.data), settings, str(path))


def _problems(path, settings) -> list[str]:
    with pytest.raises(InputError) as err:
        _validate(path, settings)
    return [str(p) for p in err.value.problems]


def test_valid_workbook_gives_a_typed_hourly_series(valid_workbook, tiny_settings):
    series, summary = _validate(valid_workbook, tiny_settings)
    assert isinstance(series.index, pd.DatetimeIndex) and series.index.is_monotonic_increasing
    assert list(series.columns) == ["OT"] and series["OT"].dtype == float
    assert (summary.rows, summary.frequency, summary.step) == (720, "h", "0 days 01:00:00")


@pytest.mark.parametrize("case, expected", [
    ("text_in_numeric", "column 'OT': 3 cells hold text, not numbers: 'n/a' (Excel row 12), '12,5' (Excel row 13), "
                        "'--' (Excel row 202); write numbers with a decimal point"),
    ("unparseable_timestamps", "column 'date': 2 cells are not dates or times: '2016-13-45 00:00' (Excel row 7), "
                               "'yesterday' (Excel row 8)"),
    ("duplicate_timestamps", "column 'date': 3 rows share 1 timestamp: 2016-07-13 11:00:00 at Excel rows 301-303"),
    ("unsorted", "column 'date': timestamps go backwards at Excel rows 403-411"),
    ("gaps", "column 'date': 5 missing timestamps in 1 gap (the step is 1 hour): 5 after 2016-07-21 19:00:00 "
             "(before Excel row 502); add the missing rows, or pass --set data.fill_gaps=5"),
    ("irregular_spacing", "column 'date': uneven spacing at Excel rows 202, 207 (the step is 1 hour elsewhere)"),
    ("constant_target", "column 'OT': the target is constant"),
    ("blank_run", "column 'OT': 12 blank cells at Excel rows 102-113; fill in the blanks, or pass --set data.fill_gaps=12"),
    ("error_cells", "column 'OT': 2 cells hold Excel errors: '#DIV/0!' (Excel row 62), '#N/A' (Excel row 63)"),
    ("formulas_no_cache", "column 'OT': 720 formula cells have no saved values (Excel rows 2-721"),
    ("too_short", "only 30 data rows; the split and window settings need at least"),
])
def test_each_problem_is_one_message_naming_file_sheet_column_and_rows(catalogue, tiny_settings, case, expected):
    problems = _problems(catalogue[case], tiny_settings)
    # One message per problem: an unsorted or repeated timestamp is not reported again as a gap or uneven step.
    assert len(problems) == 1 or case == "duplicate_timestamps", problems
    assert problems[0].startswith(f"{catalogue[case]}, sheet 'data'") and expected in problems[0], problems


def test_csv_problems_name_line_numbers_and_infinities_are_not_a_constant_target(catalogue, tiny_settings):
    problems = _problems(catalogue["infinity"], tiny_settings)
    assert problems == [f"{catalogue['infinity']}, column 'OT': 2 infinite values: inf (line 52), -inf (line 53); "
                        "replace them with real numbers"]


def test_all_problems_are_reported_together(tmp_path, catalogue, tiny_settings):
    frame = pd.read_csv(catalogue["valid_csv"], dtype=str)
    frame.loc[3, "OT"] = "abc"
    frame.loc[10, "date"] = frame.loc[9, "date"]
    bad = tmp_path / "two.csv"
    frame.to_csv(bad, index=False)
    problems = _problems(bad, tiny_settings)
    assert any("'abc' (line 5)" in p for p in problems) and any("lines 11-12" in p for p in problems)


def test_many_cells_are_counted_not_listed(tmp_path, catalogue, tiny_settings):
    frame = pd.read_csv(catalogue["valid_csv"], dtype=str)
    frame.loc[100:199, "OT"] = "x"
    bad = tmp_path / "many.csv"
    frame.to_csv(bad, index=False)
    (problem,) = _problems(bad, tiny_settings)
    assert "100 cells hold text" in problem and "and 95 more" in problem and len(problem) < 400


def test_rows_text_shows_runs_and_counts_the_rest():
    assert rows_text([5], "Excel row") == "Excel row 5"
    assert rows_text([3, 4, 5, 9], "line") == "lines 3-5, 9"
    assert rows_text([1, 3, 5, 7, 9, 11, 12, 13], "Excel row") == "Excel rows 1, 3, 5, 7, 9 and 3 more"


@pytest.mark.parametrize("freq, step", [("MS", "1 month"), ("ME", "1 month"), ("QS-FEB", "1 quarter"),
                                        ("B", "1 business day"), ("W-MON", "1 week")])
def test_a_missing_calendar_step_is_one_gap_not_uneven_spacing(tmp_path, tiny_settings, freq, step):
    times = pd.date_range("2001-01-01", periods=120, freq=freq)
    path = tmp_path / "calendar.csv"
    pd.DataFrame({"date": times, "OT": range(120)}).drop(index=[50]).to_csv(path, index=False)
    problems = _problems(path, tiny_settings)
    assert problems == [f"{path}, column 'date': 1 missing timestamp in 1 gap (the step is {step}): 1 after "
                        f"{times[49]} (before line 52); add the missing rows"]
    pd.DataFrame({"date": times, "OT": range(120)}).to_csv(path, index=False)
    assert to_offset(_validate(path, tiny_settings)[1].frequency) == to_offset(freq)
