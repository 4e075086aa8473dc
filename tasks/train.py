"""Stage 6b, train: fit the model with Adam and early stopping, deterministically."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.model import build_model
from tasks.settings import Settings
from tasks.split import Bounds
from tasks.window import make_windows, origins

LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


def seed_everything(seed: int) -> None:
    """Repeatable CPU runs: one seed for Python, NumPy and TF, and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class ProgressLog(keras.callbacks.Callback):
    """One console line per epoch."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, epochs: int):
        super().__init__()
        self.logger, self.epochs = logger, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        scores = "  ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if k in ("loss", "val_loss"))
        self.logger.info("epoch %d/%d  %s  (%.1fs)", epoch + 1, self.epochs, scores, time.perf_counter() - self.started)


def fit_model(values: np.ndarray, bounds: Bounds, settings: Settings, callbacks: list = (),
              backup_dir: Path | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train on the train split, early-stop on the val split; returns the best model and its history."""
    seed_everything(settings.train.seed)
    w, t = settings.window, settings.train
    train = make_windows(values, origins(bounds.train, w), w, t.batch_size, shuffle_seed=t.seed)
    val = make_windows(values, origins(bounds.val, w), w, max(t.batch_size, 256))
    model = build_model(settings, channels=values.shape[1])
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), loss=LOSSES[t.loss])
    cbs = list(callbacks)
    if t.patience:
        cbs.append(keras.callbacks.EarlyStopping(patience=t.patience, restore_best_weights=True))
    if backup_dir is not None:
        # A retried task resumes from its last finished epoch instead of starting over.
        cbs.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    history = model.fit(train, validation_data=val, epochs=t.epochs, callbacks=cbs, verbose=0, shuffle=False)
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def train_model(values: np.ndarray, bounds: Bounds, settings: Settings, callbacks: list = (),
                backup_dir: Path | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    progress = ProgressLog(get_run_logger(), settings.train.epochs)
    return fit_model(values, bounds, settings, [progress, *callbacks], backup_dir)
