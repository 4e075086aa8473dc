"""The tracking store: which one (`MLFLOW_TRACKING_URI`, else SQLite under ./mlruns), made ready, and its experiments."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

DEFAULT_STORE = Path("mlruns")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the local SQLite store under ./mlruns."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE}/mlflow.db"


def connect(uri: str | None = None) -> None:
    """Point MLflow at the store (`uri`, else `tracking_uri()`), and create ./mlruns for the default one.
    A SQLite store is made ready for trainings that run at the same time; a tracking server must answer
    now, before any run starts."""
    uri = uri or tracking_uri()
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


# MLflow 3's UI opens an experiment by its kind: GenAI ones on an overview of traces, model training on
# the runs table. Without this tag it guesses, and guessed GenAI for ours (issue 14).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(name: str) -> str:
    """The experiment's id, created (with its kind) if it does not exist. An experiment without a kind, or
    with one the UI only inferred, is given ours; a kind somebody chose is left alone."""
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        kind = found.tags.get(KIND_TAG, "")
        if not kind or kind.endswith("_inferred"):
            client.set_experiment_tag(found.experiment_id, KIND_TAG, KIND)
        return found.experiment_id
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        # Artifacts beside the database; MLflow's own default is ./mlruns under whatever the
        # current directory of the process happens to be.
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags={KIND_TAG: KIND})
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # created by a training started at the same time


def runs_page(experiment_id: str) -> str:
    """The MLflow UI's table of the experiment's runs: on the tracking server, or where `make ui` serves the
    local store. MLflow 3.17's UI opens every experiment in its GenAI mode (an overview of traces) unless
    the address asks for `workflowType=machine_learning`; it does not read the experiment's kind for that."""
    uri = tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


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
