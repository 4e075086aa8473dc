"""Rolling-origin backtest: where the folds lie, and what their scores add up to.

Expanding window: fold k's model trains on the rows before its origin (split into train and val in the
settings' train:val proportion, so its normalization statistics come from its own train rows only) and is
scored on every window whose targets lie in [origin, origin + fold size). The folds tile the rows that end
where the settings' test split ends; by default each is as long as that test split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem
from tasks.prepare.split import Bounds, split_bounds
from tasks.prepare.window import origins
from tasks.report.plot import plot_forecasts
from tasks.settings import Settings, WindowSettings
from tasks.tracking import runs

if TYPE_CHECKING:  # tasks.runs.fit imports TensorFlow; planning folds should not
    from tasks.data.panel import Prepared
    from tasks.runs.fit import FitResult

SCORES = ["test_mse", "test_mae", "repeat_test_mse", "seasonal_naive_test_mse", "val_mse"]


@dataclass(frozen=True)
class Fold:
    number: int  # 1-based
    bounds: Bounds  # train and val before the origin; test: the fold's own rows

    @property
    def origin(self) -> int:
        """The first target row the fold is scored on."""
        return self.bounds.test[0]

    def params(self, index: pd.Index) -> dict[str, Any]:
        """What its run logs besides the fit's params."""
        return {"fold.number": self.number, "fold.origin": self.origin, "fold.origin_time": str(index[self.origin])}


def _before(origin: int, share: float) -> tuple[int, int]:
    """(train rows, val rows) of the rows before `origin`."""
    train = int(round(origin * share))
    return train, origin - train


def least_origin(settings: Settings, share: float) -> int:
    """Fewest rows before a fold's origin that give its train split L + H rows and its val split H."""
    L, H = settings.window.input_length, settings.window.horizon
    origin = max(math.ceil((L + H) / share), math.ceil(H / (1 - share)))
    # Rounding the train share can cost a row on either side; two steps past the bound settle it.
    for candidate in range(max(origin - 2, 1), origin + 3):
        train, val = _before(candidate, share)
        if train >= L + H and val >= H:
            return candidate
    return origin + 3


def check_span(data: Prepared) -> None:
    """Folds are rows counted back from the end of the data, the same rows of every series: a backtest of
    several series needs them to span the same times (a wide sheet's do). InputError when they do not."""
    first, *others = data.members
    apart = [m for m in others if not m.series.index.equals(first.series.index)]
    if data.several and apart:
        spans = "; ".join(f"{m.id}: {m.summary.start} to {m.summary.end}" for m in [first, *apart[:4]])
        raise InputError([Problem(f"{data.source}: a backtest of several series needs them to span the same times "
                                  f"({spans})", "backtest the series that share a span together (--series A,B)")])


def plan_folds(n_rows: int, settings: Settings, folds: int, fold_size: int | None) -> list[Fold]:
    """The folds, or InputError (before any training) when the rows are too few for them."""
    split = split_bounds(n_rows, settings.split)
    end, size = split.test[1], fold_size or split.rows()["test"]
    train, val = split.rows()["train"], split.rows()["val"]
    share = train / (train + val)
    H = settings.window.horizon
    if size < H:
        raise InputError([Problem(f"--fold-size {size} is shorter than window.horizon ({H}): no window fits a fold",
                                  f"pass --fold-size {H} or more")])
    first = end - folds * size
    needed = least_origin(settings, share)
    if first < needed:
        raise InputError([Problem(
            f"a backtest of {folds} folds of {size:,} rows needs {needed + folds * size:,} rows up to the end of the "
            f"test split: the first fold's model trains on {needed:,} rows before it (train:val {train}:{val}, with "
            f"window.input_length {settings.window.input_length} + window.horizon {H} to train on and "
            f"{H} to validate on); the data has {end:,}",
            "lower --folds or --fold-size, or window.input_length / window.horizon, or pass more data")])
    plan = []
    for k in range(folds):
        origin = first + k * size
        t, _ = _before(origin, share)
        plan.append(Fold(k + 1, Bounds((0, t), (t, origin), (origin, origin + size))))
    return plan


def refit_once(plan: list[Fold]) -> Bounds:
    """One model for every fold: trained as the first fold's, scored on all the folds' rows."""
    first = plan[0].bounds
    return Bounds(first.train, first.val, (first.test[0], plan[-1].bounds.test[1]))


@dataclass(frozen=True)
class Outcome:
    """A fold's run and what its fit gave: with `--refit once` every fold shares the one fit, and takes
    its own segment of it."""

    fold: Fold
    run_id: str
    fit: FitResult | None  # None: the fit failed
    error: str | None
    shared: bool = False  # the refit-once fit, scored on `fit.segments[fold.number - 1]`

    @property
    def metrics(self) -> dict[str, float] | None:
        if self.fit is None:
            return None
        return self.fit.segments[self.fold.number - 1] | {"val_mse": self.fit.metrics["val_mse"]} if self.shared \
            else self.fit.metrics

    def forecast(self, index: pd.Index, window: WindowSettings) -> tuple[str, pd.Index, np.ndarray]:
        """(label, the times of its test targets, forecasts [windows, H] in units) of this fold."""
        part = origins(self.fold.bounds.test, window, training=False)
        first = self.fit.test_starts[0]
        return f"fold {self.fold.number}", index[part.start:part.stop - 1 + window.horizon], \
            self.fit.test_forecast[part.start - first:part.stop - first]

    def record(self, index: pd.Index) -> dict[str, Any]:
        """Its row of folds.csv."""
        fold, metrics = self.fold, self.metrics or {}
        return {"fold": fold.number, "origin_row": fold.origin, "origin": str(index[fold.origin]),
                "train_rows": fold.bounds.rows()["train"], "val_rows": fold.bounds.rows()["val"],
                "test_rows": fold.bounds.rows()["test"], **{k: metrics.get(k, math.nan) for k in SCORES},
                "status": "FAILED" if self.error else "FINISHED", "run_id": self.run_id, "failure": self.error or ""}


def fold_table(outcomes: list[Outcome], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame([o.record(index) for o in sorted(outcomes, key=lambda o: o.fold.number)])


def summarize(table: pd.DataFrame) -> dict[str, float]:
    """The parent's metrics: means over the finished folds (and the spread of the model's MSE)."""
    done = table[table["status"] == "FINISHED"]
    return {
        "backtest_mse": float(done["test_mse"].mean()),
        "backtest_mse_std": float(done["test_mse"].std(ddof=1)) if len(done) > 1 else 0.0,
        "backtest_mae": float(done["test_mae"].mean()),
        "repeat_backtest_mse": float(done["repeat_test_mse"].mean()),
        "seasonal_naive_backtest_mse": float(done["seasonal_naive_test_mse"].mean()),
        "backtest_val_mse": float(done["val_mse"].mean()),
        "folds_finished": float(len(done)),
    }


@task(cache_policy=NO_CACHE)
def log_backtest(parent: str, outcomes: list[Outcome], data: Prepared, window: WindowSettings) -> pd.DataFrame:
    """folds.csv (also a Prefect table artifact), the means, the MSE at each horizon step averaged over the
    folds (`backtest_mse_by_step`, a curve over step = 1..H) and every fold's forecasts over the actual
    series with the origins marked; returns the fold table."""
    index = data.series.index
    table = fold_table(outcomes, index)
    runs.log_text(parent, table.to_csv(index=False), "folds.csv")
    create_table_artifact(json.loads(table.to_json(orient="records")), key="backtest-folds",
                          description="Every fold of the backtest")
    finished = [o for o in outcomes if o.fit is not None]
    runs.log_metrics(parent, summarize(table) if finished else {"folds_finished": 0.0})
    if not finished:
        return table
    # One fit shared by every fold (--refit once) counts once.
    curves = {o.fit.run_id: o.fit.step_mse for o in finished}.values()
    for h, mse in enumerate(np.mean(list(curves), axis=0), start=1):
        runs.log_metrics(parent, {"backtest_mse_by_step": float(mse)}, step=h)
    forecasts = [o.forecast(index, window) for o in sorted(finished, key=lambda o: o.fold.number)]
    marks = [index[o.fold.origin] for o in outcomes]
    runs.log_figure(parent, plot_forecasts(data.series[data.summary.target], forecasts,
                                           "Backtest: every fold's forecasts (fold origins dashed)", marks),
                    "backtest_forecasts.png")
    return table
