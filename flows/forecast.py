"""The forecast flow: a registered model and new data in, the next H steps with intervals out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import flow
from prefect.runtime import flow_run

from tasks.registry.forecast import DEFAULT_MODEL_URI, load_model, make_forecast, read_input, run_record, write_forecast
from tasks.settings import Settings
from tasks.tracking import runs, store


@dataclass(frozen=True)
class ForecastResult:
    run_id: str
    model: str  # which model version forecast
    table: Path
    plot: Path
    forecast: pd.DataFrame


def default_out(data: str) -> Path:
    return Path(f"{Path(data).stem}-forecast.csv")


@flow(name="forecast", log_prints=True)
def forecast_flow(data: str, model_uri: str = DEFAULT_MODEL_URI, out: str | None = None,
                  settings: Settings = Settings()) -> ForecastResult:
    """Load the model, read and validate DATA as training does, forecast the H steps after its end,
    write them with a plot, and record a forecast run linked to the model version."""
    store.connect()
    forecaster = load_model(model_uri)
    prepared = read_input(data, settings.data, forecaster.spec)
    forecast = make_forecast(forecaster, prepared)
    what = f"{len(prepared.members)} series" if prepared.several else prepared.summary.target
    title = f"{what}: {forecaster.label} on {Path(data).name}"
    table, plot = write_forecast(forecast, prepared, Path(out) if out else default_out(data), title)
    record = run_record(forecaster, data, prepared, forecast)
    run_id = runs.track_forecast(settings.tracking.experiment, f"forecast-{Path(data).stem}",
                                     record["tags"] | {"prefect_flow_run_id": str(flow_run.id)}, record["params"],
                                     record["model_id"], [table, plot])
    steps = f"{forecaster.spec['horizon']} steps of {what}" if prepared.several else f"{len(forecast)} steps"
    print(f"{forecaster.label}: next {steps} written to {table} (plot {plot}); MLflow run {run_id}")
    return ForecastResult(run_id, forecaster.label, table, plot, forecast)
