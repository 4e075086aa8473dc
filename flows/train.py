"""The training flow: workbook in, tracked MLflow run and registered model version out."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.promote import promote_flow
from tasks import tracking
from tasks.clean import clean_data
from tasks.drift import profile
from tasks.evaluate import evaluate_model, season_length
from tasks.ingest import read_workbook
from tasks.intervals import calibrate_intervals
from tasks.normalize import normalize_series
from tasks.plot import make_figures
from tasks.promote import GateResult
from tasks.pyfunc import package_model
from tasks.report import publish_report
from tasks.settings import Settings
from tasks.split import split_bounds
from tasks.train import train_model
from tasks.validate import validate_data
from tasks.window import origins


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    promotion: GateResult


def backup_dir(run_id: str) -> Path:
    """Where training saves each epoch, so that a retry of the training task resumes from the last one.
    Keyed on the MLflow run: a task retry keeps it, a new flow run does not."""
    return Path(tempfile.gettempdir()) / "lstm-pipeline-backup" / run_id


def run_name(data: str, settings: Settings) -> str:
    """Tells runs apart in the MLflow UI's list: data file, L, H, model shape."""
    w, m = settings.window, settings.model
    shape = f"{'bi' if m.bidirectional else ''}{m.layers}x{m.units}"
    return f"{Path(data).stem}-L{w.input_length}-H{w.horizon}-{shape}-{w.mode}"


@flow(name="train", log_prints=True)
def train_flow(data: str, settings: Settings = Settings()) -> TrainResult:
    """Ingest, validate, split, normalize, window + train, calibrate intervals, evaluate, plot, track and
    register; then the promotion gate, with the new version as the challenger."""
    tracking.connect()
    for stale in tracking.close_stale_runs(settings.tracking.experiment):
        print(f"MLflow run {stale} was left RUNNING by a process that is gone; marked it KILLED")
    name = run_name(data, settings)
    run_id = tracking.start_run(settings.tracking.experiment, name,
                                f"Stacked LSTM on {data}: {name}", {"prefect_flow_run_id": str(flow_run.id), "run_type": "train"})
    print(f"MLflow run {run_id} ({name})")
    try:
        raw = read_workbook(Path(data), settings.data)
        raw = clean_data(raw, settings.data)
        series, summary = validate_data(raw, settings, data)
        bounds = split_bounds(len(series), settings.split)
        scaler, values = normalize_series(series, bounds)
        model, history = train_model(values, bounds, settings, [tracking.epoch_logger(run_id)], backup_dir(run_id))
        halfwidth = calibrate_intervals(model, values, bounds, settings, scaler)
        test = origins(bounds.test, settings.window, training=False)
        season = settings.evaluate.season or season_length(summary.frequency, summary.step)
        train_units = series[summary.target].to_numpy()[slice(*bounds.train)]
        metrics, test_pred = evaluate_model(model, values, test, settings.window, scaler, train_units, season, halfwidth)
        packaged = package_model(model, summary, scaler, settings, series, halfwidth)
        figures = make_figures(series, summary.target, test, scaler.inverse_target(test_pred),
                               packaged["output_example"], history, name)
        version = tracking.track_run(
            run_id,
            params=settings.flat() | {"data.path": data, "data.digest": raw.digest}
                   | {f"rows.{k}": v for k, v in bounds.rows().items()} | {"rows.total": len(series)},
            metrics=metrics,
            dataset={"series": series, "source": str(Path(data).resolve()), "digest": raw.digest, "target": summary.target},
            artifacts={"config.yaml": settings.model_dump(mode="json"), "validation_summary.json": summary.to_dict(),
                       "scaler.json": scaler.to_dict(), "history.json": history,
                       "data_profile.json": profile(series, summary.target, bounds.train)},
            figures=figures,
            model=packaged,
        )
        publish_report(metrics, run_id, settings.registry.model_name, version, name)
    except BaseException as exc:
        tracking.fail_run(run_id, exc)
        shutil.rmtree(backup_dir(run_id), ignore_errors=True)
        raise
    tracking.end_run(run_id, ok=True)
    gate = promote_flow(settings.registry.model_name, data, settings, version)
    return TrainResult(run_id, settings.registry.model_name, version, metrics, gate)
