"""The training flow: workbook in, tracked MLflow run and registered model version out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.promote import run_gate
from tasks.data.panel import prepare_data
from tasks.registry.promote import GateResult
from tasks.report.summary import publish_report
from tasks.runs.fit import fit_run
from tasks.settings import Settings
from tasks.tracking import registry, runs, store


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    promotion: GateResult


def run_name(data: str, settings: Settings) -> str:
    """Tells runs apart in the MLflow UI's list: data file, L, H, model shape."""
    w, m = settings.window, settings.model
    shape = f"{'bi' if m.bidirectional else ''}{m.layers}x{m.units}"
    return f"{Path(data).stem}-L{w.input_length}-H{w.horizon}-{shape}-{w.mode}"


@flow(name="train", log_prints=True)
def train_flow(data: str, settings: Settings = Settings()) -> TrainResult:
    """Read and validate the data, fit and log one configuration (tasks/runs/fit.py), register the model as
    the challenger; then the promotion gate on the frame already read."""
    store.connect()
    for stale in runs.close_stale_runs(settings.tracking.experiment):
        print(f"MLflow run {stale} was left RUNNING by a process that is gone; marked it KILLED")
    name = run_name(data, settings)
    run_id = runs.start_run(settings.tracking.experiment, name, f"Stacked LSTM on {data}: {name}",
                            {"prefect_flow_run_id": str(flow_run.id), "run_type": "train"})
    print(f"MLflow run {run_id} ({name})")
    with runs.recorded(run_id):
        prepared = prepare_data(data, settings)
        fit = fit_run(prepared, settings, run_id, title=name)
        version = registry.register_version(fit.model_uri, settings.registry.model_name, run_id)
        publish_report(fit.metrics, run_id, settings.registry.model_name, version, name)
    gate = run_gate(settings.registry.model_name, data, settings, version, prepared)
    return TrainResult(run_id, settings.registry.model_name, version, fit.metrics, gate)
