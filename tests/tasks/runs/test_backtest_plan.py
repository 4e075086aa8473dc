"""Backtest folds: where they lie, that none trains on rows at or after its origin, the refusal when rows
are too few, and how fold scores add up."""

import math

import pandas as pd
import pytest

from tasks.errors import InputError
from tasks.runs.backtest import least_origin, plan_folds, refit_once, summarize
from tasks.settings import parse_settings

# The ETTh1 protocol's split: train 8,640 rows, val 2,880, test 2,880 (ending at row 14,400).
PROTOCOL = parse_settings({"split": {"train": 8640, "val": 2880, "test": 2880},
                           "window": {"input_length": 96, "horizon": 24}})


def test_folds_tile_the_rows_that_end_with_the_test_split():
    plan = plan_folds(17420, PROTOCOL, folds=4, fold_size=None)
    assert [f.origin for f in plan] == [2880, 5760, 8640, 11520]
    assert [f.bounds.test for f in plan] == [(2880, 5760), (5760, 8640), (8640, 11520), (11520, 14400)]
    # The last fold is the protocol's own split: 8,640 train and 2,880 val rows before it.
    assert plan[-1].bounds.train == (0, 8640) and plan[-1].bounds.val == (8640, 11520)


@pytest.mark.parametrize("folds, size", [(1, None), (3, 500), (4, 2880), (12, 700)])
def test_no_fold_trains_or_validates_on_rows_at_or_after_its_origin(folds, size):
    plan = plan_folds(17420, PROTOCOL, folds, size)
    for fold in plan:
        train, val, test = fold.bounds.train, fold.bounds.val, fold.bounds.test
        assert train[0] == 0 and train[1] == val[0] and val[1] == test[0] == fold.origin
        assert train[1] - train[0] >= 96 + 24 and val[1] - val[0] >= 24
        # train:val keeps the settings' 3:1 proportion, to the row
        assert abs((train[1] - train[0]) - 0.75 * fold.origin) <= 0.5
    assert [f.bounds.test[1] - f.bounds.test[0] for f in plan] == [size or 2880] * folds
    assert plan[-1].bounds.test[1] == 14400


def test_too_few_rows_are_refused_with_what_is_needed_and_what_lowers_it():
    with pytest.raises(InputError) as caught:
        plan_folds(17420, PROTOCOL, folds=5, fold_size=None)
    message = str(caught.value)
    first = least_origin(PROTOCOL, 0.75)
    assert f"a backtest of 5 folds of 2,880 rows needs {first + 5 * 2880:,} rows up to the end of the test split" \
           in message
    assert "the data has 14,400" in message and "lower --folds or --fold-size" in message
    assert plan_folds(17420, PROTOCOL, folds=4, fold_size=None)  # one fold fewer fits


def test_the_least_origin_is_exact():
    first = least_origin(PROTOCOL, 0.75)
    assert first == 160  # round(160 * 0.75) = 120 = L + H train rows, 40 >= H val rows
    assert plan_folds(14400 - 0, PROTOCOL.model_copy(), 1, 14400 - first)[0].origin == first
    with pytest.raises(InputError):
        plan_folds(14400, PROTOCOL, 1, 14400 - first + 1)


def test_a_fold_shorter_than_the_horizon_is_refused():
    with pytest.raises(InputError, match="--fold-size 10 is shorter than window.horizon"):
        plan_folds(17420, PROTOCOL, folds=3, fold_size=10)


def test_refit_once_trains_before_the_first_origin_and_scores_every_fold():
    plan = plan_folds(17420, PROTOCOL, folds=3, fold_size=1000)
    once = refit_once(plan)
    assert once.train == plan[0].bounds.train and once.val == plan[0].bounds.val
    assert once.test == (plan[0].origin, 14400)


def test_parent_scores_are_the_means_of_the_finished_folds():
    table = pd.DataFrame({"test_mse": [0.1, 0.3, math.nan], "test_mae": [0.2, 0.4, math.nan],
                          "repeat_test_mse": [0.2, 0.6, math.nan], "seasonal_naive_test_mse": [1.0, 2.0, math.nan],
                          "val_mse": [0.05, 0.15, math.nan], "status": ["FINISHED", "FINISHED", "FAILED"]})
    scores = summarize(table)
    assert scores["backtest_mse"] == pytest.approx(0.2) and scores["backtest_mae"] == pytest.approx(0.3)
    assert scores["backtest_mse_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert scores["repeat_backtest_mse"] == pytest.approx(0.4) and scores["seasonal_naive_backtest_mse"] == 1.5
    assert scores["backtest_val_mse"] == pytest.approx(0.1) and scores["folds_finished"] == 2
