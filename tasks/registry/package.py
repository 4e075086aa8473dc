"""What the logged model carries besides its code: the spec (columns, frequency, windows, scaler, intervals,
how far its training data reached) and an input/output example."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.prepare.scaler import Scaler
from tasks.prepare.split import Bounds
from tasks.registry.pyfunc import forecast_next


def model_spec(summary, scaler: Scaler, settings, halfwidth: list[float], seen_through: str | int) -> dict:
    """Everything besides the weights that a forecast needs, stored as JSON beside the Keras model;
    `halfwidth`: the conformal intervals' per-step half-widths in the target's units (tasks/model/intervals.py);
    `seen_through`: the time of the last row training looked at, the promotion gate scores only after it."""
    return {
        "time_column": summary.time_column, "target": summary.target, "features": list(summary.features),
        "frequency": summary.frequency, "input_length": settings.window.input_length,
        "horizon": settings.window.horizon, "mode": settings.window.mode, "scaler": scaler.to_dict(),
        "interval": {"coverage": settings.evaluate.coverage, "halfwidth": list(halfwidth)},
        "seen_through": seen_through,
    }


@task(cache_policy=NO_CACHE)
def package_model(keras_model, summary, scaler: Scaler, settings, series: pd.DataFrame, halfwidth: list[float],
                  bounds: Bounds) -> dict:
    """The pieces `models.log_model` logs as the pyfunc, with the forecast after the end of the data.
    Training saw the rows up to the end of the validation split (fit, early stopping, interval calibration)."""
    last_seen = series.index[bounds.val[1] - 1]  # a timestamp, or a step number (no time column)
    spec = model_spec(summary, scaler, settings, halfwidth,
                      last_seen.isoformat() if isinstance(last_seen, pd.Timestamp) else int(last_seen))
    example = series.iloc[-settings.window.input_length:].reset_index()
    future = forecast_next(keras_model, spec, example)
    return {"keras_model": keras_model, "spec": spec, "input_example": example, "output_example": future,
            "name": settings.registry.model_name}
