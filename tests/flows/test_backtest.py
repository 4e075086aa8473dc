"""Backtests through the real command line on a real local Dask cluster: one child run per fold under a
parent whose scores are the means of the folds'; folds that see no rows at or after their origin and
normalize with their own train rows; --refit once; too few rows refused before any training."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CLI = Path(sys.executable).parent / "lstm-pipeline"
TINY = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
        "window.horizon=6", "model.layers=1", "model.units=4", "train.epochs=2", "train.batch_size=32",
        "train.patience=0"]


def backtest(data: Path, *args: str, env: dict, experiment: str) -> subprocess.CompletedProcess:
    sets = [a for s in [*TINY, f"tracking.experiment={experiment}"] for a in ("--set", s)]
    return subprocess.run([str(CLI), "backtest", str(data), *args, *sets], env=env, capture_output=True, text=True,
                          timeout=900)


def runs_of(experiment: str) -> tuple:
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    every = client.search_runs([found.experiment_id])
    parent = next(r for r in every if r.data.tags.get("run_type") == "backtest")
    folds = sorted((r for r in every if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                   key=lambda r: r.info.run_name)
    return parent, folds


@pytest.fixture(scope="module")
def every(cli_env, valid_workbook):
    done = backtest(valid_workbook, "--folds", "3", env=cli_env, experiment="backtest-every")
    assert done.returncode == 0, done.stderr[-3000:]
    return (done, *runs_of("backtest-every"))


def test_each_fold_is_a_child_run_scored_on_its_own_windows(every):
    done, parent, folds = every
    assert [f.info.run_name for f in folds] == ["fold-1", "fold-2", "fold-3"]
    # 720 rows, test split 144 rows ending at row 720: folds at 288, 432, 576.
    assert [f.data.params["fold.origin"] for f in folds] == ["288", "432", "576"]
    for fold in folds:
        origin = int(fold.data.params["fold.origin"])
        assert fold.info.status == "FINISHED" and fold.data.tags["run_type"] == "fold"
        # trained and validated only on the rows before its origin, and given no rows after its own
        assert int(fold.data.params["rows.train"]) + int(fold.data.params["rows.val"]) == origin
        assert int(fold.data.params["rows.test"]) == 144 and int(fold.data.params["rows.total"]) == origin + 144
        assert [m.step for m in MlflowClient().get_metric_history(fold.info.run_id, "loss")] == [1, 2]
        assert {"forecast.png", "scaler.json"} <= {a.path for a in MlflowClient().list_artifacts(fold.info.run_id)}
    assert "3 of 3 folds finished" in done.stderr
    assert f"#/experiments/{parent.info.experiment_id}?workflowType=machine_learning" in done.stdout


def test_each_fold_normalizes_with_its_own_train_rows(every, valid_workbook):
    _, _, folds = every
    target = pd.read_excel(valid_workbook, engine="calamine")["OT"].to_numpy()
    for fold in folds:
        scaler = mlflow.artifacts.load_dict(f"runs:/{fold.info.run_id}/scaler.json")
        train = target[:int(fold.data.params["rows.train"])]
        assert scaler["mean"][0] == pytest.approx(train.mean(), rel=1e-9)
        assert scaler["std"][0] == pytest.approx(train.std(), rel=1e-9)
    assert len({mlflow.artifacts.load_dict(f"runs:/{f.info.run_id}/scaler.json")["mean"][0] for f in folds}) == 3


def test_parent_scores_are_the_means_of_the_folds(every):
    done, parent, folds = every
    m = parent.data.metrics
    for name, child in (("backtest_mse", "test_mse"), ("backtest_mae", "test_mae"),
                        ("repeat_backtest_mse", "repeat_test_mse"),
                        ("seasonal_naive_backtest_mse", "seasonal_naive_test_mse")):
        assert m[name] == pytest.approx(np.mean([f.data.metrics[child] for f in folds]), rel=1e-9), name
    assert m["backtest_mse_std"] == pytest.approx(np.std([f.data.metrics["test_mse"] for f in folds], ddof=1))
    by_step = MlflowClient().get_metric_history(parent.info.run_id, "backtest_mse_by_step")
    assert [s.step for s in sorted(by_step, key=lambda s: s.step)] == [1, 2, 3, 4, 5, 6]
    assert {"folds.csv", "backtest_forecasts.png"} <= {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)}
    assert parent.data.tags["run_type"] == "backtest" and parent.info.status == "FINISHED"
    assert MlflowClient().search_model_versions() == [] or all(
        v.run_id not in {parent.info.run_id, *(f.info.run_id for f in folds)} for v in MlflowClient().search_model_versions())


def test_refit_once_fits_one_model_before_the_first_origin_for_every_fold(every, cli_env, valid_workbook):
    _, _, folds_every = every
    done = backtest(valid_workbook, "--folds", "3", "--refit", "once", env=cli_env, experiment="backtest-once")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refit once: one model, fitted before the first origin, scores every fold" in done.stderr
    parent, children = runs_of("backtest-once")
    fit = next(c for c in children if c.info.run_name == "refit-once")
    folds = [c for c in children if c.info.run_name != "refit-once"]
    assert len(folds) == 3 and all(f.data.tags["fitted_by"] == fit.info.run_id for f in folds)
    assert int(fit.data.params["rows.train"]) + int(fit.data.params["rows.val"]) == 288  # before the first origin
    # The first fold sees the same model and rows either way (forecast in other batches: float rounding).
    assert folds[0].data.metrics["test_mse"] == pytest.approx(folds_every[0].data.metrics["test_mse"], rel=1e-4)
    assert parent.data.metrics["backtest_mse"] == pytest.approx(np.mean([f.data.metrics["test_mse"] for f in folds]))


def test_too_few_rows_for_the_folds_end_with_exit_2_before_any_training(cli_env, valid_workbook):
    done = backtest(valid_workbook, "--folds", "5", env=cli_env, experiment="backtest-short")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "a backtest of 5 folds of 144 rows needs" in done.stderr and "the data has 720" in done.stderr
    assert "lower --folds or --fold-size" in done.stderr
    assert MlflowClient().get_experiment_by_name("backtest-short") is None or not MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("backtest-short").experiment_id])


def test_failed_folds_are_recorded_with_their_reason_and_the_parent_says_how_many_finished(cli_env, valid_workbook):
    done = backtest(valid_workbook, "--folds", "2", "--set", "train.learning_rate=1.0e+30", env=cli_env,
                    experiment="backtest-failing")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: none of the 2 folds finished (folds.csv on run" in done.stderr
    parent, folds = runs_of("backtest-failing")
    assert parent.info.status == "FAILED" and parent.data.metrics["folds_finished"] == 0
    assert [f.info.status for f in folds] == ["FAILED", "FAILED"]
    assert all("the training loss became nan" in f.data.tags["failure"] for f in folds)
    table = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/folds.csv")))
    assert list(table["status"]) == ["FAILED", "FAILED"] and table["failure"].str.contains("FitFailed").all()
