"""Every MLflow call of the product. Nothing happens at import: the store is chosen when `connect` runs.

Calls name their run explicitly (run_id) rather than relying on MLflow's thread-local active run,
because Prefect may run tasks on worker threads.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem

DEFAULT_STORE = Path("mlruns")
CODE_DIR = Path(__file__).resolve().parent  # tasks/, shipped inside the model so it loads anywhere


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the local SQLite store under ./mlruns."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE}/mlflow.db"


def connect() -> None:
    """Point MLflow at the store (and create ./mlruns for the default one). A SQLite store is made ready
    for trainings that run at the same time; a tracking server must answer now, before any run starts."""
    uri = tracking_uri()
    if uri.startswith(f"sqlite:///{DEFAULT_STORE}/"):
        DEFAULT_STORE.mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        _prepare_sqlite(Path(uri.removeprefix("sqlite:///")))
    elif uri.startswith(("http://", "https://")):
        # MLflow's own default (7 retries, backoff factor 2) waits about four minutes per call
        # before it gives up on a server that is down; these give up after about ten seconds.
        for name, value in HTTP_RETRIES.items():
            os.environ.setdefault(name, value)
        MlflowClient().search_experiments(max_results=1)


HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _prepare_sqlite(db: Path) -> None:
    """Create or upgrade the store's tables under a file lock, then turn on write-ahead logging.

    Two trainings that start at once on a new store would otherwise both run MLflow's migrations and
    one would crash ("table ... already exists"); with WAL, readers do not wait for a writer, and
    writers wait for each other (MLflow sets a 20 s busy timeout) instead of failing."""
    import sqlite3
    from contextlib import closing

    from mlflow.utils.file_utils import ExclusiveFileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with ExclusiveFileLock(f"{db}.lock"):
        MlflowClient().search_experiments(max_results=1)  # the tracking store creates its tables
        MlflowClient().search_registered_models(max_results=1)  # the registry checks them
        with closing(sqlite3.connect(db, timeout=30)) as con:
            con.execute("PRAGMA journal_mode=WAL")


def experiment_id(name: str) -> str:
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        # Artifacts beside the database; MLflow's own default is ./mlruns under whatever the
        # current directory of the process happens to be.
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # created by a training started at the same time


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


def log_params(run_id: str, params: dict[str, Any]) -> None:
    MlflowClient().log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(pd.Timestamp.now().timestamp() * 1000)
    MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def epoch_logger(run_id: str):
    """A Keras callback that records `loss` and `val_loss` with step = epoch (1-based) as training runs."""
    import keras

    class EpochMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept = {k: v for k, v in (logs or {}).items() if k in ("loss", "val_loss")}
            log_metrics(run_id, kept, step=epoch + 1)

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
    MlflowClient().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     tags=[InputTag("mlflow.data.context", "training")])])


def log_model(run_id: str, keras_model, spec: dict, input_example: pd.DataFrame, output_example: pd.DataFrame) -> str:
    """Log the pyfunc forecaster (Keras model + spec + this package's code); returns its model URI."""
    import keras
    import numpy as np
    import pandera
    import tensorflow as tf
    from mlflow.models import infer_signature

    from tasks.pyfunc import LSTMForecaster

    with tempfile.TemporaryDirectory() as tmp:
        model_path, spec_path = Path(tmp, "model.keras"), Path(tmp, "spec.json")
        keras_model.save(model_path)
        spec_path.write_text(json.dumps(spec, indent=2))
        info = mlflow.models.Model.log(
            artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
            python_model=LSTMForecaster(),
            artifacts={"keras_model": str(model_path), "spec": str(spec_path)},
            code_paths=[str(CODE_DIR)],
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"tensorflow-cpu=={tf.__version__}",
                              f"keras=={keras.__version__}", f"pandas=={pd.__version__}",
                              f"numpy=={np.__version__}", f"pandera=={pandera.__version__}"],
        )
    return info.model_uri


def register_model(model_uri: str, name: str, run_id: str) -> str:
    """A new version of the registered model; returns its version number."""
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    return str(version.version)


def _registry_error(name: str, what: str) -> InputError:
    """`what` is missing from model `name`: the problem names the versions that do exist."""
    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
    present = f"versions present: {', '.join(map(str, versions))}" if versions else "no model of that name is registered"
    return InputError([Problem(f"model {name!r}: {what} ({present})", "check the name, version or alias (mlflow ui: Models)")])


def model_version(name: str, version: str):
    """A registered model version (MLflow's ModelVersion), or InputError."""
    try:
        return MlflowClient().get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise _registry_error(name, f"no version {version}") from None


def resolve_model_uri(uri: str):
    """The model version behind `models:/NAME@ALIAS` or `models:/NAME/VERSION`; None for other URIs
    (runs:/..., a folder), which are loaded as they are."""
    if not uri.startswith("models:/"):
        return None
    found = re.fullmatch(r"models:/([^/@]+)(?:@([^/@]+)|/(\d+))", uri)
    if found is None:
        raise InputError([Problem(f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION",
                                  "e.g. models:/lstm-forecaster@champion")])
    name, alias, version = found.groups()
    if version:
        return model_version(name, version)
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        raise _registry_error(name, f"no version has the alias {alias!r}") from None


def logged_model_id(version) -> str | None:
    """MLflow 3's id of the logged model behind a registered version (whose source is models:/<id>)."""
    source = version.source or ""
    return version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def load_pyfunc(uri: str):
    """The logged pyfunc at `uri` (loaded with this process's code), or InputError."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise InputError([Problem(f"cannot load model {uri}: {str(exc).splitlines()[0]}",
                                  "pass a registered model, e.g. models:/lstm-forecaster@champion")]) from exc


def actor() -> str:
    """Who changes the registry, for its audit tags."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        MlflowClient().set_tag(run_id, key, value)


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        MlflowClient().set_model_version_tag(name, version, key, str(value))


def _append_log(name: str, version: str, line: str) -> None:
    log = MlflowClient().get_model_version(name, version).tags.get("alias_log")
    set_version_tags(name, version, {"alias_log": f"{log}\n{line}" if log else line})


def move_alias(name: str, alias: str, version: str, reason: str, tags: dict[str, str] | None = None) -> None:
    """Point `alias` at `version`. Who, when and why go on the version's tags (`{alias}_by`, `{alias}_at`,
    `{alias}_reason`, plus `tags`) and, one line per change, into the `alias_log` tag of this version and
    of the one that held the alias before: the registry's audit trail."""
    before = alias_run(name, alias)
    when, who = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"), actor()
    MlflowClient().set_registered_model_alias(name, alias, version)
    set_version_tags(name, version, {f"{alias}_by": who, f"{alias}_at": when, f"{alias}_reason": reason, **(tags or {})})
    _append_log(name, version, f"{when} {alias} set by {who}: {reason}")
    if before and before[0] != version:
        _append_log(name, before[0], f"{when} {alias} moved to version {version} by {who}: {reason}")


def drop_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)


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


def end_run(run_id: str, ok: bool) -> None:
    MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


def last_training_digest(experiment: str) -> str | None:
    """The data digest of the newest successful training run in `experiment`, if any."""
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = MlflowClient().search_runs([found.experiment_id], "tags.run_type = 'train' and attributes.status = 'FINISHED'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.params.get("data.digest") if runs else None


def alias_run(model_name: str, alias: str = "champion") -> tuple[str, str] | None:
    """(version, run_id) of the model version holding `alias`, or None."""
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return str(version.version), version.run_id


def load_dict(run_id: str, filename: str) -> dict | None:
    """A JSON/YAML artifact of a run, or None when the run has no such file."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{filename}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None


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
    runs = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000) if experiments else []
    return [(run.info.run_id, run.data.tags) for run in runs]


def kill_run(run_id: str, why: str) -> bool:
    """Mark a run KILLED, with `why` in its `failure` tag, if it is still RUNNING (a run that ended
    meanwhile keeps its status); returns whether it was marked."""
    if MlflowClient().get_run(run_id).info.status != "RUNNING":
        return False
    MlflowClient().set_tag(run_id, "failure", why)
    MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    return True


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


def unreachable(error: BaseException) -> str | None:
    """A sentence for the user when `error` means the tracking server did not answer, else None."""
    import requests

    seen = error
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)):
            why = "connection refused" if "refused" in str(seen).lower() else type(seen).__name__
            retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
            return f"cannot reach the MLflow tracking server at {tracking_uri()} ({why}, after {retries} retries)"
        seen = seen.__cause__ or seen.__context__
    return None


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


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def track_run(run_id: str, params: dict, metrics: dict, dataset: dict, artifacts: dict, figures: dict,
              model: dict) -> str:
    """Record a finished run and register its model as the `challenger`; returns the new model version.

    Registration comes last, so a run that fails anywhere before it leaves no model version.
    """
    log_params(run_id, params)
    log_metrics(run_id, metrics)
    log_dataset(run_id, **dataset)
    for filename, data in artifacts.items():
        log_dict(run_id, data, filename)
    for filename, figure in figures.items():
        log_figure(run_id, figure, filename)
    uri = log_model(run_id, model["keras_model"], model["spec"], model["input_example"], model["output_example"])
    version = register_model(uri, model["name"], run_id)
    move_alias(model["name"], "challenger", version, f"new version from training run {run_id}")
    return version
