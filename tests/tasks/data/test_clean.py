"""Cleaning is opt-in, fills only short runs of missing steps between numbers, and says what it changed."""

import numpy as np
import pandas as pd
import pytest

from tasks.data.clean import clean_table
from tasks.data.ingest import read_table
from tasks.data.validate import validate_table
from tasks.errors import InputError
from tasks.settings import DataSettings


def _clean(path, **data):
    cfg = DataSettings(target="OT", **data)
    return clean_table(read_table(path, cfg), cfg)


def _valid(raw, tiny_settings):
    return validate_table(raw, tiny_settings, "test")


def test_nothing_asked_nothing_changed(catalogue):
    raw = read_table(catalogue["gaps"], DataSettings(target="OT"))
    assert clean_table(raw, DataSettings(target="OT")) == raw


def test_sort_orders_rows_by_time_and_says_which_moved(catalogue, tiny_settings):
    raw = _clean(catalogue["unsorted"], sort=True)
    assert "data.sort: sorted the rows by time (10 rows moved: Excel rows 402-411)" in raw.notes
    series, summary = _valid(raw, tiny_settings)
    reference, _ = _valid(read_table(catalogue["valid"], DataSettings(target="OT")), tiny_settings)
    pd.testing.assert_frame_equal(series, reference)
    assert raw.frame.index[400] == 411  # rows keep their Excel row numbers for later messages


def test_fill_gaps_inserts_missing_timestamps_with_values_interpolated_in_time(catalogue, tiny_settings):
    raw = _clean(catalogue["gaps"], fill_gaps=5)
    assert any("inserted 5 missing timestamps in 1 gap (after 2016-07-21 19:00:00)" in n for n in raw.notes)
    series, summary = _valid(raw, tiny_settings)
    assert len(series) == 720 and (summary.step, summary.frequency) == ("0 days 01:00:00", "h")
    before, after = series["OT"].iloc[499], series["OT"].iloc[505]
    np.testing.assert_allclose(series["OT"].iloc[500:505], before + (after - before) * np.arange(1, 6) / 6)
    assert raw.frame.index[500:505].isna().all()  # inserted rows have no Excel row


def test_fill_gaps_fills_blank_runs_up_to_the_limit_and_no_longer(catalogue, tiny_settings):
    raw = _clean(catalogue["blank_run"], fill_gaps=12)
    assert "data.fill_gaps=12: interpolated 12 blank cells in column 'OT' (Excel rows 102-113)" in raw.notes
    series, _ = _valid(raw, tiny_settings)
    assert series["OT"].notna().all()
    short = _clean(catalogue["blank_run"], fill_gaps=11)
    assert "data.fill_gaps=11: nothing to fill" in short.notes
    with pytest.raises(InputError, match="12 blank cells at Excel rows 102-113"):
        _valid(short, tiny_settings)


def test_a_gap_next_to_blank_cells_counts_as_one_run(tmp_path, catalogue, tiny_settings):
    frame = pd.read_csv(catalogue["valid_csv"], dtype=str)
    frame = frame.drop(index=[300, 301])  # 2 missing timestamps
    frame.loc[302, "OT"] = ""  # and the blank cell right after them: a run of 3 missing steps
    path = tmp_path / "run.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match="2 missing timestamps"):
        _valid(_clean(path, fill_gaps=2), tiny_settings)
    series, _ = _valid(_clean(path, fill_gaps=3), tiny_settings)
    assert len(series) == 720 and series["OT"].notna().all()


def test_text_excel_errors_and_formulas_are_never_filled(catalogue, tiny_settings):
    for case, fragment in [("text_in_numeric", "hold text"), ("error_cells", "Excel errors"),
                           ("formulas_no_cache", "formula cells")]:
        raw = _clean(catalogue[case], fill_gaps=50)
        with pytest.raises(InputError, match=fragment):
            _valid(raw, tiny_settings)


def test_blank_cells_at_the_edges_have_nothing_to_interpolate_from(tmp_path, catalogue, tiny_settings):
    frame = pd.read_csv(catalogue["valid_csv"], dtype=str)
    frame.loc[0:1, "OT"] = ""
    path = tmp_path / "edge.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match="2 blank cells at lines 2-3"):
        _valid(_clean(path, fill_gaps=5), tiny_settings)


def test_bad_timestamps_are_not_filled_around(catalogue, tiny_settings):
    raw = _clean(catalogue["duplicate_timestamps"], fill_gaps=5)
    assert any("nothing filled, because the timestamps" in n for n in raw.notes)
    with pytest.raises(InputError, match="3 rows share 1 timestamp"):
        _valid(raw, tiny_settings)


def test_the_table_read_is_not_modified(catalogue):
    """read_workbook's result is cached: cleaning must work on a copy."""
    raw = read_table(catalogue["gaps"], DataSettings(target="OT"))
    before = raw.frame.copy()
    clean_table(raw, DataSettings(target="OT", fill_gaps=5, sort=True))
    pd.testing.assert_frame_equal(raw.frame, before)
