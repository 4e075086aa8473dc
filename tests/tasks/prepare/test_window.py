import numpy as np

from tasks.prepare.window import make_windows, origins, target_windows
from tasks.settings import WindowSettings

VALUES = np.arange(100, dtype=np.float32)[:, None] * np.array([[1.0, -1.0]], dtype=np.float32)  # [100, 2]


def _first_batch(cfg, starts, training=True):
    x, y = next(iter(make_windows(VALUES, starts, cfg, batch_size=4, training=training)))
    return x.numpy(), y.numpy()


def test_direct_windows_are_aligned_and_lookback_reaches_into_earlier_rows():
    cfg = WindowSettings(input_length=10, horizon=3, mode="direct")
    starts = origins((60, 80), cfg)  # a val split: targets in [60, 80), lookback from rows before 60
    assert (starts.start, starts.stop) == (60, 78)
    x, y = _first_batch(cfg, starts)
    assert x.shape == (4, 10, 2) and y.shape == (4, 3)
    np.testing.assert_array_equal(x[0, :, 0], np.arange(50, 60))
    np.testing.assert_array_equal(x[0, :, 1], -np.arange(50, 60))
    np.testing.assert_array_equal(y[0], [60, 61, 62])
    np.testing.assert_array_equal(target_windows(VALUES, starts, 3)[1], [61, 62, 63])


def test_train_windows_never_start_before_row_zero():
    cfg = WindowSettings(input_length=10, horizon=3)
    starts = origins((0, 50), cfg)
    assert starts.start == 10 and starts.stop - 1 + 3 == 50


def test_seq2seq_targets_are_next_steps_at_every_position():
    cfg = WindowSettings(input_length=8, horizon=4, mode="seq2seq")
    starts = origins((0, 50), cfg)
    assert (starts.start, starts.stop) == (8, 50)  # the last target is row 49
    x, y = _first_batch(cfg, starts)
    assert x.shape == (4, 8, 2) and y.shape == (4, 8)
    np.testing.assert_array_equal(y[0], x[0, :, 0] + 1)
    # Evaluation scores H-step forecasts whatever the training mode.
    assert origins((0, 50), cfg, training=False).stop == 47
    _, y_eval = _first_batch(cfg, origins((0, 50), cfg, training=False), training=False)
    assert y_eval.shape == (4, 4)


def test_shuffled_windows_cover_every_origin_once():
    cfg = WindowSettings(input_length=5, horizon=2)
    starts = origins((0, 40), cfg)
    ds = make_windows(VALUES, starts, cfg, batch_size=7, shuffle_seed=1)
    firsts = sorted(int(x[0, -1, 0]) + 1 for xb, _ in ds for x in xb.numpy()[:, None])
    assert firsts == list(starts)


def test_shuffle_order_changes_every_epoch_and_repeats_with_the_seed():
    cfg = WindowSettings(input_length=5, horizon=2)
    starts = origins((0, 40), cfg)

    def epochs(seed):
        ds = make_windows(VALUES, starts, cfg, batch_size=7, shuffle_seed=seed)
        return [[int(v) for xb, _ in ds for v in xb.numpy()[:, -1, 0]] for _ in range(2)]

    first, second = epochs(1)
    assert first != second and sorted(first) == sorted(second)
    assert epochs(1) == [first, second]
    assert epochs(2)[0] != first


def test_drop_remainder_keeps_only_full_batches():
    cfg = WindowSettings(input_length=5, horizon=2)
    starts = origins((0, 40), cfg)  # 34 windows: 4 full batches of 7, 6 left out
    ds = make_windows(VALUES, starts, cfg, batch_size=7, shuffle_seed=1, drop_remainder=True)
    assert [len(x) for x, _ in ds] == [7, 7, 7, 7]


def test_keras_knows_the_shuffled_batch_count_and_never_runs_out_of_data():
    """flat_map hid the count: Keras warned "Your input ran out of data" in every run (issue 14)."""
    import warnings

    import keras

    cfg = WindowSettings(input_length=5, horizon=2)
    starts = origins((0, 40), cfg)  # 34 windows
    for drop, batches in ((False, 5), (True, 4)):
        assert int(make_windows(VALUES, starts, cfg, 7, shuffle_seed=1, drop_remainder=drop).cardinality()) == batches
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    model.steps_per_execution = 4  # as fit_model runs: 5 batches are not a whole number of calls
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(make_windows(VALUES, starts, cfg, 7, shuffle_seed=1), epochs=2, verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]


def test_windows_gathered_on_the_threads_asked_for():
    """A fit's pipeline keeps to train.threads; tf.data's default pool (a thread per core, autotuned)
    slowed a second fit on the other core down."""
    cfg = WindowSettings(input_length=5, horizon=2)
    starts = origins((0, 40), cfg)
    options = make_windows(VALUES, starts, cfg, 7, shuffle_seed=1, threads=1).options()
    assert options.threading.private_threadpool_size == 1 and options.autotune.enabled is False
    assert make_windows(VALUES, starts, cfg, 7, shuffle_seed=1).options().threading.private_threadpool_size is None


def test_a_stack_trains_on_every_series_and_no_window_crosses_into_the_next():
    from tasks.prepare.split import Bounds
    from tasks.prepare.window import Stack

    cfg = WindowSettings(input_length=10, horizon=3, mode="direct")
    a, b = np.zeros((50, 1), np.float32), np.ones((40, 1), np.float32)  # series 0s, then 1s
    stack = Stack.of([a, b], [Bounds((0, 30), (30, 40), (40, 50)), Bounds((0, 20), (20, 30), (30, 40))])
    train = stack.origins("train", cfg)
    # Series a: origins 10..27 (lookback from row 0 on); series b: 10..17 of its own rows, 60..67 of the stack.
    np.testing.assert_array_equal(train, np.r_[np.arange(10, 28), np.arange(60, 68)])
    seen = [x.numpy() for x, _ in make_windows(stack.values, train, cfg, batch_size=64)][0]
    assert all(len(np.unique(window)) == 1 for window in seen[:, :, 0])  # each window is of one series
    np.testing.assert_array_equal(stack.member(1), b)
    one = Stack.of([a], [Bounds((0, 30), (30, 40), (40, 50))])
    assert one.origins("val", cfg, training=False) == origins((30, 40), cfg, training=False)  # a range, as before


def test_series_ids_that_come_out_alike_as_metric_names_stay_apart():
    from tasks.runs.fit import metric_ids

    assert metric_ids(["a:b", "a_b", "OT"]) == ["a_b_1", "a_b_2", "OT"]
