"""Fan-out, shared by sweeps and backtests: fits run as Prefect task runs on prefect-dask's DaskTaskRunner,
each logged to an MLflow child run that the parent opens before submitting it (so the parent can mark
every unfinished one when the command is stopped), and their results are collected as they finish."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect.futures import PrefectFuture, as_completed
from prefect_dask import DaskTaskRunner

from tasks.data.panel import Prepared
from tasks.errors import InputError, Problem
from tasks.runs.fit import FitResult, fit_child
from tasks.settings import Settings
from tasks.tracking import runs, store


def task_runner(address: str) -> DaskTaskRunner:
    """The Dask cluster at `address`: one the user started, or the command's own (services/cluster.py)."""
    return DaskTaskRunner(address=address)


def check_store_shared(address: str | None) -> None:
    """Workers of a cluster elsewhere log their runs themselves: they need a store they can all reach."""
    uri = store.tracking_uri()
    if address and (uri.startswith(("sqlite:", "file:")) or "://" not in uri):
        raise InputError([Problem(
            f"--dask-address {address}: the cluster's workers cannot write to the local tracking store {uri}",
            "start a tracking server that every worker reaches (`lstm-pipeline stack up`, or any MLflow server) "
            "and set MLFLOW_TRACKING_URI to it, or leave out --dask-address to run on this machine")])


@dataclass
class Job:
    """One submitted fit: the caller's key for it (trial values, fold number) and its child run."""

    key: Any
    name: str
    run_id: str
    future: PrefectFuture
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Done:
    job: Job
    result: FitResult | None  # None: it failed
    error: str | None
    seconds: float


def launch(key: Any, name: str, parent: str, experiment: str, tags: dict[str, str], data: Prepared,
           settings: Settings, params: dict[str, Any] | None = None, **fit: Any) -> Job:
    """Open the child run (with `params` beside what the fit logs), then submit its fit to the flow's task runner."""
    run_id = runs.start_run(experiment, name, f"{tags.get('run_type', 'child')} {name} of run {parent}",
                            {"mlflow.parentRunId": parent, **tags})
    if params:
        runs.log_params(run_id, params)
    future = fit_child.submit(data, settings, run_id, store.tracking_uri(), name, **fit)
    return Job(key, name, run_id, future)


def next_done(jobs: list[Job]) -> Done:
    """Wait for the first of `jobs` to finish and take it out of the list. A fit that failed without
    ending its run (a worker that died) has its run marked FAILED here."""
    future = next(as_completed([job.future for job in jobs]))
    job = next(j for j in jobs if j.future is future)
    jobs.remove(job)
    try:
        result, error = future.result(), None
    except Exception as exc:  # noqa: BLE001 - any failure of one fit is that fit's, recorded, and the rest go on
        result, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        runs.fail_run_if_running(job.run_id, error)
    return Done(job, result, error, time.monotonic() - job.started)


def abandon(jobs: list[Job], why: str) -> None:
    """Mark the runs of fits that will not finish KILLED, with the reason. (The fits themselves end with
    the task runner: a local cluster is closed, and a remote one drops the work of a client that left.)"""
    for job in jobs:
        runs.kill_run(job.run_id, why)


class Progress:
    """'3/8 ... (best 0.0211; 41 s, about 1 min 10 s left)': one line per finished fit."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.monotonic()

    def line(self, text: str) -> str:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        return f"{self.done}/{self.total}  {text}  ({_duration(elapsed)}; about {_duration(left)} left)"


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"
