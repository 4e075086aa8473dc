"""One fit: the unit that `train`, sweep trials and backtest folds share.

It fits and evaluates one configuration on a series that is already read and validated, and logs it to an
MLflow run that the caller has opened (a training run, or a trial's or fold's child run): normalize,
window + train, calibrate intervals, evaluate against the baselines, plot, log. It takes and returns plain
values (frames, arrays, ids, the logged model's URI), never Keras objects or clients, so a Dask worker on
another machine can run it; it opens its own tracking client from the URI it is given.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.clean import clean_data
from tasks.data.drift import profile
from tasks.data.ingest import read_workbook
from tasks.data.validate import Summary, validate_data
from tasks.errors import FitFailed
from tasks.model.evaluate import evaluate_forecasts, forecast_windows, season_length
from tasks.model.intervals import conformal_halfwidths
from tasks.model.train import train_model
from tasks.prepare.normalize import normalize_series
from tasks.prepare.split import Bounds, split_bounds
from tasks.prepare.window import origins, target_windows
from tasks.registry.package import package_model
from tasks.report.plot import make_figures
from tasks.settings import Settings
from tasks.tracking import models, runs, store


@dataclass(frozen=True)
class Prepared:
    """A series read, cleaned and validated once, with what every run logs about where it came from."""

    series: pd.DataFrame  # DatetimeIndex; the target, then features, as float
    summary: Summary
    digest: str  # sha256 of the file's bytes
    source: str  # the data file, as the user named it

    def head(self, rows: int) -> Prepared:
        """The first `rows` rows only: what a backtest fold may see."""
        return Prepared(self.series.iloc[:rows], self.summary, self.digest, self.source)


@dataclass(frozen=True)
class FitResult:
    """What a caller needs of a finished fit: plain values that cross processes."""

    run_id: str
    metrics: dict[str, float]  # test metrics of model and baselines, `val_mse`, `start_val_mse`, `kept_val_loss`
    history: dict[str, list[float]]  # per epoch `loss`, `val_loss`
    model_uri: str | None  # the logged pyfunc, to register (None when not logged)
    test_starts: tuple[int, int]  # [first, last + 1) test origin, as row numbers of the series
    test_forecast: np.ndarray  # [windows, H] in the target's units
    step_mse: list[float]  # test MSE (normalized) at each horizon step
    segments: list[dict[str, float]] = field(default_factory=list)  # metrics per `segments` asked for


def prepare_data(data: str, settings: Settings) -> Prepared:
    """Read, clean (only as data.sort / data.fill_gaps ask) and validate: the series every fit starts from."""
    raw = clean_data(read_workbook(Path(data), settings.data), settings.data)
    series, summary = validate_data(raw, settings, data)
    return Prepared(series, summary, raw.digest, data)


def backup_dir(run_id: str) -> Path:
    """Where training saves each epoch, so that a retry of the training task resumes from the last one.
    Keyed on the MLflow run: a task retry keeps it, a new flow run does not."""
    return Path(tempfile.gettempdir()) / "lstm-pipeline-backup" / run_id


def fit_run(data: Prepared, settings: Settings, run_id: str, bounds: Bounds | None = None, log_model: bool = True,
            title: str = "", segments: list[tuple[int, int]] = ()) -> FitResult:
    """Fit `settings` on `data` and log everything to run `run_id` (left RUNNING: the caller ends it).

    `bounds` default to the settings' split; `segments` are row ranges inside the test split that get
    metrics of their own (a backtest's folds scored by one model)."""
    try:
        return _fit(data, settings, run_id, bounds or split_bounds(len(data.series), settings.split), log_model,
                    title, segments)
    finally:
        shutil.rmtree(backup_dir(run_id), ignore_errors=True)  # train_model's own retries are over by now


def _fit(data: Prepared, settings: Settings, run_id: str, bounds: Bounds, log_model: bool, title: str,
         segments: list[tuple[int, int]]) -> FitResult:
    series, summary, w = data.series, data.summary, settings.window
    scaler, values = normalize_series(series, bounds)
    clock = time.perf_counter()
    model, history = train_model(values, bounds, settings, [runs.epoch_logger(run_id)], backup_dir(run_id))
    train_seconds = time.perf_counter() - clock  # what a sweep's per-trial overhead is measured against
    if not all(math.isfinite(v) for v in history["loss"]):
        epoch = next(i for i, v in enumerate(history["loss"], 1) if not math.isfinite(v))
        raise FitFailed(f"the training loss became {history['loss'][epoch - 1]} at epoch {epoch}; "
                        "lower train.learning_rate or check the data's scale")

    # Validation forecasts: the intervals' calibration and `val_mse`, the objective that sweeps choose by.
    val = origins(bounds.val, w, training=False)
    val_true = target_windows(values, val, w.horizon)
    val_pred = forecast_windows(model, values, val, w)
    halfwidth = conformal_halfwidths(scaler.inverse_target(val_pred) - scaler.inverse_target(val_true),
                                     settings.evaluate.coverage).tolist()

    test = origins(bounds.test, w, training=False)
    test_pred = forecast_windows(model, values, test, w)  # [windows, H], normalized
    season = settings.evaluate.season or season_length(summary.frequency, summary.step)
    train_units = series[summary.target].to_numpy()[slice(*bounds.train)]
    metrics = evaluate_forecasts(values, test, test_pred, scaler, train_units, season, halfwidth)
    # `kept_val_loss` is what `start_val_mse` compares with: both the training loss on val (in seq2seq mode
    # `val_mse` scores rolled H-step forecasts, the loss next-step predictions).
    metrics |= {"val_mse": float(np.mean((val_pred - val_true) ** 2)), "start_val_mse": history["val_loss_start"][0],
                "kept_val_loss": history["val_loss_kept"][0], "train_seconds": train_seconds}
    step_mse = np.mean((test_pred - target_windows(values, test, w.horizon)) ** 2, axis=0).tolist()
    scored = []
    for start, stop in segments:
        part = origins((start, stop), w, training=False)
        rows = slice(part.start - test.start, part.stop - test.start)
        scored.append(evaluate_forecasts(values, part, test_pred[rows], scaler, train_units, season, halfwidth))

    # Did the weights kept beat those training started from? Said on every run.
    improved = history["val_loss_kept"][0] < history["val_loss_start"][0]
    packaged = package_model(model, summary, scaler, settings, series, halfwidth, bounds) if log_model else None
    figures = make_figures(series, summary.target, test, scaler.inverse_target(test_pred),
                           packaged["output_example"] if packaged else None, history, title)
    rows = bounds.rows() | {"total": len(series)}
    runs.log_results(
        run_id,
        params=settings.flat() | {"data.path": data.source, "data.digest": data.digest}
               | {f"rows.{k}": v for k, v in rows.items()},
        metrics=metrics,
        dataset={"series": series, "source": str(Path(data.source).resolve()), "digest": data.digest,
                 "target": summary.target},
        artifacts={"config.yaml": settings.model_dump(mode="json"), "validation_summary.json": summary.to_dict(),
                   "scaler.json": scaler.to_dict(), "history.json": history,
                   "data_profile.json": profile(series, summary.target, bounds.train)},
        figures=figures,
        tags={"lstm_improved_on_start": str(improved).lower()},
    )
    model_uri = None
    if packaged:
        model_uri = models.log_model(run_id, **{k: packaged[k] for k in ("keras_model", "spec", "input_example",
                                                                          "output_example")})
        runs.set_run_tags(run_id, {"model_uri": model_uri})  # what `sweep --register best` registers, later too
    return FitResult(run_id, metrics, {k: history[k] for k in ("loss", "val_loss") if k in history}, model_uri,
                     (test.start, test.stop), scaler.inverse_target(test_pred), step_mse, scored)


@task(cache_policy=NO_CACHE, task_run_name="{name}")
def fit_child(data: Prepared, settings: Settings, run_id: str, tracking_uri: str, name: str,
              bounds: Bounds | None = None, log_model: bool = True,
              segments: list[tuple[int, int]] = ()) -> FitResult:
    """A sweep trial or backtest fold on a Dask worker: fit run `run_id` and end it FINISHED (or FAILED,
    with the reason, before the error is raised). The store is named explicitly: a worker on another
    machine has none of the caller's settings."""
    store.connect(tracking_uri)
    with runs.recorded(run_id):
        result = fit_run(data, settings, run_id, bounds, log_model, name, segments)
    return result
