"""MLflow runs: start one, log to it by id, end it; find runs that a killed process left RUNNING."""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError
from tasks.tracking.models import CODE_DIR
from tasks.tracking.store import experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CODE_DIR, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_run(experiment: str, name: str, description: str, tags: dict[str, str]) -> str:
    commit = git_commit()
    run = MlflowClient().create_run(
        experiment_id(experiment), run_name=name,
        tags={"mlflow.note.content": description, "git_commit": commit, "mlflow.source.git.commit": commit,
              **process_tags(), **tags},
    )
    return run.info.run_id


BATCH_METRICS = 1000  # the most metrics MLflow's log_batch takes at once


def log_params(run_id: str, params: dict[str, Any]) -> None:
    MlflowClient().log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(pd.Timestamp.now().timestamp() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for first in range(0, len(batch), BATCH_METRICS):  # a run of many series logs more than one batch takes
        MlflowClient().log_batch(run_id, metrics=batch[first:first + BATCH_METRICS])


def epoch_logger(run_id: str):
    """A Keras callback that records `loss`, `val_loss` and `epoch_seconds` (its wall time, val pass included)
    with step = epoch (1-based) as training runs."""
    import time

    import keras

    class EpochMetrics(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            kept = {k: v for k, v in (logs or {}).items() if k in ("loss", "val_loss")}
            log_metrics(run_id, kept | {"epoch_seconds": time.perf_counter() - self.started}, step=epoch + 1)

    return EpochMetrics()


def log_figure(run_id: str, figure, filename: str) -> None:
    import matplotlib.pyplot as plt

    MlflowClient().log_figure(run_id, figure, filename)
    plt.close(figure)


def log_dict(run_id: str, data: dict, filename: str) -> None:
    MlflowClient().log_dict(run_id, data, filename)


def log_text(run_id: str, text: str, filename: str) -> None:
    MlflowClient().log_text(run_id, text, filename)


def log_dataset(run_id: str, series: pd.DataFrame, source: str, digest: str, target: str) -> None:
    """The training data as an MLflow dataset input (source path, digest, schema)."""
    from mlflow.entities import DatasetInput, InputTag

    dataset = mlflow.data.from_pandas(series.reset_index(), source=source, name=Path(source).name,
                                      targets=target, digest=digest[:36])
    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])]
    try:
        MlflowClient().log_inputs(run_id, datasets=inputs)
    except MlflowException:
        # MLflow's store looks the dataset up, then inserts it: when another run of the experiment logs
        # the same new dataset at that moment, one insert breaks the unique key (the sweep's trials do
        # this). The second try finds the row the other run made. Logging an input is idempotent, so a
        # lasting error simply fails again.
        MlflowClient().log_inputs(run_id, datasets=inputs)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        MlflowClient().set_tag(run_id, key, value)


def end_run(run_id: str, ok: bool) -> None:
    MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


def fail_run(run_id: str, error: BaseException) -> None:
    """Mark a run FAILED; bad input leaves its validation report beside it. When the store itself is
    what failed, the run stays RUNNING until the next training's `close_stale_runs` marks it, and the
    original error is the one raised."""
    try:
        if isinstance(error, InputError):
            log_text(run_id, "\n".join(map(str, error.problems)) + "\n", "validation_report.txt")
        MlflowClient().set_tag(run_id, "failure", f"{type(error).__name__}: {str(error)[:500]}")
        end_run(run_id, ok=False)
    except Exception as exc:  # noqa: BLE001 - whatever the store raises, the caller re-raises `error`
        print(f"could not mark MLflow run {run_id} FAILED ({type(exc).__name__}); the next training will")


def load_dict(run_id: str, filename: str) -> dict | None:
    """A JSON/YAML artifact of a run, or None when the run has no such file."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{filename}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None


def last_training_digest(experiment: str) -> str | None:
    """The data digest of the newest successful training run in `experiment`, if any."""
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = MlflowClient().search_runs([found.experiment_id], "tags.run_type = 'train' and attributes.status = 'FINISHED'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.params.get("data.digest") if runs else None


def log_drift(run_id: str, drift: dict) -> None:
    """The retrain flow's comparison with the champion's data, on the run it triggered."""
    log_dict(run_id, drift, "drift.json")
    log_metrics(run_id, {"drift_psi": drift["psi"], "drift_mean_shift": drift["mean_shift_in_std"]})


def process_tags() -> dict[str, str]:
    """Which process owns a run, so that a later one can tell a killed run from a running one."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def close_stale_runs(experiment: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment` whose process on this machine is gone (killed, or
    it lost its tracking server before it could say FAILED); returns their ids. Runs started on other
    machines are left alone: their processes cannot be seen from here."""
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return []
    stale = []
    for run in MlflowClient().search_runs([found.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        host, pid = run.data.tags.get("host"), run.data.tags.get("pid", "")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid), run.info.start_time):
            continue
        kill_run(run.info.run_id, f"its process (pid {pid} on {host}) ended without finishing the run; "
                                     "marked KILLED by a later training")
        stale.append(run.info.run_id)
    return stale


def running_runs() -> list[tuple[str, dict[str, str]]]:
    """(run id, tags) of every RUNNING run of the store, in every experiment."""
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(max_results=50000)]
    found = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000) if experiments else []
    return [(run.info.run_id, run.data.tags) for run in found]


def kill_run(run_id: str, why: str) -> bool:
    """Mark a run KILLED, with `why` in its `failure` tag, if it is still RUNNING (a run that ended
    meanwhile keeps its status); returns whether it was marked."""
    if MlflowClient().get_run(run_id).info.status != "RUNNING":
        return False
    MlflowClient().set_tag(run_id, "failure", why)
    MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    return True


def fail_run_if_running(run_id: str, why: str) -> None:
    """Mark FAILED a run whose process could not (a Dask worker that died mid-fit)."""
    if MlflowClient().get_run(run_id).info.status == "RUNNING":
        MlflowClient().set_tag(run_id, "failure", why)
        end_run(run_id, ok=False)


def _alive(pid: int, run_start_ms: int) -> bool:
    """Whether `pid` is still the process that started the run (not a later one given the same pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() * 1000 <= run_start_ms + 1000
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def track_forecast(experiment: str, name: str, tags: dict[str, str], params: dict, model_id: str | None,
                   files: list[Path]) -> str:
    """A finished forecast run: the model used (tags, and MLflow's link to the logged model), the data
    (params) and the forecast's table and plot; returns its run id."""
    from mlflow.entities import LoggedModelInput

    run_id = start_run(experiment, name, f"Forecast with {tags['model_uri']}", {"run_type": "forecast", **tags})
    log_params(run_id, params)
    if model_id:
        MlflowClient().log_inputs(run_id, models=[LoggedModelInput(model_id)])
    for path in files:
        MlflowClient().log_artifact(run_id, str(path))
    end_run(run_id, ok=True)
    return run_id


def log_results(run_id: str, params: dict, metrics: dict, dataset: dict, artifacts: dict, figures: dict,
                tags: dict[str, str], tables: dict[str, pd.DataFrame] | None = None) -> None:
    """Everything a fit records besides its model: params, metrics, the dataset, JSON/YAML files, figures,
    CSV tables."""
    log_params(run_id, params)
    log_metrics(run_id, metrics)
    log_dataset(run_id, **dataset)
    for filename, data in artifacts.items():
        log_dict(run_id, data, filename)
    for filename, table in (tables or {}).items():
        log_text(run_id, table.to_csv(index=False), filename)
    for filename, figure in figures.items():
        log_figure(run_id, figure, filename)
    set_run_tags(run_id, tags)


@contextmanager
def recorded(run_id: str):
    """End run `run_id` FINISHED when the block succeeds; FAILED, with the reason, when it raises."""
    try:
        yield
    except KeyboardInterrupt:
        kill_run(run_id, "stopped by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        fail_run(run_id, exc)
        raise
    end_run(run_id, ok=True)


def find_runs(experiment: str, filter_string: str) -> list:
    """Runs of `experiment` matching `filter_string`, newest first."""
    found = MlflowClient().get_experiment_by_name(experiment)
    return MlflowClient().search_runs([found.experiment_id], filter_string, order_by=["attributes.start_time DESC"]
                                      ) if found else []


def child_runs(parent: str) -> list:
    """Every run whose `mlflow.parentRunId` is `parent`."""
    run = MlflowClient().get_run(parent)
    return MlflowClient().search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                      max_results=10000)


def reopen_run(run_id: str) -> None:
    """A finished run set RUNNING again: a sweep continued by name logs on to its parent."""
    MlflowClient().update_run(run_id, status="RUNNING")


def tag(run_id: str, key: str) -> str | None:
    return MlflowClient().get_run(run_id).data.tags.get(key)


def metric_values(run_id: str, key: str) -> list[float]:
    """A metric's values in step order (e.g. a run's val_loss per epoch)."""
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, key), key=lambda m: m.step)]
