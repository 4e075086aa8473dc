"""A kept model trains as a fresh one would: same seed, same numbers, bit for bit."""

import keras
import numpy as np
import pytest

from tasks.model import pool
from tasks.model.train import fit_model
from tasks.prepare.split import Bounds
from tasks.prepare.window import Stack
from tasks.settings import parse_settings

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def empty_pool():
    pool._kept.clear()  # each test starts with none kept, whatever ran before it in this process
    yield
    pool._kept.clear()


def _stack():
    t = np.arange(400)
    values = (np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(0).standard_normal(400)).astype(np.float32)
    return Stack.of([values[:, None]], [Bounds((0, 300), (300, 350), (350, 400))])


def _settings(units=4, learning_rate=0.01, dropout=0.0):
    return parse_settings({"window": {"input_length": 24, "horizon": 6},
                           "model": {"layers": 2, "units": units, "dropout": dropout},
                           "train": {"epochs": 3, "batch_size": 32, "patience": 1, "learning_rate": learning_rate}})


@pytest.mark.parametrize("dropout", [0.0, 0.2])  # with dropout, the seed generators' state is restarted too
def test_a_kept_model_trains_bit_identically_to_a_fresh_one(dropout):
    stack, settings = _stack(), _settings(dropout=dropout)
    fresh, history = fit_model(stack, settings)
    weights = [w.copy() for w in fresh.get_weights()]
    pool.give_back(fresh)
    # Another shape, and the same shape at another rate (which moves the kept model's weights and Adam's state).
    pool.give_back(fit_model(stack, _settings(units=8, dropout=dropout))[0])
    other, _ = fit_model(stack, _settings(learning_rate=0.05, dropout=dropout))
    assert other is fresh  # reused, not rebuilt
    pool.give_back(other)

    again, repeated = fit_model(stack, settings)
    assert again is fresh
    assert repeated == history  # every epoch's loss and val_loss, exactly
    for kept, first in zip(again.get_weights(), weights):
        np.testing.assert_array_equal(kept, first)
    pool.give_back(again)


def test_a_model_in_use_is_not_handed_out_twice():
    stack, settings = _stack(), _settings()
    kept, _ = fit_model(stack, settings)
    pool.give_back(kept)
    first, _ = fit_model(stack, settings)
    second, _ = fit_model(stack, settings)  # `first` was not given back: a model of its own
    assert first is kept and second is not first


class CrashInEpoch2(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("crash")


def test_a_model_that_resumed_a_fit_starts_the_next_fit_at_its_first_epoch(tmp_path):
    """A retried training task resumes from its last saved epoch (Keras' BackupAndRestore), which Keras keeps
    on the model as where every later fit starts."""
    stack, settings = _stack(), _settings()
    fresh, history = fit_model(stack, settings)
    with pytest.raises(RuntimeError):
        fit_model(stack, settings, [CrashInEpoch2()], backup_dir=tmp_path)
    resumed, partial = fit_model(stack, settings, backup_dir=tmp_path)
    assert len(partial["loss"]) < 3  # it resumed after the last epoch saved
    pool.give_back(resumed)
    again, repeated = fit_model(stack, settings)
    assert again is resumed and repeated == history
