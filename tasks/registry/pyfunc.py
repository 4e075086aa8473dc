"""The registered model: an MLflow pyfunc bundling the Keras model, the scaler and the window settings.

`predict(frame of the latest >= L raw rows)` returns the next H values in raw units with their
timestamps and prediction intervals (`lower`, `upper`); a model of several series takes their rows as
training read them (long or wide) and returns a long table with a `series` column. So `mlflow models serve` and
`mlflow.pyfunc.load_model` need nothing else. The model is logged from code (tasks/registry/entry.py), and
loads where only its requirements are installed: this module, and those it imports, import no Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from tasks.data.schemas import ForecastFrame
from tasks.data.times import STEPS
from tasks.prepare.scaler import Scaler
from tasks.settings import WindowSettings


def spec_scaler(spec: dict) -> Scaler:
    return Scaler(**{k: tuple(v) for k, v in spec["scaler"].items()})


def spec_window(spec: dict) -> WindowSettings:
    return WindowSettings(input_length=spec["input_length"], horizon=spec["horizon"], mode=spec["mode"])


SERIES = "series"  # the column of a forecast of several series that says which one each row is of


def latest_rows(frame: pd.DataFrame, spec: dict, columns: list[str], who: str = "", own_end: bool = False
                ) -> pd.DataFrame:
    """The latest L rows of `frame` in time order, with the time column parsed; ValueError when the
    columns, rows or values are not there. `own_end`: the series ends at its last value (a wide sheet's
    column that ends before the others); blanks inside its latest L rows are still refused."""
    time_col, L = spec["time_column"], spec["input_length"]
    missing = [c for c in (time_col, *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")
    if spec["frequency"] != STEPS:  # no time column: rows numbered, forecasts numbered after the last
        frame = frame.assign(**{time_col: pd.to_datetime(frame[time_col])})
    frame = frame.sort_values(time_col)
    if own_end and frame[columns[0]].notna().any():
        frame = frame.loc[:frame[columns[0]].last_valid_index()]
    if len(frame) < L:
        raise ValueError(f"the model needs the latest {L} rows{who}; got {len(frame)}")
    window = frame.iloc[-L:]
    if window[columns].isna().to_numpy().any():
        raise ValueError(f"the latest {L} rows{who} have blank values; fill them first")
    return window


def future_times(spec: dict, last) -> pd.Index | np.ndarray:
    H = spec["horizon"]
    if spec["frequency"] == STEPS:
        return np.arange(last + 1, last + H + 1)
    return pd.date_range(last, periods=H + 1, freq=spec["frequency"])[1:]


def forecast_next(model, spec: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast the H steps after the last row of `frame`, in the target's units, with intervals; a model
    of several series forecasts each of them (`forecast_series`)."""
    # Imported here: the model module needs Keras, and so does everything that calls this.
    from tasks.model.network import predict_horizon

    if SERIES in spec:
        return forecast_series(model, spec, frame)
    scaler = spec_scaler(spec)
    window = latest_rows(frame, spec, list(scaler.columns))
    x = scaler.transform(window)[None]  # [1, L, channels]
    y = predict_horizon(model, x, spec["mode"], spec["horizon"])[0]  # [H], normalized
    forecast = scaler.inverse_target(y)
    out = pd.DataFrame({"timestamp": future_times(spec, window[spec["time_column"]].iloc[-1]), "forecast": forecast})
    if "interval" in spec:  # models registered before intervals existed have none
        halfwidth = np.asarray(spec["interval"]["halfwidth"])
        out = out.assign(lower=forecast - halfwidth, upper=forecast + halfwidth)
    return ForecastFrame.validate(out)


def forecast_series(model, spec: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """Every series the model knows, forecast in one batch from `frame` laid out as in training: long
    (the id column says which series a row is of) or wide (a column per series). Returns a long table:
    series, timestamp, forecast, lower, upper."""
    from tasks.errors import shown_id
    from tasks.model.network import predict_horizon

    id_col, features = spec["id_column"], spec["features"]
    if id_col is not None and id_col not in frame.columns:
        raise ValueError(f"input lacks the id column {id_col!r}; it has {', '.join(map(str, frame.columns))}")
    ids = frame[id_col].map(shown_id) if id_col else None
    windows, x = {}, []
    for series_id, part in spec[SERIES].items():
        rows = frame[ids == series_id] if id_col else frame
        columns = [part["column"], *features]
        windows[series_id] = latest_rows(rows, spec, columns, f" of series {series_id}", own_end=not id_col)
        x.append(spec_scaler(part).transform(windows[series_id]))
    y = predict_horizon(model, np.stack(x), spec["mode"], spec["horizon"])  # [series, H], normalized
    out = []
    for (series_id, part), forecast in zip(spec[SERIES].items(), y):
        forecast = spec_scaler(part).inverse_target(forecast)
        halfwidth = np.asarray(part["interval"]["halfwidth"])
        out.append(pd.DataFrame({SERIES: series_id, "timestamp": future_times(spec, windows[series_id][spec["time_column"]].iloc[-1]),
                                 "forecast": forecast, "lower": forecast - halfwidth, "upper": forecast + halfwidth}))
    return ForecastFrame.validate(pd.concat(out, ignore_index=True))


class LSTMForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        import tasks.model.network  # noqa: F401  registers the custom layers before loading

        self.model = keras.saving.load_model(context.artifacts["keras_model"])
        self.spec = json.loads(Path(context.artifacts["spec"]).read_text())

    # The DataFrame hint tells MLflow the model validates its own input (against the logged signature).
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return forecast_next(self.model, self.spec, pd.DataFrame(model_input))
