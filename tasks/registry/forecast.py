"""Forecasting with a registered model: load it, read new data the way training did, forecast the next H steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.clean import clean_tables
from tasks.data.ingest import file_digest, read_tables
from tasks.data.panel import Member, Prepared
from tasks.data.times import STEPS
from tasks.data.validate import validate_tables
from tasks.errors import InputError, Problem
from tasks.registry.pyfunc import SERIES
from tasks.report.export import write_table
from tasks.report.plot import MAX_PANELS, plot_future, plot_futures
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


def input_settings(cfg: DataSettings, spec: dict, extra_features: tuple[str, ...] = ()) -> DataSettings:
    """How to read the model's columns and series from new data: `cfg` (sheet, header, cleaning), with the
    model's time column, target(s) or series and features (plus `extra_features`)."""
    update = {"time_column": NO_TIME if spec["frequency"] == STEPS else spec["time_column"],
              "features": tuple(dict.fromkeys([*spec["features"], *extra_features])), "skip_bad_series": False}
    if SERIES not in spec:
        update["target"] = spec["target"]
    elif spec["id_column"]:  # long format: the value column, and the ids
        update |= {"target": spec["target"], "series": ",".join(spec[SERIES]) + ("," if len(spec[SERIES]) == 1 else "")}
    else:
        update["target"] = ",".join(part["column"] for part in spec[SERIES].values()) + \
            ("," if len(spec[SERIES]) == 1 else "")
    return cfg.model_copy(update=update)


def read_model_input(path: Path, cfg: DataSettings, spec: dict, extra_features: tuple[str, ...] = ()) -> Prepared:
    """DATA read, cleaned (as far as `cfg` asks) and validated as training does, with the model's time
    column, series and features (plus `extra_features`); each series must hold the model's L rows, at its
    frequency."""
    columns = input_settings(cfg, spec, extra_features)
    tables = clean_tables(read_tables(Path(path), columns), columns)
    # validate_table's row minimum is the one training splits need; a forecast needs only L rows,
    # checked below, so validate with the smallest windows and splits.
    input_only = Settings(data=columns, window=WindowSettings(input_length=1, horizon=1),
                          split=SplitSettings(train=2, val=1, test=1))
    valid = validate_tables(tables, input_only, str(path))
    members = tuple(Member(i, series, summary) for i, (series, summary) in valid.series.items())
    L, problems = spec["input_length"], []
    for m in members:
        who = f" of series {m.id}" if tables.several else ""
        if len(m.series) < L:
            problems.append(Problem(f"{path}: {len(m.series)} data rows{who}; the model forecasts from the latest {L}",
                                    f"pass at least {L} rows"))
        if not _same_frequency(m.summary.frequency, spec["frequency"]):
            problems.append(Problem(
                f"{path}: the data{who} is spaced every {m.summary.step} (frequency {m.summary.frequency}); "
                f"the model was trained on frequency {spec['frequency']}", "pass data at the model's frequency"))
    if problems:
        raise InputError(list(dict.fromkeys(problems)))
    return Prepared(members, tables.tables[members[0].id].digest, str(path), tables.several, tables.id_column)


def forecast_after(forecaster: Forecaster, data: Prepared) -> pd.DataFrame:
    """The next H steps after the last row: timestamp, forecast, lower, upper, and for a model of several
    series which one (`series`): the pyfunc's predict, as served."""
    return forecaster.pyfunc.predict(data.latest(forecaster.spec["input_length"]))


def save_forecast(forecast: pd.DataFrame, data: Prepared, out: Path, title: str) -> tuple[Path, Path]:
    """The forecast as .csv or .xlsx at `out`, and its plot beside it (same name, .png): of each series, up
    to MAX_PANELS of them, when there are several."""
    import matplotlib.pyplot as plt

    if out.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError([Problem(f"--out {out}: cannot write {out.suffix or 'a file without a suffix'}",
                                  "name a .csv or .xlsx file")])
    out.parent.mkdir(parents=True, exist_ok=True)
    if SERIES in forecast:
        figure = plot_futures([(m.id, m.series[m.summary.target], forecast[forecast[SERIES] == m.id])
                               for m in data.members[:MAX_PANELS]], title)
    else:
        figure = plot_future(data.series[data.summary.target], forecast, title)
    figure.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(figure)
    return write_table(forecast, out, sheet="forecast"), out.with_suffix(".png")


@task(cache_policy=NO_CACHE)
def load_model(uri: str) -> Forecaster:
    return load_forecaster(uri)


@task(cache_policy=NO_CACHE)
def read_input(path: str, cfg: DataSettings, spec: dict) -> Prepared:
    return read_model_input(Path(path), cfg, spec)


@task(cache_policy=NO_CACHE)
def make_forecast(forecaster: Forecaster, data: Prepared) -> pd.DataFrame:
    return forecast_after(forecaster, data)


@task(cache_policy=NO_CACHE)
def write_forecast(forecast: pd.DataFrame, data: Prepared, out: Path, title: str) -> tuple[Path, Path]:
    return save_forecast(forecast, data, out, title)


def run_record(forecaster: Forecaster, data: str, prepared: Prepared, forecast: pd.DataFrame) -> dict:
    """Tags and params of the forecast run: which model version, which data, which period."""
    model = {"model_uri": forecaster.uri, "model_name": forecaster.name, "model_version": forecaster.version,
             "model_run_id": forecaster.run_id}
    several = {"data.series_count": len(prepared.members)} if prepared.several else {}
    return {
        "tags": {k: v for k, v in model.items() if v is not None},
        "params": {"data.path": data, "data.digest": file_digest(Path(data)),
                   "rows.total": sum(len(m.series) for m in prepared.members), **several,
                   "forecast.start": str(forecast["timestamp"].min()), "forecast.end": str(forecast["timestamp"].max())},
        "model_id": forecaster.model_id,
    }
