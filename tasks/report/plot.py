"""Stage 8, plot: figures for a run. Each function returns a Figure; tracking saves and logs it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and workers without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
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


def _actual(ax, actual: pd.Series, first: pd.Timestamp, horizon: int, last: pd.Timestamp | None = None) -> None:
    """The actual series from one horizon before `first` to `last` (default: its end)."""
    at = actual.index.get_loc(first)
    ax.plot(actual.iloc[max(0, at - horizon):].loc[:last], color="0.35", lw=1, label="actual")


def _tiles(ax, index: pd.Index, forecast: np.ndarray, color, label: str) -> None:
    """Forecasts [windows, H] from every H-th origin of `index` (their first target steps), so they tile."""
    horizon = forecast.shape[1]
    for n, i in enumerate(range(0, len(forecast), horizon)):
        ax.plot(index[i:i + horizon], forecast[i][: len(index[i:i + horizon])], color=color, lw=1.2,
                label=label if n == 0 else None)


def plot_forecast(actual: pd.Series, test_index: pd.DatetimeIndex, test_forecast: np.ndarray,
                  future: pd.DataFrame | None, title: str) -> Figure:
    """Test period: actual vs forecasts from every H-th origin (so they tile without overlap);
    then, when given, the next H steps after the end of the data. `test_index`: the times of the
    test targets."""
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    _actual(ax, actual, test_index[0], test_forecast.shape[1])
    _tiles(ax, test_index, test_forecast, "tab:blue", "test forecast (every H-th origin)")
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


def plot_futures(series: list[tuple[str, pd.Series, pd.DataFrame]], title: str) -> Figure:
    """`plot_future` for several series, a small panel each (`id, actual, its forecast rows`)."""
    cols = min(4, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.5 * rows + 0.6), layout="constrained", squeeze=False)
    for ax, (label, actual, future) in zip(axes.flat, series):
        shown = actual.iloc[-4 * len(future):]
        ax.plot(shown.index, shown.to_numpy(), color="0.35", lw=1)
        ax.fill_between(future["timestamp"], future["lower"], future["upper"], color="tab:orange", alpha=0.25, lw=0)
        ax.plot(future["timestamp"], future["forecast"], color="tab:orange", lw=1.5)
        ax.axvline(actual.index[-1], color="0.6", ls="--", lw=0.8)
        ax.set_title(label, fontsize="small")
        _few_ticks(ax, shown.index)
    for ax in axes.flat[len(series):]:
        ax.axis("off")
    fig.suptitle(f"{title}\nlatest values (grey), forecast with its prediction interval (orange)", fontsize="medium")
    return fig


def _few_ticks(ax, index: pd.Index) -> None:
    """Three or four labels on a small panel's time axis."""
    ax.tick_params(labelsize="x-small")
    if isinstance(index, pd.DatetimeIndex):
        ticks = AutoDateLocator(minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(ticks)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(ticks))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(3, integer=True))


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


def plot_forecasts(actual: pd.Series, forecasts: list[tuple[str, pd.Index, np.ndarray]], title: str,
                   marks: list[pd.Timestamp] = ()) -> Figure:
    """Several forecasts over the actual series, each tiled from every H-th origin (`label, the times of its
    test targets, forecasts [windows, H]`); `marks`: dashed lines (fold origins)."""
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    _actual(ax, actual, min(index[0] for _, index, _ in forecasts), forecasts[0][2].shape[1],
            max(index[-1] for _, index, _ in forecasts))
    for n, (label, index, forecast) in enumerate(forecasts):
        _tiles(ax, index, forecast, f"C{n % 9 + 1}", label)
    for mark in marks:
        ax.axvline(mark, color="0.5", ls="--", lw=0.8)
    ax.set(title=title, ylabel=actual.name)
    ax.legend(loc="upper left", fontsize="small")
    return fig


MAX_PANELS = 16  # series shown one panel each; past that, the worst by test_mse


def plot_series_panels(panels: list[tuple[str, pd.Series, pd.Index, np.ndarray]], title: str) -> Figure:
    """One small panel per series: its test forecasts from every H-th origin over the actual series
    (`label, actual, the times of its test targets, forecasts [windows, H]`). No legend: the caption says
    which line is which."""
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.5 * rows + 0.6), layout="constrained", squeeze=False)
    for ax, (label, actual, index, forecast) in zip(axes.flat, panels):
        _actual(ax, actual, index[0], forecast.shape[1], index[-1])
        _tiles(ax, index, forecast, "tab:blue", "test forecast")
        ax.set_title(label, fontsize="small")
        _few_ticks(ax, index)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{title}\nactual (grey), test forecasts from every H-th origin (blue)", fontsize="medium")
    return fig


def plot_objective(table: pd.DataFrame, keys: list[str], objective: str) -> Figure:
    """The objective against each varied setting, one panel each (finished trials; the best in red)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), layout="constrained", squeeze=False)
    done = table[table[objective].notna()]
    best = done[objective].idxmin() if len(done) else None
    for ax, key in zip(axes[0], keys):
        x = done[key]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        x = x if numeric else x.astype(str)
        ax.scatter(x, done[objective], color="tab:blue")
        if best is not None:
            ax.scatter([x[best]], [done[objective][best]], color="tab:red", zorder=3, label="best")
        if numeric and (x > 0).all() and x.max() / x.min() > 20:
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=objective)
    axes[0][0].legend()
    fig.suptitle(f"{objective} by setting ({len(done)} finished trials)")
    return fig


def plot_val_losses(curves: dict[str, list[float]], best: str | None) -> Figure:
    """Every trial's val_loss per epoch, overlaid; the best trial's drawn bold."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for name, values in curves.items():
        bold = name == best
        ax.plot(np.arange(1, len(values) + 1), values, lw=2.2 if bold else 0.9, alpha=1 if bold else 0.6,
                color="tab:red" if bold else None, label=f"{name} (best)" if bold else None, zorder=3 if bold else 2)
    ax.set(xlabel="epoch", ylabel="val_loss (normalized)", yscale="log", title=f"val_loss of {len(curves)} trials")
    if best is not None:
        ax.legend()
    return fig


@task(cache_policy=NO_CACHE)
def make_figures(series: pd.DataFrame, target: str, test_starts: range, test_forecast_units: np.ndarray,
                 future: pd.DataFrame | None, history: dict[str, list[float]], title: str) -> dict[str, Figure]:
    # Targets of the test origins: from the first origin to the last origin's H-th step.
    targets = series.index[test_starts.start:test_starts.stop - 1 + test_forecast_units.shape[1]]
    return {
        "forecast.png": plot_forecast(series[target], targets, test_forecast_units, future, title),
        "loss_curves.png": plot_losses(history),
    }
