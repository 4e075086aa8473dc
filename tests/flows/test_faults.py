"""Faults in the middle of a run, done for real: a training process killed with SIGKILL, a training task
that crashes and is retried by Prefect, a tracking server that goes away, two trainings at once on the
default SQLite store."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid

import keras
import pytest
from mlflow.tracking import MlflowClient
from processes import TINY, Train, store_client
from servers import MlflowServer

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _training_run(client: MlflowClient, experiment: str, timeout: float = 300) -> str:
    """The id of the experiment's RUNNING run once it has logged an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'") if found else []
        for run in runs:
            if client.get_metric_history(run.info.run_id, "loss"):
                return run.info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no training run of {experiment} logged an epoch within {timeout} s")


def _settings(**sections):
    from tasks.settings import load_settings

    return load_settings(None, [*TINY, *(f"{k.replace('__', '.')}={v}" for k, v in sections.items())])


def test_a_killed_training_is_marked_killed_and_the_next_one_works(cli_env, valid_workbook):
    from flows.train import train_flow

    client = MlflowClient()
    training = Train(valid_workbook, "train.epochs=500", "tracking.experiment=faults-kill",
                     "registry.model_name=faults-kill-model", env=cli_env)
    try:
        killed = _training_run(client, "faults-kill")
    finally:
        os.kill(training.proc.pid, signal.SIGKILL)
    assert training.wait()[0] == -signal.SIGKILL
    assert client.get_run(killed).info.status == "RUNNING"  # nobody could say otherwise, until:

    result = train_flow(str(valid_workbook), _settings(train__epochs=1, tracking__experiment="faults-kill",
                                                       registry__model_name="faults-kill-model"))
    marked = client.get_run(killed)
    assert marked.info.status == "KILLED"
    assert f"pid {training.proc.pid} on {socket.gethostname()}" in marked.data.tags["failure"]
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert [v.run_id for v in client.search_model_versions("name='faults-kill-model'")] == [result.run_id]


class CrashOnce(keras.callbacks.Callback):
    """Raises at the start of epoch `at`, the first time only: the training process failing mid-way."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.crashed = at, False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at and not self.crashed:
            self.crashed = True
            raise RuntimeError(f"crash at the start of epoch {epoch}")


class EpochsBegun(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begun = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


@pytest.fixture(scope="module")
def training_data(valid_workbook):
    from tasks.data.ingest import read_table
    from tasks.data.validate import validate_table
    from tasks.prepare.normalize import normalize_series
    from tasks.prepare.split import split_bounds
    from tasks.prepare.window import Stack

    settings = _settings(train__epochs=4)
    series, _ = validate_table(read_table(valid_workbook, settings.data), settings, "test")
    bounds = split_bounds(len(series), settings.split)
    return settings, Stack.of(normalize_series.fn([series], [bounds])[1], [bounds])


@pytest.mark.parametrize("resume", [True, False], ids=["with-backup", "without-backup"])
def test_a_retried_training_task_resumes_from_the_last_finished_epoch(prefect_server, training_data, resume):
    from prefect import flow

    from tasks.model.train import train_model
    from tasks.runs.fit import backup_dir

    settings, stack = training_data
    backup = backup_dir(f"test-{uuid.uuid4().hex}") if resume else None
    begun = EpochsBegun()

    @flow
    def train_with_a_crash():
        return train_model(stack, settings, [begun, CrashOnce(at=2)], backup)

    _, history = train_with_a_crash()
    # Epochs 0 and 1 finished before the crash; the retry (Prefect's, retries=1) picks up at 2.
    assert begun.begun == ([0, 1, 2, 2, 3] if resume else [0, 1, 2, 0, 1, 2, 3])
    assert len(history["loss"]) == (2 if resume else 4)
    assert backup is None or not backup.exists()  # removed once the training finished


def test_backups_are_kept_per_mlflow_run():
    from tasks.runs.fit import backup_dir

    assert backup_dir("a") != backup_dir("b") and backup_dir("a").parent == backup_dir("b").parent


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    yield server
    server.stop()


def test_losing_the_tracking_server_fails_clearly_and_registers_nothing(mlflow_server, cli_env, valid_workbook):
    from tasks.tracking import runs, store

    names = ["tracking.experiment=faults-server", "registry.model_name=faults-server-model"]
    # Few retries keep the test short; the default (3, backoff 1 s) takes about 10 s more per call.
    env = cli_env | {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
    mlflow_server.start()
    training = Train(valid_workbook, "train.epochs=500", *names, env=env)
    try:
        lost = _training_run(store_client(mlflow_server.url), "faults-server")
    finally:
        mlflow_server.stop()
    code, _, err = training.wait()
    assert code == 1, err[-3000:]
    assert f"error: cannot reach the MLflow tracking server at {mlflow_server.url}" in err and "Traceback" not in err
    client = store_client(f"sqlite:///{mlflow_server.db}")
    assert client.search_model_versions("name='faults-server-model'") == []
    assert client.get_run(lost).info.status == "RUNNING"  # the server was gone: nobody could mark it

    # A training started while the server is down fails before it opens a run.
    code, _, err = Train(valid_workbook, "train.epochs=1", *names, env=env).wait()
    assert code == 1 and "cannot reach the MLflow tracking server" in err and "Traceback" not in err
    assert len(client.search_runs([client.get_experiment_by_name("faults-server").experiment_id])) == 1

    # With the server back, the next training's first step marks the lost run.
    mlflow_server.start()
    try:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_server.url
        store.connect()
        assert runs.close_stale_runs("faults-server") == [lost]
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = cli_env["MLFLOW_TRACKING_URI"]
        store.connect()
    assert client.get_run(lost).info.status == "KILLED"


def test_two_trainings_at_once_on_the_default_sqlite_store_are_both_recorded(tmp_path, cli_env, valid_workbook):
    env = {k: v for k, v in cli_env.items() if k != "MLFLOW_TRACKING_URI"}  # the default: ./mlruns/mlflow.db
    names = ["train.epochs=1", "tracking.experiment=faults-together", "registry.model_name=faults-together-model"]
    trainings = [Train(valid_workbook, *names, env=env, cwd=tmp_path) for _ in range(2)]
    results = [training.wait() for training in trainings]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "database is locked" not in err
    store = store_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = store.search_runs([store.get_experiment_by_name("faults-together").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert sorted(int(v.version) for v in store.search_model_versions("name='faults-together-model'")) == [1, 2]
    assert {r.info.run_id for r in runs} == {line.split()[1] for _, out, _ in results
                                             for line in out.splitlines() if line.startswith("run_id:")}
