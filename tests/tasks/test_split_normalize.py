import numpy as np
import pandas as pd

from tasks.normalize import fit_scaler
from tasks.settings import SplitSettings, parse_settings
from tasks.split import Bounds, required_rows, split_bounds


def test_fractions_and_row_counts_split_chronologically():
    assert split_bounds(1000, SplitSettings(train=0.7, val=0.1, test=0.2)) == Bounds((0, 700), (700, 800), (800, 1000))
    # The ETTh1 protocol as row counts; the rows after the test split are unused.
    etth1 = split_bounds(17420, SplitSettings(train=8640, val=2880, test=2880))
    assert etth1 == Bounds((0, 8640), (8640, 11520), (11520, 14400))


def test_required_rows_gives_every_split_a_window():
    settings = parse_settings({"window": {"input_length": 24, "horizon": 6}})
    n = required_rows(settings)
    bounds = split_bounds(n, settings.split)
    rows = bounds.rows()
    assert rows["train"] >= 30 and rows["val"] >= 6 and rows["test"] >= 6
    assert required_rows(settings) <= n


def test_statistics_come_from_the_train_split_only():
    # A level shift after the train split must not leak into the scaler.
    frame = pd.DataFrame({"y": np.r_[np.full(50, 1.0), np.full(50, 100.0)] + np.tile([0.0, 2.0], 50)})
    scaler = fit_scaler(frame, Bounds((0, 50), (50, 75), (75, 100)))
    assert scaler.mean == (2.0 / 2 + 1.0,) and scaler.std == (1.0,)
    z = scaler.transform(frame)
    assert abs(z[:50].mean()) < 1e-6 and z[50:].mean() > 50
    np.testing.assert_allclose(scaler.inverse_target(z[:, 0]), frame["y"], rtol=1e-6)
