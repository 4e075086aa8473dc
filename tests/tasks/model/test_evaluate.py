import numpy as np

from tasks.model.evaluate import evaluate_forecasts, repeat_forecast, season_length, seasonal_naive_forecast
from tasks.prepare.normalize import Scaler

VALUES = np.arange(60, dtype=np.float64)[:, None]


def test_baselines_use_only_values_before_the_origin():
    starts = range(30, 33)
    np.testing.assert_array_equal(repeat_forecast(VALUES, starts, 3)[0], [29, 29, 29])
    # season 4, h = 0..5: one season back for h < 4, two seasons back for h >= 4
    np.testing.assert_array_equal(seasonal_naive_forecast(VALUES, starts, 6, 4)[0], [26, 27, 28, 29, 26, 27])


def test_season_is_inferred_from_the_frequency():
    assert season_length("h", "0 days 01:00:00") == 24
    assert season_length("15min", "0 days 00:15:00") == 96
    assert season_length("D", "1 days") == 7
    assert season_length("MS", "MS") == 12


def test_metrics_in_both_scales_and_baselines_on_the_same_windows():
    scaler = Scaler(("y",), (10.0,), (2.0,))
    starts = range(30, 40)
    truth = VALUES[np.arange(30, 40)[:, None] + np.arange(2)[None, :], 0]
    perfect = evaluate_forecasts(VALUES, starts, truth.copy(), scaler, VALUES[:30, 0] * 2 + 10, season=1)
    assert perfect["test_mse"] == 0 and perfect["test_mase"] == 0
    off = evaluate_forecasts(VALUES, starts, truth + 1, scaler, VALUES[:30, 0] * 2 + 10, season=1)
    assert off["test_mse"] == 1 and off["test_mae"] == 1
    assert off["test_rmse_units"] == 2 and off["test_mae_units"] == 2  # std 2: one normalized unit is 2 units
    assert off["test_mase"] == 1  # the naive in-sample MAE is 2 units per step
    # Repeat misses by 1 and 2 steps of a unit slope: mse (1 + 4) / 2
    assert off["repeat_test_mse"] == 2.5 and "seasonal_naive_test_mse" in off
