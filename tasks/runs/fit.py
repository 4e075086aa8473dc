"""One fit: the unit that `train`, sweep trials and backtest folds share.

It fits and evaluates one configuration on a series that is already read and validated, and logs it to an
MLflow run that the caller has opened (a training run, or a trial's or fold's child run): normalize,
window + train, calibrate intervals, evaluate against the baselines, plot, log. It takes and returns plain
values (frames, arrays, ids, the logged model's URI), never Keras objects or clients, so a Dask worker on
another machine can run it; it opens its own tracking client from the URI it is given.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.drift import profile
from tasks.data.panel import Member, Prepared
from tasks.errors import FitFailed
from tasks.model.evaluate import evaluate_forecasts, forecast_windows, season_length
from tasks.model.intervals import conformal_halfwidths
from tasks.prepare.normalize import normalize_series
from tasks.prepare.split import Bounds, split_bounds
from tasks.prepare.window import Stack, origins, target_windows
from tasks.registry.package import package_model
from tasks.report.plot import MAX_PANELS, make_figures, plot_series_panels
from tasks.settings import Settings
from tasks.tracking import models, runs, store


@dataclass(frozen=True)
class FitResult:
    """What a caller needs of a finished fit: plain values that cross processes."""

    run_id: str
    metrics: dict[str, float]  # test metrics of model and baselines, `val_mse`, `start_val_mse`, `kept_val_loss`
    history: dict[str, list[float]]  # per epoch `loss`, `val_loss`
    model_uri: str | None  # the logged pyfunc, to register (None when not logged in full)
    test_starts: tuple[int, int]  # [first, last + 1) test origin, as row numbers of the (first) series
    test_forecast: np.ndarray  # [windows, H] in the target's units (of the first series)
    step_mse: list[float]  # test MSE (normalized) at each horizon step
    segments: list[dict[str, float]] = field(default_factory=list)  # metrics per `segments` asked for


def backup_dir(run_id: str) -> Path:
    """Where training saves each epoch, so that a retry of the training task resumes from the last one.
    Keyed on the MLflow run: a task retry keeps it, a new flow run does not."""
    return Path(tempfile.gettempdir()) / "lstm-pipeline-backup" / run_id


ModelLog = Literal["full", "parts", "none"]


def fit_run(data: Prepared, settings: Settings, run_id: str, bounds: Bounds | None = None, model: ModelLog = "full",
            title: str = "", segments: list[tuple[int, int]] = ()) -> FitResult:
    """Fit `settings` on `data` and log everything to run `run_id` (left RUNNING: the caller ends it).

    `bounds` default to the settings' split of each series; `segments` are row ranges inside the test split
    that get metrics of their own (a backtest's folds scored by one model). `model`: the pyfunc logged in
    full, only its parts (a sweep's trial: `models.log_model_from_parts` logs it if it is chosen), or nothing."""
    every = [bounds or split_bounds(len(m.series), settings.split) for m in data.members]
    try:
        return _fit(data, settings, run_id, every, model, title, segments)
    finally:
        shutil.rmtree(backup_dir(run_id), ignore_errors=True)  # train_model's own retries are over by now


@dataclass(frozen=True)
class Scored:
    """One series' evaluation by the fitted model."""

    metrics: dict[str, float]  # its test metrics (tasks/model/evaluate.py) and `val_mse`
    windows: tuple[int, int]  # val and test windows: the weights of its figures in the overall ones
    halfwidth: list[float]  # the intervals' per-step half-widths, in its units
    test: range  # test origins, as its rows
    test_pred: np.ndarray  # [windows, H], normalized
    step_mse: np.ndarray  # [H]
    segments: list[dict[str, float]]


def score_member(member: Member, values: np.ndarray, scaler, bounds: Bounds, val_pred: np.ndarray,
                 test_pred: np.ndarray, settings: Settings, segments: list[tuple[int, int]]) -> Scored:
    """Calibrate one series' intervals on its val forecasts, and score its test forecasts against the baselines."""
    w = settings.window
    val, test = origins(bounds.val, w, training=False), origins(bounds.test, w, training=False)
    val_true = target_windows(values, val, w.horizon)
    halfwidth = conformal_halfwidths(scaler.inverse_target(val_pred) - scaler.inverse_target(val_true),
                                     settings.evaluate.coverage).tolist()
    summary = member.summary
    season = settings.evaluate.season or season_length(summary.frequency, summary.step)
    train_units = member.series[summary.target].to_numpy()[slice(*bounds.train)]
    metrics = evaluate_forecasts(values, test, test_pred, scaler, train_units, season, halfwidth)
    metrics["val_mse"] = float(np.mean((val_pred - val_true) ** 2))
    scored = []
    for start, stop in segments:
        part = origins((start, stop), w, training=False)
        rows = slice(part.start - test.start, part.stop - test.start)
        scored.append(evaluate_forecasts(values, part, test_pred[rows], scaler, train_units, season, halfwidth))
    step_mse = np.mean((test_pred - target_windows(values, test, w.horizon)) ** 2, axis=0)
    return Scored(metrics, (len(val), len(test)), halfwidth, test, test_pred, step_mse, scored)


def overall(figures: list[dict[str, float]], weights: list[int]) -> dict[str, float]:
    """The figures of several series as one: their means weighted by windows (a mean over series and
    windows); one series' own figures, as they are."""
    if len(figures) == 1:
        return dict(figures[0])
    return {k: float(np.average([f[k] for f in figures], weights=weights)) for k in figures[0]}


def _fit(data: Prepared, settings: Settings, run_id: str, bounds: list[Bounds], model_log: ModelLog, title: str,
         segments: list[tuple[int, int]]) -> FitResult:
    # TensorFlow comes with training, here: a sweep's or backtest's command only submits fits, and starts faster
    # without it (its workers have it loaded).
    from tasks.model import pool
    from tasks.model.train import train_model

    w, members = settings.window, data.members
    scalers, arrays = normalize_series([m.series for m in members], bounds)
    stack = Stack.of(arrays, bounds)
    callbacks = [runs.epoch_logger(run_id)] + ([models.requirements_check_callback()] if model_log == "full" else [])
    clock = time.perf_counter()
    model, history = train_model(stack, settings, callbacks, backup_dir(run_id))
    train_seconds = time.perf_counter() - clock  # what a sweep's per-trial overhead is measured against
    if not all(math.isfinite(v) for v in history["loss"]):
        epoch = next(i for i, v in enumerate(history["loss"], 1) if not math.isfinite(v))
        raise FitFailed(f"the training loss became {history['loss'][epoch - 1]} at epoch {epoch}; "
                        "lower train.learning_rate or check the data's scale")

    # Validation forecasts: the intervals' calibration and `val_mse`, the objective that sweeps choose by.
    # Every series' windows are forecast in one pass over the stack, then handed back to each.
    def per_series(split: str) -> list[np.ndarray]:
        counts = [len(origins(getattr(b, split), w, training=False)) for b in bounds]
        return np.split(forecast_windows(model, stack.values, stack.origins(split, w, training=False), w),
                        np.cumsum(counts)[:-1])

    scored = [score_member(m, arrays[i], scalers[i], bounds[i], val, test, settings, segments)
              for i, (m, val, test) in enumerate(zip(members, per_series("val"), per_series("test")))]
    val_weights, test_weights = ([s.windows[k] for s in scored] for k in (0, 1))
    metrics = overall([s.metrics for s in scored], test_weights)
    metrics |= overall([{"val_mse": s.metrics["val_mse"]} for s in scored], val_weights)  # over val windows
    # `kept_val_loss` is what `start_val_mse` compares with: both the training loss on val (in seq2seq mode
    # `val_mse` scores rolled H-step forecasts, the loss next-step predictions).
    metrics |= {"start_val_mse": history["val_loss_start"][0], "kept_val_loss": history["val_loss_kept"][0],
                "train_seconds": train_seconds}
    if data.several:
        metrics |= {f"{name}.{key}": s.metrics[name] for key, s in zip(metric_ids([m.id for m in members]), scored)
                    for name in ("test_mse", "test_mae")}
    step_mse = overall([dict(enumerate(s.step_mse)) for s in scored], test_weights)
    segment_metrics = [overall([s.segments[k] for s in scored], test_weights) for k in range(len(segments))]

    # Did the weights kept beat those training started from? Said on every run.
    improved = history["val_loss_kept"][0] < history["val_loss_start"][0]
    packaged = (package_model(model, data, scalers, [s.halfwidth for s in scored], bounds, settings)
                if model_log != "none" else None)
    first = scored[0]
    figures = make_figures(members[0].series, members[0].summary.target, first.test,
                           scalers[0].inverse_target(first.test_pred),
                           packaged["future"] if packaged else None, history,
                           f"{title} (series {members[0].id})" if data.several else title)
    artifacts = {"config.yaml": settings.model_dump(mode="json"), "history.json": history}
    if data.several:
        table = series_table(data, bounds, scored)
        figures["series_forecasts.png"] = series_figure(data, scalers, scored, title)
        artifacts |= {"validation_summary.json": {m.id: m.summary.to_dict() for m in members} | {"skipped": data.skipped},
                      "scaler.json": {m.id: sc.to_dict() for m, sc in zip(members, scalers)}}
    else:
        table = None
        artifacts |= {"validation_summary.json": members[0].summary.to_dict(), "scaler.json": scalers[0].to_dict(),
                      "data_profile.json": profile(members[0].series, members[0].summary.target, bounds[0].train)}
    rows = {k: sum(b.rows()[k] for b in bounds) for k in bounds[0].rows()} | {"total": sum(len(m.series) for m in members)}
    series_params = {"data.series_count": len(members), "data.skipped": ", ".join(data.skipped) or "none"} \
        if data.several else {}
    runs.log_results(
        run_id,
        params=settings.flat() | {"data.path": data.source, "data.digest": data.digest} | series_params
               | {f"rows.{k}": v for k, v in rows.items()},
        metrics=metrics,
        dataset={"series": dataset_frame(data), "source": str(Path(data.source).resolve()), "digest": data.digest,
                 "target": VALUE if data.several else members[0].summary.target},
        artifacts=artifacts,
        figures=figures,
        tags={"lstm_improved_on_start": str(improved).lower()},
        tables={"series.csv": table} if table is not None else {},
    )
    model_uri, parts = None, {k: packaged[k] for k in ("keras_model", "spec", "input_example", "output_example")
                              } if packaged else {}
    if model_log == "full":
        model_uri = models.log_model(run_id, **parts)
        runs.set_run_tags(run_id, {"model_uri": model_uri})  # what `sweep --register best` registers, later too
    elif model_log == "parts":
        models.log_parts(run_id, **parts)
    pool.give_back(model)  # for this process's next fit of the same shape
    return FitResult(run_id, metrics, {k: history[k] for k in ("loss", "val_loss") if k in history}, model_uri,
                     (first.test.start, first.test.stop), scalers[0].inverse_target(first.test_pred),
                     [step_mse[h] for h in range(w.horizon)], segment_metrics)


VALUE = "value"  # the column of each series' values in the dataset a run of several series logs


def metric_ids(series_ids: list[str]) -> list[str]:
    """Series ids as MLflow accepts them in a metric's name (letters, digits, _ - . / and spaces); two ids
    that come out alike (a:b and a_b) get their place in the list after them, so that none hides another."""
    safe = [re.sub(r"[^\w\-. /]", "_", i) for i in series_ids]
    return [f"{key}_{n}" if safe.count(key) > 1 else key for n, key in enumerate(safe, 1)]


def series_table(data: Prepared, bounds: list[Bounds], scored: list[Scored]) -> pd.DataFrame:
    """One row per series: its rows per split and its test figures beside the baselines'; then the
    series data.skip_bad_series left out, with why."""
    table = pd.DataFrame([{"series": m.id, "rows": len(m.series), **{f"rows_{k}": v for k, v in b.rows().items()},
                           **{k: s.metrics[k] for k in ("test_mse", "test_mae", "repeat_test_mse",
                                                        "seasonal_naive_test_mse", "test_interval_coverage")},
                           "skipped": ""} for m, b, s in zip(data.members, bounds, scored)])
    left_out = pd.DataFrame([{"series": i, "skipped": why} for i, why in data.skipped.items()])
    if not len(left_out):
        return table
    counts = [c for c in table.columns if c.startswith("rows")]
    return pd.concat([table, left_out], ignore_index=True).astype({c: "Int64" for c in counts})  # blank, not 720.0


def series_figure(data: Prepared, scalers, scored: list[Scored], title: str):
    """Each series' test forecasts in a panel of its own: every series up to MAX_PANELS, else the worst by test_mse."""
    order = np.argsort([-s.metrics["test_mse"] for s in scored], kind="stable")
    shown = sorted(order[:MAX_PANELS]) if len(scored) > MAX_PANELS else range(len(scored))
    panels = []
    for i in shown:
        m, s = data.members[i], scored[i]
        index = m.series.index[s.test.start:s.test.stop - 1 + s.test_pred.shape[1]]
        panels.append((f"{m.id}: test MSE {s.metrics['test_mse']:.3f} (Repeat {s.metrics['repeat_test_mse']:.3f})",
                       m.series[m.summary.target], index, scalers[i].inverse_target(s.test_pred)))
    which = (f"the {MAX_PANELS} worst of {len(scored)} series by test MSE" if len(scored) > MAX_PANELS
             else f"{len(scored)} series")
    return plot_series_panels(panels, f"{title}: {which}")


def dataset_frame(data: Prepared) -> pd.DataFrame:
    """What the run logs as its dataset: the series, stacked with a `series` column when there are several."""
    if not data.several:
        return data.series
    return pd.concat([m.series.rename(columns={m.summary.target: VALUE}).assign(series=m.id) for m in data.members])


@task(cache_policy=NO_CACHE, task_run_name="{name}")
def fit_child(data: Prepared, settings: Settings, run_id: str, tracking_uri: str, name: str,
              bounds: Bounds | None = None, model: ModelLog = "full",
              segments: list[tuple[int, int]] = ()) -> FitResult:
    """A sweep trial or backtest fold on a Dask worker: fit run `run_id` and end it FINISHED (or FAILED,
    with the reason, before the error is raised). The store is named explicitly: a worker on another
    machine has none of the caller's settings."""
    store.connect(tracking_uri)
    with runs.recorded(run_id):
        result = fit_run(data, settings, run_id, bounds, model, name, segments)
    return result
