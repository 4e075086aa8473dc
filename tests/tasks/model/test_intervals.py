import numpy as np

from tasks.model.evaluate import interval_metrics
from tasks.model.intervals import conformal_halfwidths


def test_halfwidths_are_the_corrected_quantile_per_step():
    # 9 windows, errors 1..9 at step 0 and 10..90 at step 1: at 80% the corrected level is ceil(10*0.8)/9 = 8/9,
    # so the 8th smallest error.
    errors = np.stack([np.arange(1, 10), -10 * np.arange(1, 10)], axis=1).astype(float)
    np.testing.assert_array_equal(conformal_halfwidths(errors, 0.8), [8, 80])
    # Too few windows for the level: the largest error.
    np.testing.assert_array_equal(conformal_halfwidths(errors[:3], 0.9), [3, 30])


def test_calibrated_intervals_cover_about_the_level_on_fresh_errors():
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 2.0, 4.0])  # errors grow with the horizon step
    halfwidth = conformal_halfwidths(rng.standard_normal((500, 3)) * scale, 0.9)
    truth = rng.standard_normal((5000, 3)) * scale
    metrics = interval_metrics(truth, np.zeros_like(truth), halfwidth)
    assert 0.87 < metrics["test_interval_coverage"] < 0.93
    assert halfwidth[0] < halfwidth[1] < halfwidth[2]
    assert np.isclose(metrics["test_interval_width_units"], 2 * halfwidth.mean())
