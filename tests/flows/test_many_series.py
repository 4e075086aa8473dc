"""Many series, one model, through the real command line: a wide sheet (a column per series) and a long one
(an id column) trained, forecast, promoted and served as one global model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from servers import free_port
from test_serving import BIN, invoke, serving, without_venv_on_path

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = ["--set", "window.input_length=24", "--set", "window.horizon=6", "--set", "train.epochs=2",
        "--set", "split.train=0.6", "--set", "split.val=0.2", "--set", "split.test=0.2", "--set", "model.units=8"]
WIDE = ["OT", "HUFL", "MUFL"]


def cli(*args, env: dict, experiment: str, model: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args), *TINY,
                           "--set", f"tracking.experiment={experiment}", "--set", f"registry.model_name={model}"],
                          capture_output=True, text=True, timeout=600, env=env)


def artifact_text(run_id: str, path: str) -> str:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)).read_text()


def run_id_of(done: subprocess.CompletedProcess) -> str:
    return next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("run_id:"))


@pytest.fixture(scope="module")
def wide(cli_env, valid_workbook):
    """One model over three columns of the ETTh1 excerpt (wide format), version 1 and champion."""
    done = cli("train", valid_workbook, "--target", ",".join(WIDE), env=cli_env, experiment="many-wide",
               model="many-wide")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_id_of(done), done


def test_a_wide_sheet_trains_one_model_reported_per_series(wide):
    run_id, done = wide
    run = MlflowClient().get_run(run_id)
    metrics = run.data.metrics
    each = {s: metrics[f"test_mse.{s}"] for s in WIDE}
    # Every series has as many test windows here, so the overall figure is their plain mean.
    assert metrics["test_mse"] == pytest.approx(sum(each.values()) / 3)
    table = pd.read_csv(pd.io.common.StringIO(artifact_text(run_id, "series.csv")))
    assert table["series"].tolist() == WIDE
    assert table.set_index("series")["test_mse"].to_dict() == pytest.approx(each)
    assert (table["rows_train"] == 432).all() and table["repeat_test_mse"].notna().all()
    assert {"series_forecasts.png", "forecast.png", "loss_curves.png"} <= {
        a.path for a in MlflowClient().list_artifacts(run_id)}
    assert run.data.params["data.series_count"] == "3" and "series: 3, one model" in done.stdout


def test_each_series_is_normalized_with_its_own_train_rows(wide, valid_workbook):
    run_id, _ = wide
    scalers = mlflow.artifacts.load_dict(f"runs:/{run_id}/scaler.json")
    frame = pd.read_excel(valid_workbook, engine="calamine")
    for series in WIDE:
        train = frame[series].iloc[:432]  # split.train=0.6 of 720 rows
        assert scalers[series]["mean"][0] == pytest.approx(train.mean())
        assert scalers[series]["std"][0] == pytest.approx(train.std(ddof=0))


def test_forecast_writes_every_series_h_rows_after_the_data(wide, cli_env, valid_workbook, tmp_path):
    out = tmp_path / "f.csv"
    done = cli("forecast", valid_workbook, "--model", "models:/many-wide/1", "--out", out, env=cli_env,
               experiment="many-wide", model="many-wide")
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out, parse_dates=["timestamp"])
    assert list(table.columns) == ["series", "timestamp", "forecast", "lower", "upper"]
    assert table.groupby("series").size().to_dict() == {s: 6 for s in WIDE}
    assert (table["timestamp"] > pd.Timestamp("2016-07-30 23:00")).all()
    assert (table["lower"] < table["forecast"]).all() and (table["forecast"] < table["upper"]).all()
    assert out.with_suffix(".png").stat().st_size > 0


def test_served_predictions_equal_pyfunc_predictions_for_every_series(wide, valid_workbook, tmp_path):
    uri, port = "models:/many-wide/1", free_port()
    latest = pd.read_excel(valid_workbook, engine="calamine").tail(30)[["date", *WIDE]]
    expected = mlflow.pyfunc.load_model(uri).predict(latest)
    command = [str(BIN / "lstm-pipeline"), "serve", "--model", uri, "--port", str(port)]
    with serving(command, without_venv_on_path(), tmp_path / "serve.log", port) as url:
        served = invoke(url, latest)
    assert served["series"].tolist() == expected["series"].tolist() == [s for s in WIDE for _ in range(6)]
    assert (pd.to_datetime(served["timestamp"]) == expected["timestamp"]).all()
    pd.testing.assert_frame_equal(served.drop(columns=["series", "timestamp"]),
                                  expected.drop(columns=["series", "timestamp"]), rtol=1e-6)


def test_a_challenger_of_other_series_is_not_compared_and_the_champion_stays(wide, cli_env, valid_workbook):
    done = cli("train", valid_workbook, "--target", "OT,HUFL", env=cli_env, experiment="many-wide",
               model="many-wide")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "version 2 not_compared: champion and challenger forecast other series" in done.stdout
    assert str(MlflowClient().get_model_version_by_alias("many-wide", "champion").version) == "1"
    # The same series in another order are the same series: the gate scores them.
    again = cli("train", valid_workbook, "--target", "MUFL,OT,HUFL", env=cli_env, experiment="many-wide",
                model="many-wide")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "version 3 kept: challenger MSE" in again.stdout or "version 3 promoted" in again.stdout, again.stdout


def test_a_long_sheet_leaves_out_bad_series_when_asked_and_forecasts_the_rest(cli_env, catalogue, tmp_path):
    long = catalogue["long_uneven"]
    refused = cli("train", long, "--series", "all", env=cli_env, experiment="many-long", model="many-long")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "series S: only 30 data rows" in refused.stderr and "series G, column 'date': 1 missing" in refused.stderr
    assert "2 of 4 series failed (S, G)" in refused.stderr and "data.skip_bad_series=true" in refused.stderr
    assert MlflowClient().search_model_versions("name='many-long'") == []  # nothing registered
    experiment = mlflow.get_experiment_by_name("many-long").experiment_id
    assert [r.info.status for r in MlflowClient().search_runs([experiment])] == ["FAILED"]

    done = cli("train", long, "--series", "all", "--set", "data.skip_bad_series=true", env=cli_env,
               experiment="many-long", model="many-long")
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = run_id_of(done)
    table = pd.read_csv(pd.io.common.StringIO(artifact_text(run_id, "series.csv")))
    assert table["series"].tolist() == ["A", "B", "S", "G"]
    assert table["rows"].tolist()[:2] == [720, 480]  # B starts later: its split is of its own rows
    assert table["skipped"].fillna("").str.contains("only 30 data rows").tolist() == [False, False, True, False]
    assert MlflowClient().get_run(run_id).data.params["data.skipped"] == "S, G"

    out = tmp_path / "f.csv"
    forecast = cli("forecast", long, "--model", "models:/many-long@champion", "--out", out, env=cli_env,
                   experiment="many-long", model="many-long")
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    assert pd.read_csv(out).groupby("series").size().to_dict() == {"A": 6, "B": 6}
