"""Compiled models kept for the next fit of the same shape in this process (a worker's next trial or fold).

TensorFlow traces a new model's training, evaluation and prediction steps on their first call: about 2 s
for the default LSTM, paid again by every fit, for graphs that differ only in the variables they read.
A model taken from here keeps its traced steps; the fit gives it a fresh model's starting values and a
new optimizer state, so it trains exactly as the fresh model would (same seed, same numbers).
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict

import keras

KEPT = 4  # shapes kept per process; a sweep's space rarely has more, and a small LSTM is ~1 MB with its steps

_kept: OrderedDict[str, list[keras.Model]] = OrderedDict()
_lock = threading.Lock()  # a Dask worker of several threads fits several trials at once
_keys: weakref.WeakKeyDictionary[keras.Model, str] = weakref.WeakKeyDictionary()  # a model in use -> its shape


def shape_key(model: keras.Model, loss: str, jit_compile: bool, steps: int, *specs) -> str:
    """What a traced step depends on: the architecture, the loss, XLA, steps per call and the batches' specs
    (a new static batch size would make TF trace a second, shape-relaxed step)."""
    return json.dumps([model.get_config(), loss, jit_compile, steps, [str(s) for s in specs]], default=str)


def reuse(fresh: keras.Model, key: str, learning_rate: float) -> keras.Model:
    """A compiled model of shape `key` that no fit is using, restarted from `fresh`; else `fresh` itself.
    Either is this fit's until `give_back`."""
    with _lock:
        kept = _kept.get(key, [])
        model = kept.pop() if kept else fresh
        if not kept:
            _kept.pop(key, None)  # a shape none is kept of counts no more towards KEPT
        _keys[model] = key
    if model is not fresh:
        restart(model, fresh, learning_rate)
    return model


def give_back(model: keras.Model) -> None:
    """Keep a model `reuse` handed out for the next fit of its shape; the least recently used shape goes
    when KEPT are kept."""
    with _lock:
        key = _keys.pop(model, None)
        if key is None:
            return
        _kept.setdefault(key, []).append(model)
        _kept.move_to_end(key)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)


def restart(model: keras.Model, fresh: keras.Model, learning_rate: float) -> None:
    """Give `model` the starting values of `fresh` (a model of the same shape just built with the fit's seed:
    weights and random-seed states) and the optimizer state of a new Adam at `learning_rate`."""
    targets, sources = model.variables, fresh.variables
    if [_shape(v) for v in targets] != [_shape(v) for v in sources]:
        raise ValueError("a kept model and the fresh one differ in their variables")  # a key that missed a setting
    for target, source in zip(targets, sources):
        target.assign(source)
    # A fit resumed by BackupAndRestore (a retried task) leaves the epoch it resumed at on the model, and Keras
    # starts every later fit there; a fresh model has none. (A private attribute: tests/tasks/model/test_pool.py
    # fails if Keras renames it.)
    model._initial_epoch = None
    optimizer = model.optimizer
    rate = optimizer.learning_rate  # a float rate is held in a variable: a trial at another rate reuses the step
    for variable in optimizer.variables:
        # Adam's state: the step count and both moments start at zero.
        variable.assign(learning_rate if variable is rate else keras.ops.zeros_like(variable))


def _shape(variable) -> tuple:
    # Without the numbers Keras appends to repeated names (seed_generator_3/...): they count models built.
    return re.sub(r"_\d+", "", variable.path), tuple(variable.shape), variable.dtype
