"""The backtest flow: one configuration judged by rolling-origin folds fitted side by side on a Dask cluster,
one MLflow child run per fold under one parent run. Nothing is registered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import flow
from prefect.runtime import flow_run

from flows.fanout import Progress, abandon, launch, next_done
from tasks.data.panel import Prepared, prepare_data
from tasks.errors import NothingFinished
from tasks.runs.backtest import (
    Fold,
    Outcome,
    check_span,
    log_backtest,
    plan_folds,
    refit_once,
    summarize,
)
from tasks.settings import Settings
from tasks.tracking import runs, store


@dataclass(frozen=True)
class BacktestResult:
    run_id: str
    table: pd.DataFrame  # one row per fold
    scores: dict[str, float]  # backtest_mse, backtest_mse_std, ...


def run_every(plan: list[Fold], parent: str, data: Prepared, settings: Settings) -> list[Outcome]:
    """A model per fold, each fitted on the rows before its origin (the fold is given no later rows)."""
    index, progress, outcomes, jobs = data.series.index, Progress(len(plan)), [], []
    try:
        # Latest fold first: it trains on the most rows, and the shorter ones then fill the other workers.
        for fold in reversed(plan):
            jobs.append(launch(fold, f"fold-{fold.number}", parent, settings.tracking.experiment,
                               {"run_type": "fold", "fold": str(fold.number)}, data.head(fold.bounds.test[1]), settings,
                               params=fold.params(index), bounds=fold.bounds, model="none"))
        while jobs:
            done = next_done(jobs)
            outcomes.append(Outcome(done.job.key, done.job.run_id, done.result, done.error))
            text = f"test_mse={done.result.metrics['test_mse']:.4f}" if done.result else f"FAILED ({done.error})"
            print(progress.line(f"fold {done.job.key.number} (origin {index[done.job.key.origin]})  {text}"))
    except BaseException:
        abandon(jobs, "the backtest was stopped before this fold finished")
        raise
    return outcomes


def run_once(plan: list[Fold], parent: str, data: Prepared, settings: Settings) -> list[Outcome]:
    """One model, fitted before the first origin, scores every fold: a child run for the fit, and one per
    fold holding its scores."""
    index, bounds = data.series.index, refit_once(plan)
    jobs = [launch(None, "refit-once", parent, settings.tracking.experiment, {"run_type": "fold", "fold": "all"},
                   data.head(bounds.test[1]), settings, bounds=bounds, model="none",
                   segments=[f.bounds.test for f in plan])]
    try:
        done = next_done(jobs)
    except BaseException:
        abandon(jobs, "the backtest was stopped before the fit finished")
        raise
    outcomes = []
    for fold in plan:
        run_id = runs.start_run(settings.tracking.experiment, f"fold-{fold.number}", "scored by the refit-once model",
                                {"mlflow.parentRunId": parent, "run_type": "fold", "fold": str(fold.number),
                                 "fitted_by": done.job.run_id})
        outcome = Outcome(fold, run_id, done.result, done.error, shared=True)
        with runs.recorded(run_id):
            runs.log_params(run_id, settings.flat() | fold.params(index))
            runs.log_metrics(run_id, outcome.metrics or {})
        outcomes.append(outcome)
    return outcomes


@flow(name="backtest", log_prints=True)
def backtest_flow(data: str, settings: Settings = Settings(), folds: int = 5, fold_size: int | None = None,
                  refit: Literal["every", "once"] = "every", workers: int = 2) -> BacktestResult:
    """Read the data once, plan the folds (refused before any training when the rows are too few), fit
    them on the flow's Dask task runner and record the folds and their means under one parent run."""
    store.connect()
    prepared = prepare_data(data, settings)
    check_span(prepared)
    plan = plan_folds(len(prepared.series), settings, folds, fold_size)
    name = f"backtest-{Path(data).stem}-{len(plan)}x{plan[0].bounds.rows()['test']}-{refit}"
    parent = runs.start_run(settings.tracking.experiment, name, f"Rolling-origin backtest on {data}",
                            {"run_type": "backtest", "prefect_flow_run_id": str(flow_run.id)})
    print(f"MLflow run {parent} ({name})" + ("; refit once: one model, fitted before the first origin, "
                                             "scores every fold" if refit == "once" else ""))
    with runs.recorded(parent):
        runs.log_params(parent, settings.flat() | {"data.path": data, "data.digest": prepared.digest,
                                                   "backtest.folds": len(plan), "backtest.refit": refit,
                                                   "backtest.fold_size": plan[0].bounds.rows()["test"],
                                                   "backtest.workers": workers})
        outcomes = (run_once if refit == "once" else run_every)(plan, parent, prepared, settings)
        table = log_backtest(parent, outcomes, prepared, settings.window)
        if table["status"].eq("FAILED").all():
            raise NothingFinished(f"none of the {len(plan)} folds finished (folds.csv on run {parent} says why)")
    scores = summarize(table)
    print(f"{scores['folds_finished']:.0f} of {len(plan)} folds finished: backtest_mse {scores['backtest_mse']:.4f} "
          f"± {scores['backtest_mse_std']:.4f} (repeat {scores['repeat_backtest_mse']:.4f}, "
          f"seasonal naive {scores['seasonal_naive_backtest_mse']:.4f})")
    return BacktestResult(parent, table, scores)
