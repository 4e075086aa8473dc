"""Stage 8, plot: figures for a run. Each function returns a Figure; tracking saves and logs it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and workers without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter
from prefect import task
from prefect.cache_policies import NO_CACHE


def draw_future(ax, actual: pd.Series, future: pd.DataFrame, title: str) -> None:
    """The forecast after the end of `actual`, with its prediction interval as a band when the model has one."""
    if "lower" in future:
        ax.fill_between(future["timestamp"], future["lower"], future["upper"], color="tab:orange", alpha=0.25, lw=0,
                        label="prediction interval")
    ax.plot(future["timestamp"], future["forecast"], color="tab:orange", lw=1.8, label=f"next {len(future)} steps")
    ax.axvline(actual.index[-1], color="0.6", ls="--", lw=0.8)
    ax.set(title=title, ylabel=actual.name)
    ax.legend(loc="upper left")


def plot_forecast(actual: pd.Series, test_index: pd.DatetimeIndex, test_forecast: np.ndarray,
                  future: pd.DataFrame | None, title: str) -> Figure:
    """Test period: actual vs forecasts from every H-th origin (so they tile without overlap);
    then, when given, the next H steps after the end of the data."""
    horizon = test_forecast.shape[1]
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    shown = actual.loc[test_index[0] - (test_index[1] - test_index[0]) * horizon:]
    ax.plot(shown.index, shown.to_numpy(), color="0.35", lw=1, label="actual")
    tiles = range(0, len(test_forecast), horizon)
    for n, i in enumerate(tiles):
        ax.plot(test_index[i:i + horizon], test_forecast[i][: len(test_index[i:i + horizon])],
                color="tab:blue", lw=1.2, label="test forecast (every H-th origin)" if n == 0 else None)
    if future is not None:
        draw_future(ax, actual, future, title)
    else:
        ax.set(title=title, ylabel=actual.name)
        ax.legend(loc="upper left")
    return fig


def plot_future(actual: pd.Series, future: pd.DataFrame, title: str) -> Figure:
    """The latest history (four horizons of it) and the forecast that continues it."""
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    shown = actual.iloc[-4 * len(future):]
    ax.plot(shown.index, shown.to_numpy(), color="0.35", lw=1, label="actual")
    draw_future(ax, actual, future, title)
    return fig


def plot_losses(history: dict[str, list[float]]) -> Figure:
    """Train and validation loss per epoch, the best validation epoch marked, and the val loss of the
    weights training started from (epoch 0), which the model keeps unless an epoch beats it."""
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker=".", label="loss (train)")
    values = list(history["loss"])
    if "val_loss" in history:
        start = history.get("val_loss_start", [])
        val, val_epochs = start + history["val_loss"], np.arange(1 - len(start), len(epochs) + 1)
        ax.plot(val_epochs, val, marker=".", label="val_loss")
        if start:
            ax.axhline(start[0], color="gray", linestyle=":", label=f"val_loss of the start (epoch 0): {start[0]:.4g}")
        best = int(np.argmin(val))
        ax.scatter([val_epochs[best]], [val[best]], color="tab:red", zorder=3,
                   label=f"best val_loss: epoch {val_epochs[best]}" + (" (the start)" if val_epochs[best] == 0 else ""))
        values += val
    # Log scale only when the losses span a decade: within one, its few labelled ticks (4e-2, 6e-2)
    # leave the curves unreadable.
    spread = max(values) / max(min(values), 1e-12)
    ax.set(xlabel="epoch", ylabel="loss (normalized)", yscale="log" if spread > 10 else "linear", title="Loss curves")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g") if spread > 10 else NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return fig


@task(cache_policy=NO_CACHE)
def make_figures(series: pd.DataFrame, target: str, test_starts: range, test_forecast_units: np.ndarray,
                 future: pd.DataFrame | None, history: dict[str, list[float]], title: str) -> dict[str, Figure]:
    return {
        "forecast.png": plot_forecast(series[target], series.index[test_starts.start:test_starts.stop],
                                      test_forecast_units, future, title),
        "loss_curves.png": plot_losses(history),
    }
