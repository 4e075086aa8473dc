"""Per-epoch training time on the ETTh1 protocol's train windows, in a process of its own (TF fixes its
thread settings per process), printed as JSON.

    python -m bench.timing plain|product DATA [--epochs N] [--horizon H] [--batch B] [--jit]

`plain`: the product's network (default settings) fit the way a Keras script would: every window
materialized as NumPy arrays, `compile(optimizer="adam", loss="mse")` and `fit(x, y)` with Keras'
defaults (batch 32, TF's threads). `product`: `tasks.model.train.fit_model`, as `lstm-pipeline train` runs it
(its batch size, tf.data windows, threads and a validation pass every epoch). `train` in the output: each
epoch's training steps alone (up to its validation pass), and `steps`, how many an epoch takes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.protocol import SPLIT, L  # noqa: E402
from tasks.data.ingest import read_table  # noqa: E402
from tasks.data.validate import validate_table  # noqa: E402
from tasks.model.network import build_model  # noqa: E402
from tasks.model.train import fit_model  # noqa: E402
from tasks.prepare.window import Stack  # noqa: E402
from tasks.prepare.normalize import fit_scaler  # noqa: E402
from tasks.prepare.split import split_bounds  # noqa: E402
from tasks.prepare.window import origins  # noqa: E402
from tasks.settings import load_settings  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    """Wall and CPU seconds of every epoch."""

    def __init__(self):
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

        self.train: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter(), time.process_time()

    def on_test_begin(self, logs=None):
        if len(self.train) < len(self.wall) + 1 and hasattr(self, "started"):  # the epoch's validation pass
            self.train.append(time.perf_counter() - self.started[0])

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self.started[0])
        self.cpu.append(time.process_time() - self.started[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("how", choices=("plain", "product"))
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--batch", type=int, help="train.batch_size (default: the product's)")
    parser.add_argument("--jit", action="store_true", help="train.jit_compile=true (XLA)")
    args = parser.parse_args()

    settings = load_settings(overrides=[
        "data.target=OT", f"window.input_length={L}", f"window.horizon={args.horizon}",
        *(f"split.{k}={v}" for k, v in SPLIT.items()), f"train.epochs={args.epochs}", "train.patience=0",
        *([f"train.batch_size={args.batch}"] if args.batch else []), *(["train.jit_compile=true"] if args.jit else []),
    ])
    series, _ = validate_table(read_table(args.data, settings.data), settings, str(args.data))
    bounds = split_bounds(len(series), settings.split)
    values = fit_scaler(series, bounds).transform(series)
    starts = origins(bounds.train, settings.window)
    clock = EpochClock()
    if args.how == "plain":
        t = np.arange(starts.start, starts.stop)[:, None]
        x, y = values[t + np.arange(-L, 0)], values[t + np.arange(args.horizon), 0]  # [n, L, 1], [n, H]
        model = build_model(settings, channels=values.shape[1])
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=args.epochs, verbose=0, callbacks=[clock])
    else:
        fit_model(Stack.of([values], [bounds]), settings, [clock])
    batch = settings.train.batch_size if args.how == "product" else 32
    steps = len(starts) // batch if args.jit else -(-len(starts) // batch)  # XLA drops the last, smaller batch
    print(json.dumps({"how": args.how, "windows": len(starts), "wall": clock.wall, "cpu": clock.cpu,
                      "train": clock.train, "steps": steps}))


if __name__ == "__main__":
    main()
