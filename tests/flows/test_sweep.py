"""Sweeps through the real command line: trials fitted side by side on a real local Dask cluster (and on a
`dask scheduler` with two `dask worker` processes reaching a real MLflow server), one child run each under
a parent run that holds the comparison; a failing trial recorded and the sweep going on; a sweep continued
by name without rerunning finished trials; the best registered and gated; bad spaces refused before any
training; Ctrl-C marking unfinished trials KILLED."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from servers import DaskCluster, MlflowServer

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CLI = Path(sys.executable).parent / "lstm-pipeline"
TINY = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
        "window.horizon=6", "model.layers=1", "train.epochs=2", "train.batch_size=32", "train.patience=0"]


def sweep(data: Path, space: Path, *args: str, env: dict, experiment: str, extra: tuple[str, ...] = (),
          **popen) -> subprocess.Popen | subprocess.CompletedProcess:
    sets = [a for s in [*TINY, f"tracking.experiment={experiment}", f"registry.model_name={experiment}-model", *extra]
            for a in ("--set", s)]
    command = [str(CLI), "sweep", str(data), "--space", str(space), *args, *sets]
    if popen:
        # Ctrl-C as in a terminal: a command started in the background of a script inherits SIGINT ignored,
        # and Python then leaves it ignored (so would this one, were the tests started that way).
        return subprocess.Popen(command, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def children(client: MlflowClient, parent: str) -> list:
    run = client.get_run(parent)
    return client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")


def parent_of(client: MlflowClient, experiment: str, name: str):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.run_type = 'sweep' and tags.sweep_name = '{name}'")[0]


@pytest.fixture(scope="module")
def failing_space(tmp_path_factory) -> Path:
    """Two trials; the learning rate of the second makes its loss NaN at once."""
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text("model.units: [4]\ntrain.learning_rate: [0.01, 1.0e+30]\n")
    return path


@pytest.fixture(scope="module")
def first_sweep(cli_env, valid_workbook, failing_space):
    done = sweep(valid_workbook, failing_space, "--name", "grid", "--workers", "2", env=cli_env, experiment="sweep-test")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_each_trial_is_a_child_run_logged_as_a_training_run_is(first_sweep):
    client = MlflowClient()
    parent = parent_of(client, "sweep-test", "grid")
    trials = {r.info.run_name: r for r in children(client, parent.info.run_id)}
    assert set(trials) == {"u4-lr0.01", "u4-lr1e+30"}
    good = trials["u4-lr0.01"]
    assert good.info.status == "FINISHED" and good.data.tags["run_type"] == "trial"
    for key in ("val_mse", "start_val_mse", "test_mse", "test_mae", "repeat_test_mse", "seasonal_naive_test_mse"):
        assert key in good.data.metrics, key
    assert good.data.params["train.learning_rate"] == "0.01" and good.data.params["window.input_length"] == "24"
    assert [m.step for m in client.get_metric_history(good.info.run_id, "val_loss")] == [1, 2]
    assert {"forecast.png", "loss_curves.png", "config.yaml"} <= {a.path for a in client.list_artifacts(good.info.run_id)}
    assert good.data.tags["model_uri"].startswith("models:/")  # the chosen trial's, logged in full


def test_the_workers_lines_reach_the_commands_console(first_sweep):
    """The workers start while the command imports TensorFlow, when its stderr passes through a filter for a
    moment; a worker started then would write its lines (a trial's epochs, its errors) there, unseen."""
    assert "epoch 2/2" in first_sweep.stderr


def test_a_failing_trial_is_recorded_failed_with_its_reason_and_the_sweep_goes_on(first_sweep):
    client = MlflowClient()
    parent = parent_of(client, "sweep-test", "grid")
    bad = next(r for r in children(client, parent.info.run_id) if r.info.run_name == "u4-lr1e+30")
    assert bad.info.status == "FAILED"
    assert "FitFailed" in bad.data.tags["failure"] and "the training loss became nan" in bad.data.tags["failure"]
    assert parent.info.status == "FINISHED"
    assert "2/2  trial" in first_sweep.stderr + first_sweep.stdout and "FAILED (FitFailed" in first_sweep.stderr


def test_the_parent_run_holds_the_comparison_and_chooses_on_val(first_sweep):
    client = MlflowClient()
    parent = parent_of(client, "sweep-test", "grid")
    good = next(r for r in children(client, parent.info.run_id) if r.info.status == "FINISHED")
    assert parent.data.tags["best_run_id"] == good.info.run_id and parent.data.tags["best_trial"] == "u4-lr0.01"
    assert parent.data.metrics["best_val_mse"] == pytest.approx(good.data.metrics["val_mse"])
    assert parent.data.params["space.train.learning_rate"] == "[0.01, 1.0e+30]"
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "space.json", "objective_by_setting.png", "val_loss_curves.png", "best_forecasts.png"} <= files
    table = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/trials.csv")))
    assert list(table["name"]) == ["u4-lr0.01", "u4-lr1e+30"] and list(table["status"]) == ["FINISHED", "FAILED"]
    assert f"best u4-lr0.01 val_mse {good.data.metrics['val_mse']:.4f}" in first_sweep.stdout
    # where to compare the trials: the experiment's runs table (not MLflow 3's GenAI overview)
    assert f"#/experiments/{parent.info.experiment_id}?workflowType=machine_learning" in first_sweep.stdout


def test_trials_are_task_runs_of_the_sweeps_flow_run(first_sweep, prefect_server):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    parent = parent_of(MlflowClient(), "sweep-test", "grid")

    async def names():
        async with get_client() as client:
            flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[parent.data.tags["prefect_flow_run_id"]]))
            return {t.name for t in await client.read_task_runs(flow_run_filter=flow_filter)}

    assert {"u4-lr0.01", "u4-lr1e+30"} <= asyncio.run(names())


def test_a_sweep_continued_by_name_reruns_only_unfinished_trials_and_registers_the_best(
        first_sweep, cli_env, valid_workbook, failing_space):
    client = MlflowClient()
    parent = parent_of(client, "sweep-test", "grid").info.run_id
    again = sweep(valid_workbook, failing_space, "--name", "grid", "--register", "best", env=cli_env,
                  experiment="sweep-test", extra=("promotion.require_beat_repeat=false",))
    assert again.returncode == 0, again.stderr[-3000:]
    assert parent_of(client, "sweep-test", "grid").info.run_id == parent  # the same parent run, continued
    runs = children(client, parent)
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("u4-lr0.01", "FINISHED"), ("u4-lr1e+30", "FAILED"), ("u4-lr1e+30", "FAILED")]
    best = next(r for r in runs if r.info.status == "FINISHED")
    versions = client.search_model_versions("name='sweep-test-model'")
    assert [v.run_id for v in versions] == [best.info.run_id]
    assert "model: sweep-test-model version 1" in again.stdout and "promotion: version 1 promoted" in again.stdout


@pytest.mark.parametrize("text, message", [
    ("model.unitz: [4, 8]\n", "'model.unitz' is not a setting; use one of: model.layers, model.units"),
    ("window.input_length: [24, 700]\n", "trial L700 needs"),
])
def test_a_bad_space_ends_with_exit_2_before_any_training(cli_env, valid_workbook, tmp_path, text, message):
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    done = sweep(valid_workbook, space, env=cli_env, experiment="sweep-bad")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    found = MlflowClient().get_experiment_by_name("sweep-bad")
    assert found is None or MlflowClient().search_runs([found.experiment_id]) == []


def test_ctrl_c_ends_the_sweep_and_marks_unfinished_trials_killed(cli_env, valid_workbook, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("model.units: [4, 8, 16]\n")
    # Epochs enough that no trial ends before the signal, however slow a busy machine makes the polling.
    proc = sweep(valid_workbook, space, "--name", "stopped", env=cli_env, experiment="sweep-stopped",
                 extra=("train.epochs=100000",), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = MlflowClient()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until a trial has logged an epoch
        found = client.get_experiment_by_name("sweep-stopped")
        running = client.search_runs([found.experiment_id], "tags.run_type = 'trial'") if found else []
        if any(client.get_metric_history(r.info.run_id, "loss") for r in running):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-3000:]
    parent = parent_of(client, "sweep-stopped", "stopped")
    assert parent.info.status == "KILLED"
    trials = children(client, parent.info.run_id)
    assert trials and all(r.info.status == "KILLED" for r in trials), [(r.info.run_name, r.info.status) for r in trials]
    assert all("stopped before this trial finished" in r.data.tags["failure"] for r in trials)


def test_a_remote_cluster_with_a_local_store_is_refused(cli_env, valid_workbook, failing_space):
    done = sweep(valid_workbook, failing_space, "--dask-address", "tcp://127.0.0.1:1", env=cli_env,
                 experiment="sweep-refused")
    assert done.returncode == 2 and "cannot write to the local tracking store" in done.stderr
    assert "lstm-pipeline stack up" in done.stderr


def test_a_sweep_on_a_dask_scheduler_and_workers_that_reach_an_mlflow_server(cli_env, valid_workbook, tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    env = cli_env | {"MLFLOW_TRACKING_URI": server.url}
    cluster = DaskCluster(tmp_path, workers=2, env=env)
    try:
        space = tmp_path / "space.yaml"
        space.write_text("model.units: [4, 8]\n")
        done = sweep(valid_workbook, space, "--dask-address", cluster.address, "--name", "remote", env=env,
                     experiment="sweep-remote")
        assert done.returncode == 0, done.stderr[-3000:]
        # The workers fitted: the fit module came to them with their first trial.
        assert any(cluster.run(lambda: "tasks.runs.fit" in sys.modules).values())
    finally:
        cluster.stop()
    client = MlflowClient(server.url)
    try:
        trials = children(client, parent_of(client, "sweep-remote", "remote").info.run_id)
        assert sorted((r.info.run_name, r.info.status) for r in trials) == [("u4", "FINISHED"), ("u8", "FINISHED")], \
            [r.data.tags.get("failure") for r in trials]
        # Only the chosen trial's model is logged in full, by a worker, from the parts every trial keeps.
        best, other = sorted(trials, key=lambda r: r.data.metrics["val_mse"])
        assert "model_uri" not in other.data.tags
        for run in (best, other):
            assert {"model.keras", "spec.json", "input_example.pkl", "output_example.pkl"} == {
                Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model_parts")}
        parts = Path(mlflow.artifacts.download_artifacts(f"runs:/{best.info.run_id}/model_parts", tracking_uri=server.url,
                                                         dst_path=str(tmp_path)))
        before = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(server.url)
        try:
            logged = mlflow.pyfunc.load_model(best.data.tags["model_uri"])
        finally:
            mlflow.set_tracking_uri(before)
        pd.testing.assert_frame_equal(logged.predict(pd.read_pickle(parts / "input_example.pkl")),
                                      pd.read_pickle(parts / "output_example.pkl"))
    finally:
        server.stop()


def test_a_sweep_scored_by_backtest_chooses_on_the_folds_mean_val_mse(cli_env, valid_workbook, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("model.units: [4]\n")
    done = sweep(valid_workbook, space, "--objective", "backtest", "--folds", "2", "--name", "scored", env=cli_env,
                 experiment="sweep-backtest")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    parent = parent_of(client, "sweep-backtest", "scored")
    (trial,) = children(client, parent.info.run_id)
    folds = children(client, trial.info.run_id)
    assert sorted(f.info.run_name for f in folds) == ["u4-fold-1", "u4-fold-2"]
    assert all(f.info.status == "FINISHED" and "fold.origin" in f.data.params for f in folds)
    mean_val = sum(f.data.metrics["val_mse"] for f in folds) / 2
    assert trial.data.metrics["val_mse"] == pytest.approx(mean_val) == trial.data.metrics["backtest_val_mse"]
    assert trial.data.metrics["backtest_mse"] == pytest.approx(sum(f.data.metrics["test_mse"] for f in folds) / 2)
    assert parent.data.metrics["best_val_mse"] == pytest.approx(mean_val) and parent.data.params["sweep.objective"] == \
        "backtest of 2 folds"
    refused = sweep(valid_workbook, space, "--objective", "backtest", "--register", "best", env=cli_env,
                    experiment="sweep-backtest")
    assert refused.returncode == 2 and "--register best needs --objective val" in refused.stderr
    # Continued by name, it keeps its objective: a trial scored by folds has no model to log as the chosen one.
    other = sweep(valid_workbook, space, "--name", "scored", env=cli_env, experiment="sweep-backtest")
    assert other.returncode == 2 and "sweep 'scored'" in other.stderr and "was scored by backtest of 2 folds, not val" \
        in other.stderr, other.stderr[-2000:]
