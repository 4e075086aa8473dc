import itertools

import numpy as np
import pandas as pd
import pytest

from tasks.errors import InputError
from tasks.prepare.normalize import fit_scaler
from tasks.prepare.split import Bounds, required_rows, scaled_note, split_bounds, split_sizes
from tasks.settings import SplitSettings, load_settings, parse_settings


def test_fractions_and_row_counts_split_chronologically():
    assert split_bounds(1000, SplitSettings(train=0.7, val=0.1, test=0.2)) == Bounds((0, 700), (700, 800), (800, 1000))
    # The ETTh1 protocol as row counts; the rows after the test split are unused.
    etth1 = split_bounds(17420, SplitSettings(train=8640, val=2880, test=2880))
    assert etth1 == Bounds((0, 8640), (8640, 11520), (11520, 14400))


def test_fractions_that_add_up_to_one_use_every_row_and_never_one_more():
    # Rounded one by one, 0.7/0.15/0.15 of 1,010 rows was 707 + 152 + 152 = 1,011 rows.
    assert split_bounds(1010, SplitSettings(train=0.7, val=0.15, test=0.15)) == Bounds((0, 707), (707, 858), (858, 1010))


# Fractions (train, val, test) from 0.05 to 0.85, those adding up to at most 1, and mixes with row counts.
FRACTIONS = [f for f in itertools.product([0.5, 0.6, 0.7, 0.8, 0.85], [0.05, 0.1, 0.15, 0.2, 0.25],
                                          [0.05, 0.1, 0.15, 0.2, 0.3]) if sum(f) <= 1 + 1e-9]
MIXED = [(0.7, 0.15, 200), (0.6, 300, 0.2), (800, 0.1, 0.1), (0.9, 0.05, 500)]
WINDOWS = [(96, 24), (24, 6), (1, 1), (336, 96)]


@pytest.mark.parametrize("L, H", WINDOWS)
def test_every_row_count_up_to_100k_splits_within_the_data(L, H):
    """Every row count from the fewest rows the settings accept to 100,000, for every setting of the grid
    (all row counts at once per setting: ~4 s in all)."""
    minimum = np.array([L + H, H, H])
    checked = 0
    for train, val, test in FRACTIONS + MIXED:
        settings = parse_settings({"split": {"train": train, "val": val, "test": test},
                                   "window": {"input_length": L, "horizon": H}})
        first = required_rows(settings)
        n = np.arange(first, 100_001)
        sizes = split_sizes(n, settings.split)  # [row counts, 3]
        assert (sizes.sum(axis=1) <= n).all(), (train, val, test)
        assert (sizes >= minimum).all(), (train, val, test)
        given = np.array([train, val, test], dtype=float)
        # A fraction's split is within one row of fraction x n; a row count is taken as given.
        expected = np.where(given < 1, given * n[:, None], given)
        assert (np.abs(sizes - expected) < 1 + 1e-6).all(), (train, val, test)
        if given[given < 1].sum() > 1 - 1e-9:
            assert (sizes.sum(axis=1) == n).all(), "fractions adding up to 1 leave no row unused"
        # `required_rows` is the fewest: one row less and some split has no window or passes the end.
        below = split_sizes(first - 1, settings.split)[0]
        assert below.sum() > first - 1 or (below < minimum).any(), (train, val, test)
        checked += len(n)
    # The scalar function the flows call agrees with the vectorised one.
    for count in (first, first + 1, first + 1010, 99_999):
        bounds = split_bounds(count, settings.split)
        assert list(bounds.rows().values()) == list(split_sizes(count, settings.split)[0])
        assert bounds.test[1] <= count
    assert checked > 50 * 90_000


@pytest.mark.parametrize("split, fragment", [
    # Accepted before, then `required_rows` looped forever.
    ({"train": 0.5, "val": 0.5, "test": 100}, "split.train=0.5, split.val=0.5, split.test=100: the fractions take every row"),
    ({"train": 0.1, "val": 0.2, "test": 0.7000001}, "add up to more than 1"),
    ({"train": 0.5, "val": 0.2, "test": 1e-12}, "need over 1,000,000,000 rows"),
])
def test_splits_no_row_count_satisfies_are_refused_by_the_settings(split, fragment):
    with pytest.raises(InputError) as err:
        parse_settings({"split": split})
    assert fragment in str(err.value)
    assert "Value error" not in str(err.value)


def test_fractions_adding_up_to_one_in_any_order_are_accepted():
    # 0.1 + 0.2 + 0.7 is 1.0000000000000002 in floating point.
    settings = parse_settings({"split": {"train": 0.1, "val": 0.2, "test": 0.7}, "window": {"input_length": 4, "horizon": 2}})
    assert split_bounds(100, settings.split) == Bounds((0, 10), (10, 30), (30, 100))


def test_statistics_come_from_the_train_split_only():
    # A level shift after the train split must not leak into the scaler.
    frame = pd.DataFrame({"y": np.r_[np.full(50, 1.0), np.full(50, 100.0)] + np.tile([0.0, 2.0], 50)})
    scaler = fit_scaler(frame, Bounds((0, 50), (50, 75), (75, 100)))
    assert scaler.mean == (2.0 / 2 + 1.0,) and scaler.std == (1.0,)
    z = scaler.transform(frame)
    assert abs(z[:50].mean()) < 1e-6 and z[50:].mean() > 50
    np.testing.assert_allclose(scaler.inverse_target(z[:, 0]), frame["y"], rtol=1e-6)


def test_the_seed_preset_scales_its_row_counts_down_on_fewer_rows_and_says_so():
    settings = load_settings(preset="seed")
    n = np.arange(required_rows(settings), 100_001)
    sizes = split_sizes(n, settings.split)
    assert (sizes.sum(axis=1) <= n).all() and (sizes >= np.array(settings.split_minimum())).all()
    assert (sizes[n >= 1200] == [800, 200, 200]).all()  # the tutorial's counts wherever they fit
    # The tutorial's own 800 numbers: val and test held out of them, in the counts' proportions.
    assert split_bounds(800, settings.split) == Bounds((0, 533), (533, 666), (666, 800))
    assert "scaled down alike to train 533, val 133, test 134" in scaled_note(800, settings.split)
    assert scaled_note(1200, settings.split) is None
