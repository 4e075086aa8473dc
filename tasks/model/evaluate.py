"""Stage 7, evaluate: the model and two baselines scored on the same test windows.

Metrics on the normalized scale (`test_mse`, `test_mae`) are comparable with papers; the others are in
the data's own units. Baselines: Repeat (last input value held) and seasonal naive (value one season
earlier).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.data.times import STEPS
from tasks.prepare.scaler import Scaler
from tasks.prepare.window import make_windows, target_windows
from tasks.settings import WindowSettings

if TYPE_CHECKING:
    import keras


def season_length(frequency: str, step: str) -> int:
    """Steps per natural cycle: a day for sub-daily data, a week for daily, a year for coarser; none
    (1, the last value) for step-numbered rows, whose cycle only the user knows (evaluate.season)."""
    if frequency == STEPS:
        return 1
    offset = pd.tseries.frequencies.to_offset(frequency)
    name = offset.name.upper()
    for prefix, season in (("Y", 1), ("A", 1), ("Q", 4), ("M", 12), ("W", 52), ("B", 5)):
        if name.startswith(prefix) and not name.startswith("MIN"):
            return season
    delta = pd.Timedelta(step)
    if delta >= pd.Timedelta(days=1):
        return 7
    return max(1, int(round(pd.Timedelta(days=1) / delta)))


def repeat_forecast(values: np.ndarray, starts: range, horizon: int) -> np.ndarray:
    """The last input value, held for H steps: [windows, H]."""
    last = values[np.arange(starts.start, starts.stop) - 1, 0]
    return np.repeat(last[:, None], horizon, axis=1)


def seasonal_naive_forecast(values: np.ndarray, starts: range, horizon: int, season: int) -> np.ndarray:
    """For step h, the value one (or more) whole seasons before, at or before the origin: [windows, H]."""
    h = np.arange(horizon)
    back = season * np.ceil((h + 1) / season).astype(int)  # smallest multiple of the season > h
    idx = np.arange(starts.start, starts.stop)[:, None] + h[None, :] - back[None, :]
    return values[np.maximum(idx, 0), 0]


def score(y_true: np.ndarray, y_pred: np.ndarray, scaler: Scaler, mase_scale: float) -> dict[str, float]:
    """Metrics of normalized forecasts [windows, H] against normalized truth."""
    err = y_pred - y_true
    true_u, pred_u = scaler.inverse_target(y_true), scaler.inverse_target(y_pred)
    err_u = pred_u - true_u
    denom = np.abs(true_u) + np.abs(pred_u)
    smape = np.where(denom > 0, 2 * np.abs(err_u) / np.where(denom > 0, denom, 1), 0.0)
    mae_u = float(np.mean(np.abs(err_u)))
    return {
        "test_mse": float(np.mean(err**2)),
        "test_mae": float(np.mean(np.abs(err))),
        "test_rmse_units": float(np.sqrt(np.mean(err_u**2))),
        "test_mae_units": mae_u,
        "test_smape": float(100 * np.mean(smape)),
        "test_mase": mae_u / mase_scale if mase_scale > 0 else math.nan,
    }


def mase_scale(train_target: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast on the train split, in units (MASE's denominator)."""
    s = season if season < len(train_target) else 1
    return float(np.mean(np.abs(train_target[s:] - train_target[:-s])))


def interval_metrics(true_units: np.ndarray, pred_units: np.ndarray, halfwidth: np.ndarray) -> dict[str, float]:
    """Share of (window, step) truths inside `forecast ± halfwidth` [H], and the mean interval width."""
    inside = np.abs(true_units - pred_units) <= np.asarray(halfwidth)[None, :]
    return {"test_interval_coverage": float(np.mean(inside)), "test_interval_width_units": float(2 * np.mean(halfwidth))}


def evaluate_forecasts(values: np.ndarray, starts: range, y_pred: np.ndarray, scaler: Scaler,
                       train_target_units: np.ndarray, season: int, halfwidth: list[float] | None = None) -> dict[str, float]:
    """The test metrics a run records (README: "What a run records in MLflow") for the model, Repeat and
    seasonal naive on the same windows; with the intervals' per-step half-widths (units), also their
    empirical coverage."""
    horizon = y_pred.shape[1]
    y_true = target_windows(values, starts, horizon)  # [windows, H]
    scale = mase_scale(train_target_units, season)
    metrics = score(y_true, y_pred, scaler, scale)
    if halfwidth is not None:
        metrics |= interval_metrics(scaler.inverse_target(y_true), scaler.inverse_target(y_pred), halfwidth)
    for name, forecast in (("repeat", repeat_forecast(values, starts, horizon)),
                           ("seasonal_naive", seasonal_naive_forecast(values, starts, horizon, season))):
        metrics |= {f"{name}_{k}": v for k, v in score(y_true, forecast, scaler, scale).items()}
    metrics["season"] = float(season)
    return metrics


def forecast_windows(model: keras.Model, values: np.ndarray, starts: range, cfg: WindowSettings) -> np.ndarray:
    """The model's normalized H-step forecasts for every origin in `starts`: [windows, H]."""
    from tasks.model.network import predict_horizon  # Keras: imported by what forecasts, not by what scores

    batches = make_windows(values, starts, cfg, batch_size=1024, training=False)
    return np.concatenate([predict_horizon(model, x, cfg.mode, cfg.horizon) for x, _ in batches])
