import numpy as np
import pytest

from tasks.model.network import build_model, predict_horizon
from tasks.model.train import fit_model
from tasks.prepare.split import Bounds
from tasks.prepare.window import Stack, make_windows
from tasks.settings import parse_settings

pytestmark = pytest.mark.slow


def _series(n=400, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return (np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n)).astype(np.float32)[:, None]


@pytest.mark.parametrize("mode, extra", [("direct", {}), ("seq2seq", {"level": "none", "linear_skip": False})])
def test_model_shapes_and_horizon_forecast(mode, extra):
    s = parse_settings({"window": {"input_length": 16, "horizon": 5, "mode": mode},
                        "model": {"layers": 2, "units": 4, "bidirectional": True, **extra}})
    model = build_model(s, channels=1)
    x = np.zeros((3, 16, 1), np.float32)
    assert model(x).shape == ((3, 5) if mode == "direct" else (3, 16))
    assert predict_horizon(model, x, mode, 5).shape == (3, 5)


def test_level_shift_passes_through_the_window_level():
    # With zero weights the model predicts each window's last value: Repeat, shifted by the level.
    s = parse_settings({"window": {"input_length": 8, "horizon": 3}, "model": {"layers": 1, "units": 2}})
    model = build_model(s, channels=1)
    for w in model.trainable_weights:
        w.assign(np.zeros(w.shape))
    x = np.linspace(0, 7, 8, dtype=np.float32)[None, :, None] + 100
    np.testing.assert_allclose(model(x).numpy(), [[107, 107, 107]])


def test_training_lowers_the_loss_and_is_repeatable():
    s = parse_settings({"window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
                        "train": {"epochs": 4, "batch_size": 32, "patience": 0, "learning_rate": 0.01}})
    values, bounds = _series(), Bounds((0, 300), (300, 350), (350, 400))
    _, history = fit_model(Stack.of([values], [bounds]), s)
    assert len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]
    assert "val_loss" in history
    _, again = fit_model(Stack.of([values], [bounds]), s)
    np.testing.assert_allclose(again["loss"], history["loss"], rtol=1e-5)


def test_least_squares_start_is_kept_when_no_epoch_beats_it():
    # A sinusoid is a linear recurrence: the least-squares start forecasts it almost exactly, whatever its
    # level. Adam at lr 0.5 can only make it worse, so training ends with the starting weights.
    s = parse_settings({"window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 4},
                        "train": {"epochs": 2, "batch_size": 32, "patience": 1, "learning_rate": 0.5}})
    values = (np.sin(2 * np.pi * np.arange(400) / 24) + 5).astype(np.float32)[:, None]
    model, history = fit_model(Stack.of([values], [Bounds((0, 300), (300, 350), (350, 400))]), s)
    assert history["val_loss_start"][0] < 1e-3 < min(history["val_loss"])
    assert history["val_loss_kept"] == history["val_loss_start"]  # what the run reports as kept_val_loss
    x = np.stack([values[t - 24:t] for t in range(350, 395)])  # [45, 24, 1]
    y = np.stack([values[t:t + 6, 0] for t in range(350, 395)])
    assert np.mean((predict_horizon(model, x, "direct", 6) - y) ** 2) < 1e-3


def test_xla_training_is_repeatable():
    s = parse_settings({"window": {"input_length": 16, "horizon": 4}, "model": {"layers": 1, "units": 4},
                        "train": {"epochs": 2, "batch_size": 32, "patience": 0, "jit_compile": True}})
    values, bounds = _series(200), Bounds((0, 150), (150, 175), (175, 200))
    model, history = fit_model(Stack.of([values], [bounds]), s)
    _, again = fit_model(Stack.of([values], [bounds]), s)
    np.testing.assert_allclose(again["loss"], history["loss"], rtol=1e-6)
    assert not model.jit_compile  # the trained model forecasts without compiling each batch shape anew


def test_seq2seq_trains_through_fit_model_and_rolls_out_h_steps():
    """The seed preset's mode end to end through the product's fit: next-step targets at every input
    position while training, then H steps rolled forward."""
    from tasks.prepare.split import split_bounds

    s = parse_settings({"window": {"input_length": 16, "horizon": 5, "mode": "seq2seq"},
                        "model": {"layers": 2, "units": 4, "level": "none", "linear_skip": False},
                        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
                        "train": {"epochs": 3, "batch_size": 16, "patience": 0, "learning_rate": 0.01}})
    values = _series()
    model, history = fit_model(Stack.of([values], [split_bounds(len(values), s.split)]), s)
    assert model.output_shape == (None, 16)
    assert len(history["loss"]) == len(history["val_loss"]) == 3 and np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0]  # it learns: the sine is easy to predict a step ahead
    forecast = predict_horizon(model, values[None, -16:], "seq2seq", 5)
    assert forecast.shape == (1, 5) and np.isfinite(forecast).all()


def test_every_pipeline_of_a_fit_gathers_on_train_threads(monkeypatch):
    """tf.data's default pool beside another fit slowed both down (a sweep's 2 workers): the train, val
    and least-squares-start pipelines all take train.threads."""
    import tasks.model.train

    asked = []

    def recording(*args, **kwargs):
        asked.append(kwargs.get("threads", 0))
        return make_windows(*args, **kwargs)

    monkeypatch.setattr(tasks.model.train, "make_windows", recording)
    s = parse_settings({"window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 4},
                        "train": {"epochs": 1, "batch_size": 32, "threads": 1}})
    fit_model(Stack.of([_series()], [Bounds((0, 300), (300, 350), (350, 400))]), s)
    assert asked == [1, 1, 1]


def test_limit_threads_sets_both_of_tfs_thread_pools():
    # In a process of its own: TF fixes its pools at its first op, which this session has already run.
    # Inter-op matters as much as intra-op: a pool of one thread per core running an LSTM's small ops
    # side by side slowed two fits on two cores 2x (BENCHMARKS.md).
    import subprocess
    import sys

    code = ("import tensorflow as tf; from tasks.model.train import limit_threads; limit_threads(1); "
            "tf.constant(1.0) + 1; t = tf.config.threading; "
            "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "1"]
