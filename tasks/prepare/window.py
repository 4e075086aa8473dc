"""Stage 5, window: tf.data pipelines of (input window, target) pairs, built lazily from the series.

Only the series and a range of window origins are held; each batch gathers its windows on the fly, so
memory grows with the series, not with series x window length. Origin t means: inputs are rows
[t-L, t); `direct` targets are rows [t, t+H) of the target; `seq2seq` targets are the inputs shifted one
step ahead (rows [t-L+1, t+1)), next-step targets at every position as in the original script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tasks.prepare.split import Bounds
from tasks.settings import WindowSettings

if TYPE_CHECKING:
    import tensorflow as tf


def origins(segment: tuple[int, int], cfg: WindowSettings, training: bool = True) -> range:
    """Origins whose targets lie inside `segment`; lookback may reach into earlier rows, never before 0.

    Evaluation always scores H-step forecasts, whatever the training mode.
    """
    start, stop = segment
    last_target = cfg.horizon if (cfg.mode == "direct" or not training) else 1
    return range(max(start, cfg.input_length), stop - last_target + 1)


@dataclass(frozen=True)
class Stack:
    """Series laid end to end in one array, so that one model trains on the windows of all of them (shuffled
    across series); no window reaches from one series into the next. One series is a stack of one."""

    values: np.ndarray  # [rows of every series, channels]; each series normalized on its own, column 0 its target
    starts: tuple[int, ...]  # the first row of each series in `values`
    bounds: tuple[Bounds, ...]  # each series' splits, in its own rows

    @classmethod
    def of(cls, arrays: list[np.ndarray], bounds: list[Bounds]) -> Stack:
        starts = np.cumsum([0, *map(len, arrays[:-1])])
        return cls(arrays[0] if len(arrays) == 1 else np.concatenate(arrays), tuple(map(int, starts)), tuple(bounds))

    def origins(self, split: str, cfg: WindowSettings, training: bool = True) -> range | np.ndarray:
        """The origins of `split` in every series, as rows of `values` (one series: its range, as `origins`)."""
        parts = [origins(getattr(b, split), cfg, training) for b in self.bounds]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([np.arange(r.start, r.stop) + start for r, start in zip(parts, self.starts)])

    def member(self, i: int) -> np.ndarray:
        """The rows of series `i`."""
        stop = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.values)
        return self.values[self.starts[i]:stop]


def make_windows(values: np.ndarray, starts: range | np.ndarray, cfg: WindowSettings, batch_size: int,
                 training: bool = True, shuffle_seed: int | None = None,
                 drop_remainder: bool = False, threads: int = 0) -> tf.data.Dataset:
    """Batches of (x [batch, L, channels], y [batch, H] or [batch, L]) from `values` [rows, channels] at the
    origins `starts` (a range, or any origins of a stack);
    `drop_remainder` leaves out a last, smaller batch (reshuffled, its windows come back next epoch);
    `threads` > 0 gathers them on that many threads of the pipeline's own (0: tf.data's autotuned pool)."""
    import tensorflow as tf  # here: a sweep's command windows nothing, and starts without TensorFlow

    series = tf.constant(values, dtype=tf.float32)  # [rows, channels]; column 0 is the target
    target = series[:, 0]
    lookback = tf.range(-cfg.input_length, 0, dtype=tf.int64)
    ahead = tf.range(cfg.horizon, dtype=tf.int64) if (cfg.mode == "direct" or not training) \
        else tf.range(-cfg.input_length + 1, 1, dtype=tf.int64)

    def gather(t):  # t: [batch] origins
        x = tf.gather(series, t[:, None] + lookback)  # [batch, L, channels]
        y = tf.gather(target, t[:, None] + ahead)  # [batch, H] (direct) or [batch, L] (seq2seq)
        return x, y

    every = (tf.range(starts.start, starts.stop, dtype=tf.int64) if isinstance(starts, range)
             else tf.constant(starts, dtype=tf.int64))  # a stack's origins (Stack.origins)
    if shuffle_seed is None:
        ds = tf.data.Dataset.from_tensor_slices(every).batch(batch_size, drop_remainder)
    else:
        # A fresh permutation of the origins every epoch, as one int64 tensor: Dataset.shuffle would
        # hold every origin as a tensor of its own in its buffer (~370 bytes a row of the series).
        ds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1).flat_map(
            lambda s: tf.data.Dataset.from_tensor_slices(
                tf.random.experimental.stateless_shuffle(every, seed=tf.stack([s, 0]))).batch(batch_size, drop_remainder))
        # flat_map hides the batch count; Keras, not knowing it, runs into the end of the data (and warns
        # "Your input ran out of data") in every epoch that is not a whole number of steps_per_execution.
        batches = len(starts) // batch_size if drop_remainder else -(-len(starts) // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if threads:
        # tf.data's default: a pool of a thread per core, which its autotuner keeps busy; beside another
        # fit on the other core, both fits slowed down (train.threads in tasks/settings.py).
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds


def target_windows(values: np.ndarray, starts: range, horizon: int) -> np.ndarray:
    """The true next H target values for each origin: [windows, H]."""
    idx = np.arange(starts.start, starts.stop)[:, None] + np.arange(horizon)[None, :]
    return values[idx, 0]
