"""The local stack for real: Prefect server, MLflow server, process worker, deployments from prefect.yaml.

Each server runs on a free port with a temporary home; a triggered `retrain` runs through the real worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from servers import free_port

from services import stack as stack_mod

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
TINY = {"data": {"target": "OT"}, "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
        "train": {"epochs": 2}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "tracking": {"experiment": "stack-test"}, "registry": {"model_name": "stack-test-model"},
        # The first version becomes champion even if two epochs do not beat Repeat, so the forecast has a model.
        "promotion": {"require_beat_repeat": False}}


@pytest.fixture(scope="module")
def incoming(tmp_path_factory, valid_workbook) -> Path:
    folder = tmp_path_factory.mktemp("incoming")
    (folder / "station.xlsx").write_bytes(valid_workbook.read_bytes())
    return folder


@pytest.fixture(scope="module")
def running(tmp_path_factory, incoming):
    """The stack, with prefect.yaml deployed as written except for parameters pointing at test data."""
    home = tmp_path_factory.mktemp("stack")
    (home / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        deployment["parameters"] |= {"data_dir": str(incoming), "config": str(home / "tiny.yaml")}
        if "model_uri" in deployment["parameters"]:
            deployment["parameters"] |= {"model_uri": "models:/stack-test-model@champion", "out_dir": str(home / "out")}
    (home / "prefect.yaml").write_text(yaml.safe_dump(spec))
    stack = stack_mod.Stack(home / ".stack", free_port(), free_port(), home / "mlruns")
    stack_mod.up(stack, home / "prefect.yaml", project=ROOT)
    try:
        yield stack
    finally:
        stack_mod.down(stack.home)


def _api(stack, method: str, path: str, **kwargs):
    response = httpx.request(method, f"{stack.prefect_api}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def _schedules(stack, deployment: str) -> list[dict]:
    found = _api(stack, "GET", f"/deployments/name/{deployment}")
    return [s["schedule"] for s in found["schedules"]]


def _wait(stack, run: dict, timeout: float = 400) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _api(stack, "GET", f"/flow_runs/{run['id']}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(2)
    raise AssertionError(f"flow run {run['id']} still {run['state']['type']} after {timeout} s")


def _run(stack, deployment: str) -> dict:
    dep = _api(stack, "GET", f"/deployments/name/{deployment}")
    return _wait(stack, _api(stack, "POST", f"/deployments/{dep['id']}/create_flow_run", json={}))


def _runs_of(stack, deployment: str) -> list[dict]:
    dep = _api(stack, "GET", f"/deployments/name/{deployment}")
    return _api(stack, "POST", "/flow_runs/filter", json={"deployments": {"id": {"any_": [dep["id"]]}}})


def _logs(stack, flow_run_id: str, waiting_for: str = "", timeout: float = 30) -> str:
    """A flow run's log messages. The run's process ships its logs in the background and may set its
    final state before the last ones arrive: with `waiting_for`, wait up to `timeout` s for that text."""
    deadline = time.monotonic() + timeout
    while True:
        logs = _api(stack, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        text = "\n".join(entry["message"] for entry in logs)
        if waiting_for in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


def test_status_lists_what_up_started(running):
    names = {name: alive for name, _, alive in stack_mod.status(running.home)}
    assert names == {"prefect-server": True, "mlflow-server": True, "worker": True, "reaper": True}
    assert stack_mod.active_env(running.home) == running.env()


def test_mlflow_server_starts_no_job_runner(running):
    # MLflow 3's server starts a job runner and huey consumers for its GenAI jobs unless told not to (~250 MB
    # each); the runner starts beside the server's web app, so it would be there by now.
    pid = next(pid for name, pid, _ in stack_mod.status(running.home) if name == "mlflow-server")
    commands = [" ".join(child.cmdline()) for child in psutil.Process(pid).children(recursive=True)]
    assert any("uvicorn" in c for c in commands), commands
    assert not [c for c in commands if "mlflow.server.jobs" in c or "huey" in c]


def test_server_schedules_match_prefect_yaml(running):
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    written = next(d for d in spec["deployments"] if d["name"] == "retrain")["schedules"]
    served = _schedules(running, "retrain/retrain")
    assert [(s["cron"], s["timezone"]) for s in served] == [(w["cron"], w["timezone"]) for w in written]


def test_triggered_retrain_trains_through_the_worker_then_forecasts_then_skips_unchanged_data(running):
    first = _run(running, "retrain/retrain")
    assert first["state"]["type"] == "COMPLETED", _logs(running, first["id"])
    client = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    experiment = client.get_experiment_by_name("stack-test")
    runs = client.search_runs([experiment.experiment_id], "tags.run_type = 'train'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    # The tag names the training subflow's run, whose parent is this retrain run.
    train_run = _api(running, "GET", f"/flow_runs/{runs[0].data.tags['prefect_flow_run_id']}")
    assert _api(running, "GET", f"/task_runs/{train_run['parent_task_run_id']}")["flow_run_id"] == first["id"]
    versions = client.search_model_versions("name='stack-test-model'")
    assert len(versions) == 1
    decision = runs[0].data.tags["promotion_decision"]
    aliases = client.get_model_version("stack-test-model", versions[0].version).aliases
    assert decision == "promoted" and "champion" in aliases

    # The forecast deployment runs on the retrain's completion event, with the new champion.
    deadline = time.monotonic() + 120
    while not _runs_of(running, "forecast-newest/forecast") and time.monotonic() < deadline:
        time.sleep(2)
    forecasts = _runs_of(running, "forecast-newest/forecast")
    assert forecasts, "no forecast run followed the retrain"
    done = _wait(running, forecasts[0])
    assert done["state"]["type"] == "COMPLETED", _logs(running, done["id"])
    written = list((running.home.parent / "out").glob("station-forecast-*.csv"))
    assert len(written) == 1 and len(written[0].read_text().splitlines()) == 1 + 6

    second = _run(running, "retrain/retrain")
    assert second["state"]["type"] == "COMPLETED"
    assert "training skipped" in _logs(running, second["id"], waiting_for="training skipped")
    assert len(client.search_runs([experiment.experiment_id], "tags.run_type = 'train'")) == 1


def test_redeploy_changes_and_removes_schedules(running, tmp_path):
    spec = yaml.safe_load((running.home.parent / "prefect.yaml").read_text())
    retrain = next(d for d in spec["deployments"] if d["name"] == "retrain")
    changed = tmp_path / "changed.yaml"
    retrain["schedules"] = [{"cron": "30 4 * * 1", "timezone": "America/New_York"}]
    changed.write_text(yaml.safe_dump(spec))
    stack_mod.deploy(running, changed, ROOT)
    assert [(s["cron"], s["timezone"]) for s in _schedules(running, "retrain/retrain")] == [("30 4 * * 1", "America/New_York")]

    retrain["schedules"] = []
    changed.write_text(yaml.safe_dump(spec))
    stack_mod.deploy(running, changed, ROOT)
    assert _schedules(running, "retrain/retrain") == []


def test_commands_run_in_the_stack_folder_use_its_servers(running, incoming):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train", str(incoming / "station.xlsx"),
         "--config", str(running.home.parent / "tiny.yaml"), "--set", "tracking.experiment=stack-cli"],
        cwd=running.home.parent, env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=running.mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("stack-cli").experiment_id])
    assert len(runs) == 1
    assert _api(running, "GET", f"/flow_runs/{runs[0].data.tags['prefect_flow_run_id']}")["state"]["type"] == "COMPLETED"
