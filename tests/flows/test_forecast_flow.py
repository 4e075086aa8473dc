"""Forecasting with the champion: the file, its timestamps and intervals, the plot, the MLflow run, bad input."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.forecast import forecast_flow
from tasks.errors import InputError

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _champion_uri(champion_model) -> str:
    settings, _, _ = champion_model
    return f"models:/{settings.registry.model_name}@champion"


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_forecast_file_continues_the_data_with_intervals(champion_model, tmp_path, suffix):
    settings, data, trained = champion_model
    out = tmp_path / f"next{suffix}"
    result = forecast_flow(str(data), _champion_uri(champion_model), str(out), settings)

    written = pd.read_csv(out, parse_dates=["timestamp"]) if suffix == ".csv" else pd.read_excel(out)
    history = pd.read_excel(data, engine="calamine")
    assert list(written.columns) == ["timestamp", "forecast", "lower", "upper"] and len(written) == 6
    expected_times = pd.date_range(history["date"].iloc[-1], periods=7, freq="h")[1:]
    assert (written["timestamp"] == expected_times).all()
    assert (written["lower"] < written["forecast"]).all() and (written["forecast"] < written["upper"]).all()
    # The half-widths are the ones calibrated at training time, carried in the model.
    spec = mlflow.pyfunc.load_model(f"models:/{trained.model_name}/{trained.version}").unwrap_python_model().spec
    np.testing.assert_allclose(written["upper"] - written["forecast"], spec["interval"]["halfwidth"], rtol=1e-6)
    assert spec["interval"]["coverage"] == 0.9
    # The same numbers as the registered pyfunc's predict on the latest rows.
    predicted = mlflow.pyfunc.load_model(_champion_uri(champion_model)).predict(history.tail(24)[["date", "OT"]])
    np.testing.assert_allclose(written["forecast"], predicted["forecast"], rtol=1e-9)
    assert result.plot == out.with_suffix(".png") and result.plot.stat().st_size > 10_000


def test_forecast_run_is_linked_to_the_model_version(champion_model, tmp_path):
    settings, data, trained = champion_model
    result = forecast_flow(str(data), _champion_uri(champion_model), str(tmp_path / "f.csv"), settings)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["run_type"] == "forecast" and tags["model_uri"] == _champion_uri(champion_model)
    assert (tags["model_name"], tags["model_version"], tags["model_run_id"]) == \
        (trained.model_name, trained.version, trained.run_id)
    assert run.data.params["data.path"] == str(data) and run.data.params["rows.total"] == "720"
    version = client.get_model_version(trained.model_name, trained.version)
    assert [m.model_id for m in run.inputs.model_inputs] == [version.source.removeprefix("models:/")]
    assert {a.path for a in client.list_artifacts(result.run_id)} == {"f.csv", "f.png"}


def test_training_records_interval_coverage_on_the_test_windows(champion_model):
    """The logged coverage is the share of the test split's true values inside the registered model's own
    intervals, recomputed here one test window at a time; a coverage computed on the normalized scale,
    on other windows, or with other half-widths than the model serves, differs."""
    settings, data, trained = champion_model
    model = mlflow.pyfunc.load_model(f"models:/{trained.model_name}/{trained.version}")
    frame = pd.read_excel(data, engine="calamine")[["date", "OT"]]
    L, H = settings.window.input_length, settings.window.horizon
    inside = []
    for t in range(int(0.8 * len(frame)), len(frame) - H + 1):  # origins of the test split, rows [576, 720)
        out, truth = model.predict(frame.iloc[t - L:t]), frame["OT"].to_numpy()[t:t + H]
        inside.append((out["lower"].to_numpy() <= truth) & (truth <= out["upper"].to_numpy()))
    # float32 forecasts of one window or of a batch may differ in the last digit: a point on the edge may flip.
    assert trained.metrics["test_interval_coverage"] == pytest.approx(np.mean(inside), abs=2 / np.size(inside))
    widths = (out["upper"] - out["lower"]).to_numpy()
    assert trained.metrics["test_interval_width_units"] == pytest.approx(widths.mean(), rel=1e-4)


def test_bad_data_is_refused_before_any_run(champion_model, catalogue, tmp_path):
    settings, _, _ = champion_model
    runs_before = len(MlflowClient().search_runs([_experiment_id(settings)]))
    with pytest.raises(InputError, match="hold text"):
        forecast_flow(str(catalogue["text_in_numeric"]), _champion_uri(champion_model), str(tmp_path / "f.csv"), settings)
    assert len(MlflowClient().search_runs([_experiment_id(settings)])) == runs_before
    assert not (tmp_path / "f.csv").exists()


def test_data_is_cleaned_as_far_as_the_settings_ask_as_in_training(champion_model, catalogue, tmp_path):
    settings, _, _ = champion_model
    with pytest.raises(InputError, match="missing timestamp"):
        forecast_flow(str(catalogue["gaps"]), _champion_uri(champion_model), str(tmp_path / "f.csv"), settings)
    filling = settings.model_copy(update={"data": settings.data.model_copy(update={"fill_gaps": 5})})
    result = forecast_flow(str(catalogue["gaps"]), _champion_uri(champion_model), str(tmp_path / "f.csv"), filling)
    assert len(result.forecast) == 6


def test_daily_data_for_an_hourly_model_is_refused(champion_model, tmp_path):
    settings, data, _ = champion_model
    daily = pd.read_excel(data, engine="calamine").iloc[:60]
    daily["date"] = pd.date_range("2020-01-01", periods=60, freq="D")
    daily.to_csv(tmp_path / "daily.csv", index=False)
    with pytest.raises(InputError, match="trained on frequency h"):
        forecast_flow(str(tmp_path / "daily.csv"), _champion_uri(champion_model), str(tmp_path / "f.csv"), settings)


@pytest.mark.parametrize("args, fragment", [
    (["--model", "models:/no-such-model@champion"], "no model of that name is registered"),
    (["--model", "models:/champion-test-model/99"], "no version 99 (versions present: 1"),
    (["--model", "models:/champion-test-model@nobody"], "no version has the alias 'nobody'"),
    (["--out", "forecast.json"], "name a .csv or .xlsx file"),
])
def test_cli_exits_2_with_a_message(champion_model, tmp_path, args, fragment, monkeypatch):
    _, data, _ = champion_model
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["forecast", str(data), "--model", _champion_uri(champion_model), *args])
    assert done.exit_code == 2, done.output
    assert fragment in done.stderr


def test_cli_prints_the_forecast(champion_model, tmp_path, monkeypatch):
    _, data, trained = champion_model
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["forecast", str(data), "--model", _champion_uri(champion_model)])
    assert done.exit_code == 0, done.output
    assert f"model: {trained.model_name} version {trained.version}" in done.stdout
    assert (tmp_path / "valid-forecast.csv").exists() and (tmp_path / "valid-forecast.png").exists()
    assert "2016-07-31 05:00:00" in done.stdout  # the 6th hour after the data's last row


def _experiment_id(settings) -> str:
    return MlflowClient().get_experiment_by_name(settings.tracking.experiment).experiment_id
