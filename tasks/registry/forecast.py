"""Forecasting with a registered model: load it, read new data the way training did, forecast the next H steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.clean import clean_table
from tasks.data.ingest import file_digest, read_table
from tasks.data.times import STEPS
from tasks.data.validate import Summary, validate_table
from tasks.errors import InputError, Problem
from tasks.report.export import write_table
from tasks.report.plot import plot_future
from tasks.settings import NO_TIME, DataSettings, Settings, SplitSettings, WindowSettings
from tasks.tracking import models, registry

DEFAULT_MODEL_URI = "models:/lstm-forecaster@champion"


@dataclass(frozen=True)
class Forecaster:
    """A loaded model and where it came from."""

    uri: str  # as asked for: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a folder
    name: str | None  # registered model name and version; None when not loaded from the registry
    version: str | None
    run_id: str | None  # the training run that logged it
    model_id: str | None  # MLflow 3's logged-model id, which runs link to as their input
    pyfunc: object  # mlflow.pyfunc.PyFuncModel

    @property
    def spec(self) -> dict:
        """Columns, frequency, L, H, scaler and intervals (tasks/registry/package.py `model_spec`)."""
        return self.pyfunc.unwrap_python_model().spec

    @property
    def keras_model(self):
        return self.pyfunc.unwrap_python_model().model

    @property
    def label(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.uri


def load_forecaster(uri: str) -> Forecaster:
    """Resolve aliases first and load that exact version, so a concurrent promotion cannot swap it midway."""
    version = registry.resolve_model_uri(uri)
    if version is None:
        pyfunc = models.load_pyfunc(uri)
        return Forecaster(uri, None, None, None, None, pyfunc)
    pyfunc = models.load_pyfunc(f"models:/{version.name}/{version.version}")
    return Forecaster(uri, version.name, str(version.version), version.run_id,
                      registry.logged_model_id(version), pyfunc)


def _same_frequency(a: str, b: str) -> bool:
    if STEPS in (a, b):
        return a == b
    try:
        return pd.tseries.frequencies.to_offset(a) == pd.tseries.frequencies.to_offset(b)
    except ValueError:
        return False


def read_model_input(path: Path, cfg: DataSettings, spec: dict, extra_features: tuple[str, ...] = ()
                     ) -> tuple[pd.DataFrame, Summary]:
    """DATA read, cleaned (as far as `cfg` asks) and validated as training does, with the model's time
    column, target and features (plus `extra_features`); it must hold the model's L rows, at its frequency."""
    time_column = NO_TIME if spec["frequency"] == STEPS else spec["time_column"]
    columns = cfg.model_copy(update={"time_column": time_column, "target": spec["target"],
                                     "features": tuple(dict.fromkeys([*spec["features"], *extra_features]))})
    raw = clean_table(read_table(Path(path), columns), columns)
    # validate_table's row minimum is the one training splits need; a forecast needs only L rows,
    # checked below, so validate with the smallest windows and splits.
    input_only = Settings(data=columns, window=WindowSettings(input_length=1, horizon=1),
                          split=SplitSettings(train=2, val=1, test=1))
    series, summary = validate_table(raw, input_only, str(path))
    L = spec["input_length"]
    if len(series) < L:
        raise InputError([Problem(f"{path}: {len(series)} data rows; the model forecasts from the latest {L}",
                                  f"pass at least {L} rows")])
    if not _same_frequency(summary.frequency, spec["frequency"]):
        raise InputError([Problem(
            f"{path}: the data is spaced every {summary.step} (frequency {summary.frequency}); "
            f"the model was trained on frequency {spec['frequency']}", "pass data at the model's frequency")])
    return series, summary


def forecast_after(forecaster: Forecaster, series: pd.DataFrame) -> pd.DataFrame:
    """The next H steps after the last row: timestamp, forecast, lower, upper (the pyfunc's predict, as served)."""
    return forecaster.pyfunc.predict(series.iloc[-forecaster.spec["input_length"]:].reset_index())


def save_forecast(forecast: pd.DataFrame, actual: pd.Series, out: Path, title: str) -> tuple[Path, Path]:
    """The forecast as .csv or .xlsx at `out`, and its plot beside it (same name, .png)."""
    import matplotlib.pyplot as plt

    if out.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError([Problem(f"--out {out}: cannot write {out.suffix or 'a file without a suffix'}",
                                  "name a .csv or .xlsx file")])
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_future(actual, forecast, title)
    figure.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(figure)
    return write_table(forecast, out, sheet="forecast"), out.with_suffix(".png")


@task(cache_policy=NO_CACHE)
def load_model(uri: str) -> Forecaster:
    return load_forecaster(uri)


@task(cache_policy=NO_CACHE)
def read_input(path: str, cfg: DataSettings, spec: dict) -> tuple[pd.DataFrame, Summary]:
    return read_model_input(Path(path), cfg, spec)


@task(cache_policy=NO_CACHE)
def make_forecast(forecaster: Forecaster, series: pd.DataFrame) -> pd.DataFrame:
    return forecast_after(forecaster, series)


@task(cache_policy=NO_CACHE)
def write_forecast(forecast: pd.DataFrame, actual: pd.Series, out: Path, title: str) -> tuple[Path, Path]:
    return save_forecast(forecast, actual, out, title)


def run_record(forecaster: Forecaster, data: str, series: pd.DataFrame, forecast: pd.DataFrame) -> dict:
    """Tags and params of the forecast run: which model version, which data, which period."""
    model = {"model_uri": forecaster.uri, "model_name": forecaster.name, "model_version": forecaster.version,
             "model_run_id": forecaster.run_id}
    return {
        "tags": {k: v for k, v in model.items() if v is not None},
        "params": {"data.path": data, "data.digest": file_digest(Path(data)), "rows.total": len(series),
                   "forecast.start": str(forecast["timestamp"].iloc[0]), "forecast.end": str(forecast["timestamp"].iloc[-1])},
        "model_id": forecaster.model_id,
    }
