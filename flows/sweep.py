"""The sweep flow: many configurations fitted at once on a Dask cluster, one MLflow child run each under one
parent run, the best chosen on validation MSE and, if asked, registered and put through the gate."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from prefect import flow
from prefect.runtime import flow_run

from flows.fanout import Job, Progress, abandon, launch, next_done
from flows.promote import run_gate
from tasks.data.panel import Prepared, prepare_data
from tasks.errors import InputError, NothingFinished, Problem
from tasks.prepare.split import required_rows
from tasks.registry.promote import GateResult
from tasks.runs.backtest import Outcome, check_span, log_backtest, plan_folds, summarize
from tasks.runs.space import Proposer, Space, read_space, trial_name, trial_settings
from tasks.runs.sweep import (
    OBJECTIVE,
    best_forecasts,
    earlier_trials,
    log_chosen_model,
    log_sweep,
    trial_record,
    trials_table,
)
from tasks.settings import Settings
from tasks.tracking import models, registry, runs, store

DEFAULT_TRIALS = 20  # for a space with ranges; a grid runs every combination
BEST_SHOWN = 3  # trials whose test forecasts the parent's figure draws


@dataclass(frozen=True)
class SweepResult:
    run_id: str
    name: str
    table: pd.DataFrame  # every trial, best first
    best: dict[str, Any] | None  # the best trial's row of `table`
    version: str | None = None  # registered with --register best
    promotion: GateResult | None = None


def refused(space: Space, base: Settings, rows: int) -> list[Problem]:
    """Grid combinations the settings refuse, or that need more rows than the data has: found before
    any training. (A range's values are checked as Optuna proposes them.)"""
    problems = []
    for values in space.grid() if space.is_grid else []:
        try:
            needed = required_rows(trial_settings(base, values))
        except InputError as exc:
            problems.append(Problem(f"trial {trial_name(values)}: {exc.problems[0].what}", "change the space"))
            continue
        if needed > rows:
            problems.append(Problem(f"trial {trial_name(values)} needs {needed} rows; the data has {rows}",
                                    "lower window.input_length / window.horizon in the space, or use more data"))
    return problems


def open_sweep(name: str, data: Prepared, space: Space, settings: Settings, workers: int, objective: str
               ) -> tuple[str, list[dict]]:
    """The parent run: the one of a sweep of this name, continued (its trials so far returned as rows), or a new one."""
    experiment = settings.tracking.experiment
    found = runs.find_runs(experiment, f"tags.run_type = 'sweep' and tags.sweep_name = '{name}'")
    if found:
        parent = found[0].info.run_id
        if runs.load_dict(parent, "space.json") != space.axes:
            raise InputError([Problem(f"sweep {name!r} (run {parent}) was run with another space",
                                      "pass the same space file to continue it, or another --name")])
        scored = found[0].data.params.get("sweep.objective", objective)
        if scored != objective:
            raise InputError([Problem(f"sweep {name!r} (run {parent}) was scored by {scored}, not {objective}",
                                      "continue it with the same --objective (and --folds), or use another --name")])
        runs.reopen_run(parent)
        return parent, earlier_trials(runs.child_runs(parent), list(space.axes))
    parent = runs.start_run(experiment, name, f"Sweep of {len(space.axes)} settings on {data.source}",
                            {"run_type": "sweep", "sweep_name": name, "prefect_flow_run_id": str(flow_run.id)})
    runs.log_params(parent, settings.flat() | {"data.path": data.source, "data.digest": data.digest,
                                               "sweep.sampler": "grid" if space.is_grid else "optuna-tpe",
                                               "sweep.objective": objective, "sweep.workers": workers}
                    | {f"space.{k}": yaml.safe_dump(v, default_flow_style=True).strip() for k, v in space.axes.items()})
    runs.log_dict(parent, space.axes, "space.json")
    return parent, []


@dataclass
class Trial:
    """A proposed configuration on its way: its run and, scored by backtest, its folds' outcomes."""

    number: int
    handle: int  # the proposer's
    values: dict[str, Any]
    settings: Settings
    run_id: str = ""
    folds: int = 0  # fold fits outstanding (backtest objective)
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return trial_name(self.values)


def start_trial(trial: Trial, parent: str, sweep: str, data: Prepared, backtest: tuple[int, int | None] | None
                ) -> list[Job]:
    """Open the trial's child run and submit its fit, or (scored by backtest) its folds' fits as its children."""
    experiment, tags = trial.settings.tracking.experiment, {"run_type": "trial", "trial": str(trial.number),
                                                           "sweep_name": sweep}
    if backtest is None:
        job = launch((trial, None), trial.name, parent, experiment, tags, data, trial.settings, model="parts")
        trial.run_id = job.run_id
        return [job]
    plan = plan_folds(len(data.series), trial.settings, *backtest)
    trial.run_id = runs.start_run(experiment, trial.name, f"trial {trial.name} of sweep {sweep}, scored by a backtest",
                                  {"mlflow.parentRunId": parent, **tags})
    runs.log_params(trial.run_id, trial.settings.flat() | {"data.path": data.source, "data.digest": data.digest})
    trial.folds = len(plan)
    return [launch((trial, fold), f"{trial.name}-fold-{fold.number}", trial.run_id, experiment,
                   {"run_type": "fold", "fold": str(fold.number)}, data.head(fold.bounds.test[1]), trial.settings,
                   params=fold.params(data.series.index), bounds=fold.bounds, model="none")
            for fold in reversed(plan)]  # the longest fit first, as a backtest submits them


def finish_trial(trial: Trial, data: Prepared) -> tuple[dict | None, str | None]:
    """A backtest-scored trial whose folds are all in: log them on its run and end it; (metrics, failure)."""
    table = log_backtest(trial.run_id, trial.outcomes, data, trial.settings.window)
    if table["status"].eq("FAILED").all():
        failure = f"none of its {len(table)} folds finished: {table['failure'].iloc[0]}"
        runs.fail_run_if_running(trial.run_id, failure)
        return None, failure
    scores = summarize(table)
    metrics = scores | {OBJECTIVE: scores["backtest_val_mse"]}  # never the folds' test windows
    runs.log_metrics(trial.run_id, {OBJECTIVE: metrics[OBJECTIVE]})
    runs.end_run(trial.run_id, ok=True)
    return metrics, None


def run_trials(proposer: Proposer, total: int, workers: int, parent: str, name: str, data: Prepared,
               settings: Settings, earlier: list[dict], backtest: tuple[int, int | None] | None
               ) -> tuple[list[dict], dict, dict]:
    """Ask for trials while workers are free, submit them, and tell each objective as it comes in;
    returns the rows, val_loss curves and fit results of this invocation's trials."""
    rows, curves, fits, jobs = [], {}, {}, []
    progress = Progress(total)
    number = max((r["trial"] for r in earlier), default=0)
    best = min((r[OBJECTIVE] for r in earlier if r["status"] == "FINISHED"), default=math.inf)
    asked = 0
    try:
        while len(rows) < total:
            while asked < total and len(jobs) < workers and (proposal := proposer.ask()) is not None:
                handle, values = proposal
                number, asked = number + 1, asked + 1
                try:
                    trial = Trial(number, handle, values, trial_settings(settings, values))
                    if required_rows(trial.settings) > data.rows:
                        raise InputError([Problem(f"needs {required_rows(trial.settings)} rows; "
                                                  f"the data has {data.rows}")])
                    jobs += start_trial(trial, parent, name, data, backtest)
                except InputError as exc:  # a proposal the settings or the rows refuse: a failed trial, no run
                    proposer.tell(handle, None)
                    rows.append(trial_record(number, trial_name(values), values, "", None, None, str(exc.problems[0])))
                    print(progress.line(f"trial {trial_name(values)} refused: {exc.problems[0]}"))
            if not jobs:
                break  # the grid is done
            done = next_done(jobs)
            trial, fold = done.job.key
            if fold is None:
                metrics, failure = (done.result.metrics if done.result else None), done.error
            else:
                trial.outcomes.append(Outcome(fold, done.job.run_id, done.result, done.error))
                if len(trial.outcomes) < trial.folds:
                    continue
                metrics, failure = finish_trial(trial, data)
            proposer.tell(trial.handle, metrics[OBJECTIVE] if metrics else None)
            rows.append(trial_record(trial.number, trial.name, trial.values, trial.run_id, metrics,
                                     time.monotonic() - trial.started, failure))
            if metrics:
                if fold is None:
                    curves[trial.name], fits[trial.run_id] = done.result.history["val_loss"], done.result
                best = min(best, metrics[OBJECTIVE])
                runs.log_metrics(parent, {"best_val_mse": best}, step=len(earlier) + len(rows))
                text = f"{OBJECTIVE}={metrics[OBJECTIVE]:.4f}  best {best:.4f}"
            else:
                text = f"FAILED ({failure})" + (f"  best {best:.4f}" if best < math.inf else "")
            print(progress.line(f"trial {trial.name}  {text}"))
    except BaseException:
        abandon(jobs, "the sweep was stopped before this trial finished")
        for trial in {id(j.key[0]): j.key[0] for j in jobs if j.key[1] is not None}.values():
            runs.kill_run(trial.run_id, "the sweep was stopped before this trial finished")
        raise
    return rows, curves, fits


def chosen_model(best: dict, name: str, register_best: bool) -> str | None:
    """The chosen trial's model URI. Trials keep their models' parts; the chosen one's pyfunc is logged in full
    from them, by a worker (TensorFlow is loaded there). Without --register best, a failure to log it leaves
    the sweep as it is, and running it again by name logs it."""
    model_uri = runs.tag(best["run_id"], "model_uri")
    if model_uri is not None:
        return model_uri
    if not models.has_parts(best["run_id"]):
        problem = Problem(f"trial {best['name']} (run {best['run_id']}) kept no model to log",
                          f"train its settings with `lstm-pipeline train --set ...` ({best['values']})")
        if register_best:
            raise InputError([problem])
        print(f"note: {problem}")
        return None
    try:
        return log_chosen_model.submit(best["run_id"], store.tracking_uri()).result()
    except Exception as exc:  # noqa: BLE001 - the trials stand; only the chosen one's pyfunc is missing
        if register_best:
            raise
        print(f"note: the model of trial {best['name']} was not logged ({type(exc).__name__}: {exc}); "
              f"run the sweep again with --name {name} to log it")
        return None


@flow(name="sweep", log_prints=True)
def sweep_flow(data: str, space_file: str, settings: Settings = Settings(), trials: int | None = None,
               workers: int = 2, name: str | None = None, register_best: bool = False,
               objective: Literal["val", "backtest"] = "val", folds: int = 3, fold_size: int | None = None
               ) -> SweepResult:
    """Read the space and the data once, fit the trials side by side (tasks/runs/fit.py, on the flow's Dask task
    runner), record them under one parent run, and register the best if asked. `objective`: the val split's
    MSE, or the mean val MSE over a backtest's folds (`folds`, `fold_size`, as `backtest` takes them)."""
    store.connect()
    if register_best and objective == "backtest":
        raise InputError([Problem("--register best needs --objective val: backtest folds log no model",
                                  "train the chosen configuration with `lstm-pipeline train --set ...`, or sweep with "
                                  "--objective val")])
    space = read_space(Path(space_file), settings)
    prepared = prepare_data(data, settings)
    if objective == "backtest":
        check_span(prepared)
    if problems := refused(space, settings, prepared.rows):
        raise InputError(problems)
    name = name or f"sweep-{Path(data).stem}-{pd.Timestamp.now():%Y%m%d-%H%M%S}"
    parent, earlier = open_sweep(name, prepared, space, settings, workers,
                                 f"backtest of {folds} folds" if objective == "backtest" else "val")
    print(f"MLflow run {parent} (sweep {name}" + (f", continued: {len(earlier)} trials done before)" if earlier else ")"))
    proposer = Proposer(space, settings.train.seed,
                        [(json.loads(r["values"]), r[OBJECTIVE]) for r in earlier if r["status"] == "FINISHED"])
    # --trials counts the sweep's finished trials, from before too; failed ones are tried again.
    finished = sum(r["status"] == "FINISHED" for r in earlier)
    wanted = trials - finished if trials else proposer.size if proposer.size is not None else DEFAULT_TRIALS - finished
    total = max(0, min(wanted, proposer.size) if proposer.size is not None else wanted)
    with runs.recorded(parent):
        rows, curves, fits = run_trials(proposer, total, workers, parent, name, prepared, settings, earlier,
                                        (folds, fold_size) if objective == "backtest" else None)
        table = trials_table(earlier + rows)
        curves = {r["name"]: runs.metric_values(r["run_id"], "val_loss") for r in earlier if r["status"] == "FINISHED"} | curves
        best = log_sweep(parent, table, list(space.axes), {k: v for k, v in curves.items() if v},
                         best_forecasts(table, fits, prepared.series.index, BEST_SHOWN),
                         prepared.series[prepared.summary.target])
        if best is None:
            raise NothingFinished(f"none of the {len(table)} trials finished (trials.csv on run {parent} says why)")
        model_uri = chosen_model(best, name, register_best) if objective == "val" else None
    print(f"best trial {best['name']}: {OBJECTIVE}={best[OBJECTIVE]:.4f} (run {best['run_id']})")
    if not register_best:
        return SweepResult(parent, name, table, best)
    version = registry.register_version(model_uri, settings.registry.model_name, best["run_id"])
    gate = run_gate(settings.registry.model_name, data, trial_settings(settings, json.loads(best["values"])),
                    version, prepared)
    return SweepResult(parent, name, table, best, version, gate)
