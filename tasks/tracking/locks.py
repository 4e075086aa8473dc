"""One registry change at a time per model name, across processes: a gate decision, a forced promotion, a
rollback or a new challenger holds this lock from reading the aliases to writing them and their audit record.

With a Prefect server (PREFECT_API_URL set) the lock is a Prefect global concurrency limit of one slot named
after the model, shared by every process and machine that uses that server. Without one, or with the
command's own temporary server (services/tempserver.py names its address in TEMPORARY_API), which no
other command sees, it is a file lock beside the local SQLite store; for another store (a tracking
server, PostgreSQL) it sits in the temporary folder and serializes this machine only.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMPORARY_API = "LSTM_PIPELINE_TEMPORARY_PREFECT_API"  # set by services/tempserver.py, inherited by children
WAIT_SECONDS = 600  # a gate under the lock loads and scores two models: seconds, even on a busy machine


def limit_name(model_name: str) -> str:
    """The global concurrency limit of `model_name` (Prefect refuses / % & > < in names)."""
    return "mlflow-registry-" + re.sub(r"[^\w.-]", "-", model_name)


def lock_path(model_name: str, uri: str | None = None) -> Path:
    """The lock file of `model_name`: beside a SQLite store's database, else in the temporary folder."""
    from tasks.tracking.store import (
        tracking_uri,  # imports MLflow, which the temporary server does without
    )

    uri = uri or tracking_uri()
    safe = re.sub(r"[^\w.-]", "-", model_name)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return db.parent / f"{db.name}.registry-{safe}.lock"
    store = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"lstm-pipeline-registry-{store}-{safe}.lock"


@contextmanager
def registry_lock(model_name: str) -> Iterator[None]:
    """Hold the registry of `model_name` (TimeoutError after WAIT_SECONDS)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() and PREFECT_API_URL.value() != os.environ.get(TEMPORARY_API):
        with _prefect_limit(model_name):
            yield
    else:
        from filelock import FileLock

        path = lock_path(model_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path, timeout=WAIT_SECONDS):
            yield


@contextmanager
def _prefect_limit(model_name: str) -> Iterator[None]:
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = limit_name(model_name)
    # A limit that does not exist is skipped by `concurrency` (with a warning), so make sure it does.
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, 1)
        except ObjectAlreadyExists:
            pass  # another process created it between the upsert's read and its create
    with concurrency(name, occupy=1, timeout_seconds=WAIT_SECONDS, strict=True):
        yield
