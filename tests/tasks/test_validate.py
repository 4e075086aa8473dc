import pandas as pd
import pytest

from tasks.errors import InputError
from tasks.ingest import read_table
from tasks.validate import validate_table


def _validate(path, settings):
    return validate_table(read_table(path, settings.data), settings, str(path))


def test_valid_workbook_gives_a_typed_hourly_series(valid_workbook, tiny_settings):
    series, summary = _validate(valid_workbook, tiny_settings)
    assert isinstance(series.index, pd.DatetimeIndex) and series.index.is_monotonic_increasing
    assert list(series.columns) == ["OT"] and series["OT"].dtype == float
    assert (summary.rows, summary.frequency, summary.step) == (720, "h", "0 days 01:00:00")


@pytest.mark.parametrize("case, fragments", [
    ("text_in_numeric", ["hold text", "'12,5' (row 13)", "row 202"]),
    ("unparseable_timestamps", ["not dates", "'yesterday' (row 8)"]),
    ("duplicate_timestamps", ["duplicate timestamp"]),
    ("unsorted", ["go backwards", "sort"]),
    ("gaps", ["5 missing timestamp", "data.fill_gaps=5"]),
    ("irregular_spacing", ["uneven spacing at rows 202, 207"]),
    ("constant_target", ["constant"]),
    ("blank_run", ["12 blank cell", "rows 102"]),
    ("too_short", ["only 30 data rows"]),
])
def test_problems_name_what_and_where(catalogue, tiny_settings, case, fragments):
    with pytest.raises(InputError) as err:
        _validate(catalogue[case], tiny_settings)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message


def test_infinities_are_refused(catalogue, tiny_settings):
    with pytest.raises(InputError, match="infinite"):
        _validate(catalogue["infinity"], tiny_settings)


def test_all_problems_are_reported_together(tmp_path, catalogue, tiny_settings):
    frame = pd.read_csv(catalogue["valid_csv"], dtype=str)
    frame.loc[3, "OT"] = "abc"
    frame.loc[10, "date"] = frame.loc[9, "date"]
    bad = tmp_path / "two.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(InputError) as err:
        _validate(bad, tiny_settings)
    assert len(err.value.problems) >= 2
