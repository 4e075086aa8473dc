"""The whole training flow on a real workbook, under a real (temporary) Prefect server and MLflow store."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.train import train_flow
from tasks.errors import InputError
from tasks.tracking.registry import logged_model_id

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def trained(prefect_server, valid_workbook, tmp_path_factory):
    from tasks.settings import parse_settings

    settings = parse_settings({
        "data": {"target": "OT"}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 2, "units": 8},
        "train": {"epochs": 2, "batch_size": 32, "patience": 0},
        "tracking": {"experiment": "flow-test"}, "registry": {"model_name": "flow-test-model"},
    })
    # A copy under a name the other tests never use: the flow must not depend on the fixture's path.
    data = tmp_path_factory.mktemp("data") / "station.xlsx"
    data.write_bytes(valid_workbook.read_bytes())
    return settings, data, train_flow(str(data), settings)


def test_run_records_params_epochs_metrics_dataset_and_artifacts(trained):
    settings, data, result = trained
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "station-L24-H6-2x8-direct"
    assert run.data.params["window.input_length"] == "24" and run.data.params["train.epochs"] == "2"
    assert run.data.params["rows.train"] == "432" and len(run.data.params["data.digest"]) == 64
    for key in ("test_mse", "test_mae", "test_rmse_units", "test_mae_units", "test_smape", "test_mase",
                "repeat_test_mse", "seasonal_naive_test_mse"):
        assert np.isfinite(run.data.metrics[key]), key
    for key in ("loss", "val_loss"):
        assert [m.step for m in client.get_metric_history(result.run_id, key)] == [1, 2]
    # What the `lstm:` line compares, the weights kept against the start: without early stopping
    # (patience 0) the model is the last epoch's, however good an earlier one was.
    val_loss = [m.value for m in client.get_metric_history(result.run_id, "val_loss")]
    assert run.data.metrics["kept_val_loss"] == pytest.approx(val_loss[-1])
    improved = run.data.metrics["kept_val_loss"] < run.data.metrics["start_val_mse"]
    assert run.data.tags["lstm_improved_on_start"] == str(improved).lower()
    assert run.data.tags["prefect_flow_run_id"] and "git_commit" in run.data.tags
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.name == "station.xlsx" and "OT" in dataset.schema
    files = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"forecast.png", "loss_curves.png", "config.yaml", "validation_summary.json"} <= files


def test_registered_pyfunc_forecasts_next_h_values_in_raw_units(trained):
    settings, data, result = trained
    assert result.version == "1"
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}/{result.version}")
    frame = pd.read_excel(data, engine="calamine")
    out = model.predict(frame.tail(30)[["date", "OT"]])
    assert list(out.columns[:2]) == ["timestamp", "forecast"] and len(out) == 6
    assert out["timestamp"].iloc[0] == frame["date"].iloc[-1] + pd.Timedelta(hours=1)
    assert out["timestamp"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    # Raw units, exactly: the model works on each window minus its last value (model.level=last), so
    # inputs shifted by c degrees must give forecasts and intervals shifted by exactly c degrees. A
    # forecast left on the normalized scale, or scaled back with the wrong statistics, moves by c / std.
    recent = frame.tail(30)[["date", "OT"]]
    warmer = model.predict(recent.assign(OT=recent["OT"] + 10.0))
    for column in ("forecast", "lower", "upper"):
        np.testing.assert_allclose(warmer[column] - out[column], 10.0, atol=1e-3)
    # and near the data: the first step within a few degrees of the last value (37.9 here)
    assert abs(out["forecast"].iloc[0] - recent["OT"].iloc[-1]) < 5


def test_the_logged_model_belongs_to_the_runs_experiment_and_lies_under_its_artifact_root(trained):
    settings, _, result = trained
    client = MlflowClient()
    experiment = client.get_experiment(client.get_run(result.run_id).info.experiment_id)
    assert experiment.name == "flow-test"
    version = client.get_model_version(result.model_name, result.version)
    logged = client.get_logged_model(logged_model_id(version))
    assert logged.experiment_id == experiment.experiment_id and logged.source_run_id == result.run_id
    assert logged.artifact_location.startswith(experiment.artifact_location.rstrip("/") + "/")
    # Logged from code (no pickled Python object), and the pyfunc's code travels with it.
    local = Path(mlflow.artifacts.download_artifacts(logged.artifact_location))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model.pkl" not in flavor.values()
    assert not (local / "python_model.pkl").exists() and (local / "code" / "tasks" / "pyfunc.py").exists()


def test_invalid_workbook_fails_the_run_and_registers_nothing(prefect_server, trained, catalogue):
    settings, _, _ = trained
    client = MlflowClient()
    versions_before = len(client.search_model_versions(f"name='{settings.registry.model_name}'"))
    with pytest.raises(InputError):
        train_flow(str(catalogue["text_in_numeric"]), settings)
    run = client.search_runs([client.get_experiment_by_name("flow-test").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.info.status == "FAILED"
    assert "validation_report.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert len(client.search_model_versions(f"name='{settings.registry.model_name}'")) == versions_before


def test_covariates_train_end_to_end_and_the_model_needs_them(prefect_server, valid_workbook):
    """`data.features` (README, Configuration): extra input columns flow through validation, training,
    the logged params and the registered model, which then forecasts only from frames that hold them."""
    from tasks.settings import parse_settings

    settings = parse_settings({
        "data": {"target": "OT", "features": ["HUFL", "HULL"]}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
        "train": {"epochs": 1, "batch_size": 32, "patience": 0},
        "tracking": {"experiment": "features-test"}, "registry": {"model_name": "features-test-model"},
        "promotion": {"require_beat_repeat": False},
    })
    result = train_flow(str(valid_workbook), settings)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["data.features"] in ("['HUFL', 'HULL']", "('HUFL', 'HULL')")
    schema = json.loads(run.inputs.dataset_inputs[0].dataset.schema)["mlflow_colspec"]
    assert {"OT", "HUFL", "HULL"} <= {column["name"] for column in schema}
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}/{result.version}")
    frame = pd.read_excel(valid_workbook, engine="calamine").tail(24)
    out = model.predict(frame[["date", "OT", "HUFL", "HULL"]])
    assert len(out) == 6 and np.isfinite(out["forecast"]).all()
    with pytest.raises(Exception, match="HUFL|HULL"):
        model.predict(frame[["date", "OT"]])
