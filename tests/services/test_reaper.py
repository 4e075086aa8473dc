"""The reaper's rule on a real (SQLite) MLflow store, and the automation it relies on: only a RUNNING
run whose flow run has ended is marked KILLED."""

from __future__ import annotations

from datetime import timedelta

from mlflow.tracking import MlflowClient
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Crashed, Running

from services.reaper import reap, silent_runs_automation
from tasks.tracking import runs, store


def test_reap_kills_only_running_runs_whose_flow_run_ended():
    store.connect()
    experiment = store.experiment_id("reaper-test")
    states = {"crashed": Crashed(), "running": Running(), "completed": Completed()}
    run_ids = {name: MlflowClient().create_run(experiment, tags={"prefect_flow_run_id": name}).info.run_id
            for name in states}
    run_ids["unknown"] = MlflowClient().create_run(experiment, tags={"prefect_flow_run_id": "unknown"}).info.run_id
    run_ids["untagged"] = MlflowClient().create_run(experiment).info.run_id
    runs.end_run(run_ids["completed"], ok=True)  # ended by its flow before the flow completed

    killed = reap(states.get)

    assert killed == [run_ids["crashed"]]
    status = {name: MlflowClient().get_run(run_id).info.status for name, run_id in run_ids.items()}
    assert status == {"crashed": "KILLED", "running": "RUNNING", "completed": "FINISHED", "unknown": "RUNNING",
                      "untagged": "RUNNING"}
    assert "ended Crashed" in MlflowClient().get_run(run_ids["crashed"]).data.tags["failure"]
    assert reap(states.get) == []  # once is enough


def test_the_automation_crashes_flow_runs_silent_for_dead_after_seconds():
    automation = silent_runs_automation(75)
    trigger = automation.trigger
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.within == timedelta(seconds=75) and trigger.posture == "Proactive"
    assert [a.state for a in automation.actions] == [StateType.CRASHED]
