import numpy as np
import pytest

from tasks.model import build_model, predict_horizon
from tasks.settings import parse_settings
from tasks.split import Bounds
from tasks.train import fit_model

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
    _, history = fit_model(values, bounds, s)
    assert len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]
    assert "val_loss" in history
    _, again = fit_model(values, bounds, s)
    np.testing.assert_allclose(again["loss"], history["loss"], rtol=1e-5)
