"""The registered model: an MLflow pyfunc bundling the Keras model, the scaler and the window settings.

`predict(frame of the latest >= L raw rows)` returns the next H values in raw units with their
timestamps and prediction intervals (`lower`, `upper`), so `mlflow models serve` and
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


def forecast_next(model, spec: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast the H steps after the last row of `frame`, in the target's units, with intervals."""
    # Imported here: the model module needs Keras, and so does everything that calls this.
    from tasks.model.network import predict_horizon

    time_col, L, H = spec["time_column"], spec["input_length"], spec["horizon"]
    scaler = spec_scaler(spec)
    missing = [c for c in (time_col, *scaler.columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")
    steps = spec["frequency"] == STEPS  # no time column: rows numbered, forecasts numbered after the last
    if not steps:
        frame = frame.assign(**{time_col: pd.to_datetime(frame[time_col])})
    frame = frame.sort_values(time_col)
    if len(frame) < L:
        raise ValueError(f"the model needs the latest {L} rows; got {len(frame)}")
    window = frame.iloc[-L:]
    if window[list(scaler.columns)].isna().to_numpy().any():
        raise ValueError(f"the latest {L} rows have blank values; fill them first")
    x = scaler.transform(window)[None]  # [1, L, channels]
    y = predict_horizon(model, x, spec["mode"], H)[0]  # [H], normalized
    last = window[time_col].iloc[-1]
    times = (np.arange(last + 1, last + H + 1) if steps
             else pd.date_range(last, periods=H + 1, freq=spec["frequency"])[1:])
    forecast = scaler.inverse_target(y)
    out = pd.DataFrame({"timestamp": times, "forecast": forecast})
    if "interval" in spec:  # models registered before intervals existed have none
        halfwidth = np.asarray(spec["interval"]["halfwidth"])
        out = out.assign(lower=forecast - halfwidth, upper=forecast + halfwidth)
    return ForecastFrame.validate(out)


class LSTMForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        import tasks.model.network  # noqa: F401  registers the custom layers before loading

        self.model = keras.saving.load_model(context.artifacts["keras_model"])
        self.spec = json.loads(Path(context.artifacts["spec"]).read_text())

    # The DataFrame hint tells MLflow the model validates its own input (against the logged signature).
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return forecast_next(self.model, self.spec, pd.DataFrame(model_input))
