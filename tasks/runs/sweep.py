"""A sweep's record: one row per trial, the best trial, and what the parent run logs about them."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import yaml
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.report.plot import plot_forecasts, plot_objective, plot_val_losses
from tasks.tracking import models, runs, store

OBJECTIVE = "val_mse"  # the kept weights' MSE on the val split; test metrics are logged, never used to choose
SHOWN = [OBJECTIVE, "test_mse", "repeat_test_mse", "seasonal_naive_test_mse", "start_val_mse",
         "backtest_mse", "repeat_backtest_mse"]  # the last two: trials scored by a backtest


def trial_record(number: int, name: str, values: dict[str, Any], run_id: str, metrics: dict[str, float] | None,
                 seconds: float | None, failure: str | None) -> dict[str, Any]:
    """A row of trials.csv."""
    scores = {k: (metrics or {}).get(k, math.nan) for k in SHOWN}
    # `values` also as JSON: the columns of a table turn whole numbers into floats once any cell is blank.
    return {"trial": number, "name": name, **values, "values": json.dumps(values), **scores,
            "status": "FAILED" if failure else "FINISHED",
            "seconds": round(seconds, 1) if seconds is not None else math.nan, "run_id": run_id,
            "failure": failure or ""}


def earlier_trials(children: list, keys: list[str]) -> list[dict[str, Any]]:
    """Rows for the trials a sweep of the same name ran before (its parent's child runs in MLflow)."""
    rows = []
    for run in children:
        values = {k: yaml.safe_load(run.data.params[k]) for k in keys if k in run.data.params}
        seconds = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
        failure = None if run.info.status == "FINISHED" else run.data.tags.get("failure", run.info.status)
        rows.append(trial_record(int(run.data.tags.get("trial", 0)), run.info.run_name, values, run.info.run_id,
                                 run.data.metrics, seconds, failure))
    return rows


def trials_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every trial, best objective first; failed trials last. Scores no trial has are left out."""
    table = pd.DataFrame(rows).sort_values([OBJECTIVE, "trial"], na_position="last").reset_index(drop=True)
    return table.drop(columns=[k for k in SHOWN if k != OBJECTIVE and table[k].isna().all()])


def best_forecasts(table: pd.DataFrame, fits: dict, index: pd.Index, shown: int) -> list:
    """(label, times of the test targets, test forecasts [windows, H] in units) of the best `shown` trials
    among those fitted by this command (`fits`: run id -> FitResult), for the parent's figure."""
    out = []
    for name, run_id in zip(table["name"], table["run_id"]):
        fit = fits.get(run_id)
        if fit is not None and len(out) < shown:
            first, stop = fit.test_starts
            out.append((f"{name} (val_mse {fit.metrics[OBJECTIVE]:.4f})",
                        index[first:stop - 1 + fit.test_forecast.shape[1]], fit.test_forecast))
    return out


@task(cache_policy=NO_CACHE)
def log_sweep(parent: str, table: pd.DataFrame, keys: list[str], curves: dict[str, list[float]],
              forecasts: list, actual: pd.Series) -> dict[str, Any] | None:
    """trials.csv (also a Prefect table artifact), the comparison figures and the best trial on the parent
    run; returns the best trial's row (None when no trial finished)."""
    finished = table[table["status"] == "FINISHED"]
    best = {k: _plain(v) for k, v in finished.iloc[0].items()} if len(finished) else None
    runs.log_text(parent, table.to_csv(index=False), "trials.csv")
    create_table_artifact(json.loads(table.to_json(orient="records")), key="sweep-trials",
                          description="Every trial of the sweep, best val_mse first")
    runs.log_figure(parent, plot_objective(table, keys, OBJECTIVE), "objective_by_setting.png")
    if curves:
        runs.log_figure(parent, plot_val_losses(curves, best["name"] if best else None), "val_loss_curves.png")
    if forecasts:
        runs.log_figure(parent, plot_forecasts(actual, forecasts, "Test forecasts of the best trials (chosen on val)"),
                        "best_forecasts.png")
    if best is not None:
        runs.log_metrics(parent, {"trials_finished": float(len(finished)), "trials_failed": float(len(table) - len(finished))})
        runs.set_run_tags(parent, {"best_run_id": best["run_id"], "best_trial": best["name"],
                                   "best_params": best["values"]})
    return best


def _plain(value):
    """NumPy scalars (as pandas hands them out) as the Python values they hold: the settings are strict."""
    return value.item() if hasattr(value, "item") else value


@task(cache_policy=NO_CACHE, task_run_name="log-chosen-model")
def log_chosen_model(run_id: str, tracking_uri: str) -> str:
    """The chosen trial's pyfunc, logged in full from the parts it kept; its model URI. Run on a worker, which
    has TensorFlow loaded to check that the model loads; the store is named, as for a trial."""
    store.connect(tracking_uri)
    return models.log_model_from_parts(run_id)
