"""What the logged model carries besides its code: the spec (columns, frequency, windows, scalers, intervals,
how far its training data reached) and an input/output example."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.prepare.scaler import Scaler
from tasks.prepare.split import Bounds
from tasks.registry.pyfunc import SERIES, forecast_next


def model_spec(summary, scaler: Scaler, settings, halfwidth: list[float], seen_through: str | int) -> dict:
    """Everything besides the weights that a forecast of one series needs, stored as JSON beside the Keras
    model; `halfwidth`: the conformal intervals' per-step half-widths in the target's units
    (tasks/model/intervals.py); `seen_through`: the time of the last row training looked at, the promotion
    gate scores only after it."""
    return {
        "time_column": summary.time_column, "target": summary.target, "features": list(summary.features),
        "frequency": summary.frequency, "input_length": settings.window.input_length,
        "horizon": settings.window.horizon, "mode": settings.window.mode, "scaler": scaler.to_dict(),
        "interval": {"coverage": settings.evaluate.coverage, "halfwidth": list(halfwidth)},
        "seen_through": seen_through,
    }


def last_seen(series: pd.DataFrame, bounds: Bounds):
    """The last row training looked at (fit, early stopping, interval calibration: up to the end of the
    validation split): a timestamp, or a step number."""
    return series.index[bounds.val[1] - 1]


def recorded(row) -> str | int:
    """A row's time as the spec records it: ISO text, or a step number."""
    return row.isoformat() if isinstance(row, pd.Timestamp) else int(row)


def series_spec(data, scalers: list[Scaler], settings, halfwidths: list[list[float]], bounds: list[Bounds]) -> dict:
    """The spec of a model of several series: what they share (`seen_through`: the latest of theirs), and
    under `series` each one's column, scaler, intervals and `seen_through`, by id. `target` is the value
    column in long format (`id_column` names the ids), None in wide format, where each series is a column
    of its own."""
    spec = model_spec(data.summary, scalers[0], settings, halfwidths[0],
                      recorded(max(last_seen(m.series, b) for m, b in zip(data.members, bounds))))
    del spec["scaler"], spec["interval"]
    spec["series"] = {m.id: {"column": m.summary.target, "scaler": scaler.to_dict(),
                             "interval": {"coverage": settings.evaluate.coverage, "halfwidth": list(halfwidth)},
                             "seen_through": recorded(last_seen(m.series, b))}
                      for m, scaler, halfwidth, b in zip(data.members, scalers, halfwidths, bounds)}
    spec["id_column"] = data.id_column
    spec["target"] = data.summary.target if data.id_column else None
    return spec


@task(cache_policy=NO_CACHE)
def package_model(keras_model, data, scalers: list[Scaler], halfwidths: list[list[float]], bounds: list[Bounds],
                  settings) -> dict:
    """The pieces `models.log_model` logs as the pyfunc of the series of `data` (tasks/data/panel.py `Prepared`),
    with the forecast after the end of the data (`future`: of the first series). Training saw each series'
    rows up to the end of its validation split (fit, early stopping, interval calibration)."""
    spec = (series_spec(data, scalers, settings, halfwidths, bounds) if data.several
            else model_spec(data.summary, scalers[0], settings, halfwidths[0], recorded(last_seen(data.series, bounds[0]))))
    example = data.latest(settings.window.input_length)
    output = forecast_next(keras_model, spec, example)
    future = output[output[SERIES] == data.members[0].id].drop(columns=SERIES) if data.several else output
    return {"keras_model": keras_model, "spec": spec, "input_example": example, "output_example": output,
            "future": future, "name": settings.registry.model_name}
