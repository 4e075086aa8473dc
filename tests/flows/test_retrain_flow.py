"""The scheduled retrain as the deployment runs it, on a real folder of workbooks: the first file trains
(no champion, no drift to report), a shifted newer file trains with drift reported against the champion
(Prefect artifact, `drift.json`, metrics on the new run), the same file again is skipped."""

import os
import shutil

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.retrain import retrain_flow

pytestmark = [pytest.mark.slow, pytest.mark.integration]

OVERRIDES = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
             "window.horizon=6", "model.layers=1", "model.units=4", "train.epochs=1", "train.patience=0",
             "tracking.experiment=retrain-test", "registry.model_name=retrain-test-model",
             "promotion.require_beat_repeat=false"]


def test_retrain_trains_reports_drift_against_the_champion_and_skips_unchanged_data(prefect_server, valid_workbook,
                                                                                    tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(valid_workbook, folder / "week1.xlsx")
    first = retrain_flow(str(folder), overrides=OVERRIDES)
    assert first["status"] == "trained" and first["drift"] is None  # no champion yet to compare with

    # A week later: the same hours, the target 10 degrees warmer (several of its standard deviations).
    frame = pd.read_excel(valid_workbook, engine="calamine")
    frame["OT"] += 10.0
    later = folder / "week2.xlsx"
    frame.to_excel(later, sheet_name="data", index=False)
    os.utime(later, (os.path.getmtime(folder / "week1.xlsx") + 60,) * 2)
    second = retrain_flow(str(folder), overrides=OVERRIDES)
    assert second["status"] == "trained" and second["data"] == str(later)
    drift = second["drift"]
    assert drift["shifted"] and drift["mean_shift_in_std"] > 1 and drift["psi"] > 0.25

    client = MlflowClient()
    run = client.get_run(second["run_id"])
    assert run.data.metrics["drift_psi"] == pytest.approx(drift["psi"])
    assert run.data.metrics["drift_mean_shift"] == pytest.approx(drift["mean_shift_in_std"])
    assert "drift.json" in {a.path for a in client.list_artifacts(second["run_id"])}
    with get_client(sync_client=True) as prefect:
        published = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["data-drift"])))
    assert any("shifted" in (a.data or "") and "week2.xlsx" in (a.data or "") for a in published)

    again = retrain_flow(str(folder), overrides=OVERRIDES)
    assert again["status"] == "skipped" and again["digest"] == second["digest"]
