"""The peer a user would pick for a sweep: NeuralForecast's AutoLSTM with its Optuna backend, on the space
and step budget of the bench's sweep, over ETTh1's train and val rows. Run in its own environment
(`make bench` builds .venv-peer from bench/peer-requirements.txt), printed as JSON.

    .venv-peer/bin/python bench/peer.py DATA --trials 8 --steps 267
    .venv-peer/bin/python bench/peer.py DATA --per-step --input-size 96 --hidden 32

Its time includes what AutoLSTM does after the search: refitting the best configuration. `--per-step`: one
`LSTM` (NeuralForecast's defaults but the window, hidden size, batch of 32 windows and scaler) fitted for
267 and for 801 steps after a short warm-up fit; the difference over the 534 extra steps is its time per
step, the rest of the shorter fit its fixed cost.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("PL_DISABLE_FORK", "1")

import optuna  # noqa: E402
import pandas as pd  # noqa: E402

TRAIN_VAL_ROWS, VAL_ROWS, HORIZON = 11520, 2880, 24  # the ETTh1 protocol's train and val rows


def config(steps: int):
    def space(trial: optuna.Trial) -> dict:
        return {"input_size": trial.suggest_categorical("input_size", [48, 96]),
                "encoder_hidden_size": trial.suggest_categorical("encoder_hidden_size", [16, 32]),
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
                "max_steps": steps, "val_check_steps": steps, "windows_batch_size": 32, "batch_size": 1,
                "scaler_type": "standard", "random_seed": 42,
                "enable_progress_bar": False, "enable_model_summary": False, "logger": False, "accelerator": "cpu"}
    return space


def per_step(df: pd.DataFrame, input_size: int, hidden: int) -> dict:
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    def fit(steps: int) -> float:
        model = LSTM(h=HORIZON, input_size=input_size, encoder_hidden_size=hidden, max_steps=steps,
                     val_check_steps=steps, windows_batch_size=32, batch_size=1, scaler_type="standard",
                     random_seed=42, enable_progress_bar=False, enable_model_summary=False, logger=False,
                     accelerator="cpu")
        clock = time.perf_counter()
        NeuralForecast(models=[model], freq="h").fit(df, val_size=VAL_ROWS)
        return time.perf_counter() - clock

    fit(20)  # imports and first calls
    short, long = fit(267), fit(801)
    step = (long - short) / 534
    return {"ms_per_step": step * 1000, "fixed_s": short - 267 * step, "input_size": input_size, "hidden": hidden}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=267)
    parser.add_argument("--per-step", action="store_true")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from neuralforecast import NeuralForecast, __version__
    from neuralforecast.auto import AutoLSTM

    frame = pd.read_csv(args.data) if args.data.suffix == ".csv" else pd.read_excel(args.data)
    df = pd.DataFrame({"unique_id": "OT", "ds": pd.to_datetime(frame["date"]), "y": frame["OT"]}).iloc[:TRAIN_VAL_ROWS]
    if args.per_step:
        print(json.dumps(per_step(df, args.input_size, args.hidden) | {"neuralforecast": __version__}))
        return
    model = AutoLSTM(h=HORIZON, config=config(args.steps), search_alg=optuna.samplers.TPESampler(seed=42),
                     backend="optuna", num_samples=args.trials)
    clock = time.perf_counter()
    forecaster = NeuralForecast(models=[model], freq="h")
    forecaster.fit(df, val_size=VAL_ROWS)
    seconds = time.perf_counter() - clock
    results = forecaster.models[0].results.trials_dataframe()  # fit works on a copy of `model`
    print(json.dumps({"seconds": seconds, "trials": len(results), "neuralforecast": __version__,
                      "best_val_loss": float(results["value"].min())}))


if __name__ == "__main__":
    main()
