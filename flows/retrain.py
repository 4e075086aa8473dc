"""The scheduled flows: retrain on the newest workbook (unless its content is unchanged; the promotion gate
runs at the end of training), then forecast from it with the champion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow

from flows.forecast import forecast_flow
from flows.train import train_flow
from tasks.data.discover import find_newest_workbook
from tasks.data.drift import report_drift
from tasks.data.panel import prepare_data
from tasks.registry.forecast import DEFAULT_MODEL_URI
from tasks.settings import load_settings
from tasks.tracking import registry, runs, store


@flow(name="retrain", log_prints=True)
def retrain_flow(data_dir: str = "data", pattern: str = "*.xlsx", config: str | None = None,
                 overrides: list[str] | None = None) -> dict:
    """Newest workbook in `data_dir` -> validate -> drift report -> train + gate, or skip if unchanged."""
    settings = load_settings(Path(config) if config else None, overrides or [])
    data = find_newest_workbook(data_dir, pattern)
    prepared = prepare_data(str(data), settings)
    store.connect()
    if runs.last_training_digest(settings.tracking.experiment) == prepared.digest:
        print(f"{data}: content unchanged since the last training run (sha256 {prepared.digest[:12]}); "
              "training skipped")
        return {"status": "skipped", "data": str(data), "digest": prepared.digest}
    champion = registry.alias_run(settings.registry.model_name)
    drift = None
    if not prepared.several:  # the profile drift is judged against is one series' (not kept for several)
        reference = runs.load_dict(champion[1], "data_profile.json") if champion else None
        drift = report_drift(reference, prepared.series, prepared.summary.target,
                             f"champion version {champion[0]}" if champion else "", data.name)
    result = train_flow(str(data), settings)
    if drift is not None:
        runs.log_drift(result.run_id, drift.to_dict())
    return {"status": "trained", "data": str(data), "digest": prepared.digest, "run_id": result.run_id,
            "version": result.version, "drift": drift.to_dict() if drift else None}


@flow(name="forecast-newest", log_prints=True)
def forecast_newest_flow(data_dir: str = "data", pattern: str = "*.xlsx", model_uri: str = DEFAULT_MODEL_URI,
                         out_dir: str = "outputs/forecasts", config: str | None = None,
                         overrides: list[str] | None = None):
    """Forecast the steps after the newest workbook in `data_dir`; files go to `out_dir`, one per run."""
    settings = load_settings(Path(config) if config else None, overrides or [])
    data = find_newest_workbook(data_dir, pattern)
    out = Path(out_dir) / f"{data.stem}-forecast-{pd.Timestamp.now():%Y%m%d-%H%M%S}.csv"
    return forecast_flow(str(data), model_uri, str(out), settings)
