"""Stage 6a, model: the stacked-LSTM builder and the forecast it makes from a batch of windows."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from tasks.settings import Settings


@keras.saving.register_keras_serializable(package="lstm_pipeline")
class WindowLevel(layers.Layer):
    """Shift each window by its own level (last value or mean of the target channel).

    Returns the shifted window [batch, L, channels], its target channel [batch, L] and the level
    [batch, 1], which `AddLevel` puts back on the output.
    """

    def __init__(self, how: str = "last", **kwargs):
        super().__init__(**kwargs)
        self.how = how

    def call(self, x):
        target = x[:, :, 0]  # [batch, L]
        if self.how == "last":
            level = target[:, -1:]
        elif self.how == "mean":
            level = ops.mean(target, axis=1, keepdims=True)
        else:
            level = ops.zeros_like(target[:, -1:])
        shifted = ops.concatenate([(target - level)[:, :, None], x[:, :, 1:]], axis=-1)
        return shifted, target - level, level

    def get_config(self):
        return super().get_config() | {"how": self.how}


@keras.saving.register_keras_serializable(package="lstm_pipeline")
class AddLevel(layers.Layer):
    def call(self, inputs):
        y, level = inputs  # [batch, H], [batch, 1]
        return y + level


def build_model(settings: Settings, channels: int) -> keras.Model:
    """Stacked (optionally bidirectional) LSTM; `direct` maps a window to H outputs, `seq2seq` to a
    next-step prediction at every position."""
    L, H = settings.window.input_length, settings.window.horizon
    m = settings.model
    seq2seq = settings.window.mode == "seq2seq"
    inputs = keras.Input((L, channels), name="window")  # [batch, L, channels]
    x, target, level = WindowLevel(m.level, name="level")(inputs)
    h = x
    for i in range(m.layers):
        rnn = layers.LSTM(m.units, return_sequences=seq2seq or i < m.layers - 1, dropout=m.dropout, name=f"lstm_{i}")
        h = layers.Bidirectional(rnn, name=f"bi_lstm_{i}")(h) if m.bidirectional else rnn(h)
    if seq2seq:
        # Named: an unnamed layer's name counts the models built, and the pool (tasks/model/pool.py) keys on the config.
        out = layers.Reshape((L,), name="steps")(layers.Dense(1, name="head")(h))  # [batch, L]
    elif m.linear_skip:
        # A linear path from the (level-shifted) window to the horizon, which training starts at the
        # least-squares map (`tasks.model.train.solve_linear_skip`); the LSTM's head starts at zero, so the
        # LSTM learns only what the linear map misses, and the untrained model is that map.
        head = layers.Dense(H, kernel_initializer="zeros", name="head")(h)  # [batch, H]
        out = layers.Add(name="skip")([head, layers.Dense(H, name="linear")(target)])
    else:
        out = layers.Dense(H, name="head")(h)  # [batch, H]
    out = AddLevel(name="add_level")([out, level])
    return keras.Model(inputs, out, name=f"lstm_{m.layers}x{m.units}_{settings.window.mode}")


def predict_horizon(model: keras.Model, x: np.ndarray, mode: str, horizon: int) -> np.ndarray:
    """Normalized forecasts [batch, H] for windows x [batch, L, channels].

    `seq2seq` rolls forward: each next-step prediction is appended to the window and fed back.
    """
    # predict_on_batch runs Keras' compiled predict function: called eagerly, an LSTM steps through
    # its time loop op by op, several times slower.
    if mode == "direct":
        return np.asarray(model.predict_on_batch(x))
    window = np.array(x, dtype=np.float32)  # [batch, L, 1]
    steps = []
    for _ in range(horizon):
        nxt = np.asarray(model.predict_on_batch(window))[:, -1]  # [batch]
        steps.append(nxt)
        window = np.concatenate([window[:, 1:], nxt[:, None, None]], axis=1)
    return np.stack(steps, axis=1)
