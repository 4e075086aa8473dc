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
from tensorflow.python.framework import config as tf_config

from tasks.model import pool
from tasks.model.network import build_model
from tasks.prepare.window import Stack, make_windows
from tasks.settings import Settings

LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


def seed_everything(seed: int, xla: bool = False) -> None:
    """Repeatable CPU runs: one seed for Python, NumPy and TF, and deterministic TF kernels; or, when XLA
    compiles the training step, XLA's CPU kernels (Keras refuses XLA while op determinism is on)."""
    keras.utils.set_random_seed(seed)
    if xla:
        tf_config.disable_op_determinism()  # not exported by TF; one process may train both ways
    else:
        tf.config.experimental.enable_op_determinism()


def limit_threads(threads: int) -> None:
    """Threads per TF op, and threads running ops side by side (0: TF's defaults, one per core). TF fixes
    both at its first op, so a process that has already run TF keeps what it had."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # One: an LSTM's time loop is a chain of small ops, and handing each to the next free thread of a
        # pool of one per core moves it between cores (a step took 12-26 ms, 11.5-11.9 with one), and two
        # fits side by side, each with such a pool, slowed each other down 2x (BENCHMARKS.md).
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


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


STEPS_PER_CALL = 32  # training steps per call into TF: fewer Python round trips, Ctrl-C still heard

# The least-squares start's ridge penalty, relative to the inputs' mean square: just enough to keep the
# solve well posed (with level=last the window's last value is always 0).
RIDGE = 1e-3


def solve_linear_skip(model: keras.Model, windows: tf.data.Dataset) -> None:
    """Set the skip path to the least-squares map from level-shifted windows to level-shifted targets.

    Gradient descent gets there only slowly, and on ETTh1 that map is as good as the ridge baseline;
    starting from it (with the LSTM's head at zero) leaves the LSTM only what a linear map misses. The
    sums are accumulated batch by batch: memory is [L+1, L+1], whatever the length of the series.
    """
    gram, cross = 0.0, 0.0
    for x, y in windows:
        _, target, level = model.get_layer("level")(x)  # [batch, L], [batch, 1]
        a = np.hstack([np.asarray(target, np.float64), np.ones((len(level), 1))])  # [batch, L+1]: bias column
        gram = gram + a.T @ a  # [L+1, L+1]
        cross = cross + a.T @ (np.asarray(y, np.float64) - np.asarray(level, np.float64))  # [L+1, H]
    L = gram.shape[0] - 1
    penalty = RIDGE * np.trace(gram[:L, :L]) / L * np.eye(L + 1)
    penalty[L, L] = 0.0  # the bias is not shrunk
    w = np.linalg.lstsq(gram + penalty, cross, rcond=None)[0]
    model.get_layer("linear").set_weights([w[:L].astype(np.float32), w[L].astype(np.float32)])


class StopOnNaN(keras.callbacks.Callback):
    """Ends a fit whose loss is no longer finite (tasks.runs.fit reports it); Keras' TerminateOnNaN does the
    same but prints to stdout, where the command's results go."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True


class EarlyStoppingFromStart(keras.callbacks.EarlyStopping):
    """Early stopping on val_loss that counts the starting weights as a candidate: when no epoch beats
    their val_loss, training ends with them (a least-squares start is often hard to beat)."""

    def __init__(self, start_loss: float, patience: int):
        super().__init__(patience=patience, restore_best_weights=True)
        self.start_loss = start_loss

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.best, self.best_weights = self.start_loss, self.model.get_weights()


def fit_model(stack: Stack, settings: Settings, callbacks: list = (),
              backup_dir: Path | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train on the train split of every series of the stack, early-stop on their val split; returns the
    best model and its history (per epoch `loss`, `val_loss`; `val_loss_start`, before the first epoch;
    `val_loss_kept`, of the weights returned). The model may be a kept one of the same shape
    (tasks/model/pool.py): `pool.give_back` it when done with it."""
    w, t = settings.window, settings.train
    values = stack.values
    limit_threads(t.threads)
    seed_everything(t.seed, xla=t.jit_compile)
    train_origins = stack.origins("train", w)
    # XLA compiles once per batch shape: a last, smaller batch would cost a second compile (seconds).
    train = make_windows(values, train_origins, w, t.batch_size, shuffle_seed=t.seed,
                         drop_remainder=t.jit_compile and len(train_origins) > t.batch_size, threads=t.threads)
    val = make_windows(values, stack.origins("val", w), w, max(t.batch_size, 256), threads=t.threads)
    # Built fresh even when a kept model is reused: its starting values are this seed's, drawn as before.
    fresh = build_model(settings, channels=values.shape[1])
    model = pool.reuse(fresh, pool.shape_key(fresh, t.loss, t.jit_compile, STEPS_PER_CALL, train.element_spec,
                                             val.element_spec), t.learning_rate)
    if settings.model.linear_skip and w.mode == "direct":
        solve_linear_skip(model, make_windows(values, train_origins, w, 1024, threads=t.threads))
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), loss=LOSSES[t.loss])
    # Set on the model rather than passed to compile(), whose arguments are saved with the model: a loaded
    # model should not XLA-compile again for every new batch shape it forecasts. Several steps per call
    # spare Keras' per-step Python work (~1 ms), a quarter of a small LSTM's step (the seed preset).
    model.jit_compile, model.steps_per_execution = t.jit_compile, STEPS_PER_CALL
    start_loss = float(model.evaluate(val, verbose=0))
    cbs = [*callbacks, StopOnNaN()]
    if t.patience:
        cbs.append(EarlyStoppingFromStart(start_loss, t.patience))
    if backup_dir is not None:
        # A retried task resumes from its last finished epoch instead of starting over.
        cbs.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    history = model.fit(train, validation_data=val, epochs=t.epochs, callbacks=cbs, verbose=0, shuffle=False)
    model.jit_compile, model.steps_per_execution = False, 1
    losses = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    val_loss = losses.get("val_loss", [])
    # The val loss of the weights returned: with early stopping the best of the start and the epochs (restored
    # as training ends), without it the last epoch's.
    kept = min([start_loss, *val_loss]) if t.patience else (val_loss or [start_loss])[-1]
    return model, losses | {"val_loss_start": [start_loss], "val_loss_kept": [kept]}


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def train_model(stack: Stack, settings: Settings, callbacks: list = (),
                backup_dir: Path | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    logger = get_run_logger()
    model, history = fit_model(stack, settings, [ProgressLog(logger, settings.train.epochs), *callbacks], backup_dir)
    if settings.train.patience and history["val_loss_kept"][0] >= history["val_loss_start"][0]:
        logger.info("kept the starting weights: no epoch beat their val_loss %.4f", history["val_loss_start"][0])
    return model, history
