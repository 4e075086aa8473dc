import os

import numpy as np
import pandas as pd
import pytest

from tasks.data.discover import newest_workbook
from tasks.data.drift import compare, profile
from tasks.errors import InputError


def test_newest_workbook_by_modification_time_skipping_lock_files(tmp_path):
    for i, name in enumerate(["old.xlsx", "new.csv", "~$new.xlsx", "notes.txt"]):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (1_000 + i, 1_000 + i))
    assert newest_workbook(tmp_path).name == "new.csv"
    assert newest_workbook(tmp_path, "*.xlsx").name == "old.xlsx"


def test_no_workbook_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no workbook"):
        newest_workbook(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        newest_workbook(tmp_path / "missing")


def _series(values, start="2024-01-01"):
    return pd.DataFrame({"y": values}, index=pd.date_range(start, periods=len(values), freq="h", name="t"))


def test_same_distribution_is_stable_and_a_level_shift_is_flagged():
    rng = np.random.default_rng(0)
    ref = profile(_series(rng.normal(10, 2, 2000)), "y", (0, 1500))
    same = compare(ref, ref, rng.normal(10, 2, 500))
    assert not same.shifted and same.psi < 0.1 and abs(same.mean_shift_in_std) < 0.3
    moved = compare(ref, ref, rng.normal(16, 2, 500))
    assert moved.shifted and moved.psi > 0.25 and moved.mean_shift_in_std > 2


def test_removed_columns_count_as_a_shift():
    ref = profile(_series(np.arange(100.0)).assign(x=1.0), "y", (0, 80))
    new = profile(_series(np.arange(100.0)), "y", (0, 100))
    report = compare(ref, new, np.arange(80.0))
    assert report.columns_removed == ["x"] and report.shifted
