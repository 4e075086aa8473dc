"""The one settings object of a run: frozen, strict sections, loaded from YAML plus `--set key=value`."""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, NonNegativeInt, Strict, ValidationError, model_validator

from tasks.errors import InputError, Problem


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


NO_TIME = "none"  # data.time_column / --time-col: no time column, row order is time
ALL = "all"  # --target all / --series all: every series of the workbook
START_DATE = date(2000, 1, 1)


class DataSettings(_Section):
    sheet: str | int | None = None  # None: the first sheet holding the time and target columns
    # None: auto-detect; "none" (NO_TIME): row order is time, steps numbered 0..n-1 (also chosen when no
    # column looks like time)
    time_column: str | None = None
    # None: auto-detect when there is one numeric column. Several series (wide format): names separated
    # by commas (OT,HUFL), or "all" for every column but the time column and the features.
    target: str | None = None
    # Extra numeric input columns (covariates). Not strict: JSON (Prefect parameters) has no tuples.
    features: Annotated[tuple[str, ...], Strict(False)] = ()
    header_row: int | None = None  # 1-based Excel row of the header; None: row 1
    # Long format (an id column such as store or sensor, several series stacked): the id of the one series
    # to use, several ids separated by commas, or "all". None: fine when the id column holds one id.
    series: str | None = None
    # Several series: leave out those that fail validation (the summary says which and why) instead of
    # refusing the data.
    skip_bad_series: bool = False
    fill_gaps: int = 0  # fill runs of up to this many missing steps by interpolation; 0 refuses gaps
    sort: bool = False  # sort rows by time instead of refusing unsorted data
    # strptime format of text dates (e.g. "%d.%m.%Y %H:%M"); None: inferred from every cell of the column
    date_format: str | None = None
    # The day a column of clock times (no dates) starts on; None: START_DATE, said in the summary.
    # Not strict: YAML gives a date, --set text and JSON a string.
    start_date: Annotated[date | None, Strict(False)] = None
    # The zone whose local clock a time column shows (e.g. "Europe/Berlin"): read in that zone and
    # converted to UTC, so a daylight-saving change leaves no repeated or missing hour. None: as written.
    time_zone: str | None = None


SPLITS = ("train", "val", "test")  # in time order
# Float slack for products that are whole numbers on paper (0.15 * 1000 = 150.00000000000003 or 149.99999...).
SLACK = 1e-6
MAX_ROWS = 10**9  # settings that need more rows than this are refused (a million-row sheet is already large)


class SplitSettings(_Section):
    """Chronological split: fractions (< 1) of the rows, or row counts (>= 1); later rows unused."""

    train: float | int = 0.7
    val: float | int = 0.15
    test: float | int = 0.15
    # When the rows are fewer than the row counts take, scale the counts down in proportion (said in the
    # summary) instead of refusing: the seed preset's 800/200/200 on the tutorial's own 800 rows.
    scale_to_fit: bool = False


class WindowSettings(_Section):
    input_length: int = 96  # L
    horizon: int = 24  # H
    mode: Literal["direct", "seq2seq"] = "direct"


class ModelSettings(_Section):
    layers: int = 2
    units: int = 32  # on ETTh1 the LSTM only corrects the linear skip path; 64 units cost 3x the time, gain nothing
    bidirectional: bool = False
    dropout: float = 0.0
    # Each window is shifted by its own level before the LSTM and the level added back after it:
    # the known remedy for a test period whose level differs from training (as on ETTh1: BENCHMARKS.md).
    level: Literal["last", "mean", "none"] = "last"
    linear_skip: bool = True  # a linear map from the window to the horizon, added to the LSTM's output


class TrainSettings(_Section):
    epochs: int = 30
    batch_size: int = 256  # a CPU runs an LSTM step on 256 windows in little more time than on 32
    learning_rate: float = 0.001
    patience: int = 3  # early-stopping patience in epochs; 0 trains all epochs
    seed: int = 42
    loss: Literal["mse", "mae", "huber"] = "mse"
    # XLA: several times faster per step for small batches and layers (the seed preset), no gain at
    # batch 256, and it compiles for seconds first.
    jit_compile: bool = False
    # Threads per TF op, threads running TF ops side by side, and threads gathering the windows
    # (tf.data). One per op is fastest for small LSTMs (handing a small matmul to a second thread costs
    # more than it saves; the seed preset trains 2x faster); one running ops keeps an LSTM's chain of
    # small ops on one core; one gathering is as fast as tf.data's autotuned pool of a thread per core.
    # Pools of a thread per core slowed a sweep's second worker on the other core down (BENCHMARKS.md).
    # 0: TF's defaults, one per core.
    threads: NonNegativeInt = 1


class EvaluateSettings(_Section):
    season: int | None = None  # seasonal-naive period in steps; None: inferred from the frequency
    coverage: float = 0.9  # prediction intervals' coverage (split-conformal on validation residuals)


class TrackingSettings(_Section):
    experiment: str = "lstm-forecast"


class RegistrySettings(_Section):
    model_name: str = "lstm-forecaster"


class PromotionSettings(_Section):
    """The champion/challenger gate: both scored on the same windows of the newest data."""

    margin: float = 0.01  # relative: the challenger's MSE must be below the champion's x (1 - margin)
    require_beat_repeat: bool = True  # ... and below Repeat's (last value held) on the same windows
    holdout: float | int | None = None  # newest rows scored: fraction < 1 or row count; None: as split.test


class Settings(_Section):
    data: DataSettings = DataSettings()
    split: SplitSettings = SplitSettings()
    window: WindowSettings = WindowSettings()
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    tracking: TrackingSettings = TrackingSettings()
    registry: RegistrySettings = RegistrySettings()
    promotion: PromotionSettings = PromotionSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if min(self.window.input_length, self.window.horizon, self.model.layers, self.model.units) < 1:
            raise ValueError("window.input_length, window.horizon, model.layers and model.units must be >= 1")
        splits = {name: getattr(self.split, name) for name in SPLITS}
        for name, value in splits.items():
            if value <= 0 or (value >= 1 and value != int(value)):
                raise ValueError(f"split.{name}={value}: use a fraction below 1 or a whole row count")
        fractions = {k: v for k, v in splits.items() if v < 1}
        if sum(fractions.values()) > 1 + 1e-9:  # 0.1 + 0.2 + 0.7 is 1.0000000000000002 in floating point
            raise ValueError(f"split fractions add up to more than 1 ({_listed(fractions)})")
        for name, minimum in zip(SPLITS, self.split_minimum()):
            count = getattr(self.split, name)
            if 1 <= count < minimum:
                raise ValueError(f"split.{name}={count} rows is fewer than its windows need ({minimum})")
        try:
            self.rows_to_check()
        except ValueError as exc:
            raise ValueError(f"{_listed(splits)}: {exc}") from None
        if self.data.time_zone is not None:
            try:
                ZoneInfo(self.data.time_zone)
            except (ValueError, ZoneInfoNotFoundError):
                raise ValueError(f"data.time_zone={self.data.time_zone}: not a time zone name; use one such as "
                                 "Europe/Berlin or America/New_York") from None
        if not 0 <= self.model.dropout < 1:
            raise ValueError("model.dropout must be in [0, 1)")
        if not 0 < self.evaluate.coverage < 1 or not 0 <= self.promotion.margin < 1:
            raise ValueError("evaluate.coverage must be in (0, 1) and promotion.margin in [0, 1)")
        holdout = self.promotion.holdout
        if holdout is not None and not (0 < holdout < 1 or holdout == int(holdout) >= self.window.horizon):
            raise ValueError(f"promotion.holdout={holdout}: use a fraction below 1 or a whole row count "
                             ">= window.horizon")
        if self.window.mode == "seq2seq" and (self.data.features or self.model.level != "none" or self.model.linear_skip):
            # Seq2seq forecasts by feeding its own predictions back, which needs a univariate window
            # and an output at every position.
            raise ValueError("window.mode=seq2seq needs data.features=[], model.level=none, model.linear_skip=false")
        return self

    def split_minimum(self) -> tuple[int, int, int]:
        """Rows train, val and test each need for one window: train its lookback too, val and test only
        their targets (their lookback comes from the rows before them)."""
        L, H = self.window.input_length, self.window.horizon
        return L + H, H, H

    def rows_to_check(self) -> range:
        """The row counts among which the fewest rows that every larger count also fits lies (the split's
        `required_rows` checks them all at once); ValueError when it lies past MAX_ROWS, or nowhere.

        A fractional split f holds floor(f × n) or one row more, so it fails below (m - 1) / f rows and
        holds from (m + 1) / f on (m: its minimum); the splits fit from the row count on where the
        unclaimed share ceil((1 - sum of fractions) × n) covers the row counts, a count that never shrinks
        as n grows."""
        values = [float(getattr(self.split, name)) for name in SPLITS]
        if self.split.scale_to_fit and min(values) >= 1:
            values = [v / sum(values) for v in values]  # below their total, the counts act as these fractions
        fractions = [(v, m) for v, m in zip(values, self.split_minimum()) if v < 1]
        fixed, unclaimed = sum(v for v in values if v >= 1), 1 - sum(v for v, _ in fractions)
        if fixed and unclaimed <= SLACK:
            raise ValueError("the fractions take every row and leave none for the row counts; lower the "
                             "fractions, or give every split as a row count")
        lo = max([fixed, 1, *((m - 1) / f for f, m in fractions), (fixed - 1) / unclaimed - 1 if fixed else 0])
        hi = max([fixed, 1, *((m + 1) / f + 1 for f, m in fractions), (fixed + 1) / unclaimed + 1 if fixed else 0])
        if hi > MAX_ROWS:
            raise ValueError(f"these splits need over {MAX_ROWS:,} rows before every split holds a window; "
                             "raise the smallest fraction, or give that split as a row count")
        return range(max(int(lo) - 1, 1), math.ceil(hi) + 1)

    def flat(self) -> dict[str, Any]:
        """`section.key -> value`, as logged to MLflow and accepted by `--set`."""
        return {f"{s}.{k}": v for s, section in self.model_dump().items() for k, v in section.items()}


# The original tutorial script: 2x8 LSTM on 96-step windows with next-step targets, batch 7, Adam 0.006,
# 100 epochs, trained on the first 800 rows. It had no validation or test data; here 200 rows each follow,
# and on fewer than 1,200 rows (the tutorial's data is 800 numbers) all three are scaled down alike.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "split": {"train": 800, "val": 200, "test": 200, "scale_to_fit": True},
        "window": {"input_length": 96, "mode": "seq2seq"},
        "model": {"layers": 2, "units": 8, "level": "none", "linear_skip": False, "dropout": 0.0},
        "train": {"epochs": 100, "batch_size": 7, "learning_rate": 0.006, "patience": 0, "jit_compile": True},
    },
}


def _listed(values: dict[str, float]) -> str:
    """'split.train=0.5, split.val=0.5', as a user writes them."""
    return ", ".join(f"split.{k}={v:g}" for k, v in values.items())


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _override(assignment: str) -> dict:
    key, sep, raw = assignment.partition("=")
    if not sep or "." not in key:
        raise InputError([Problem(f"--set {assignment!r} is not of the form section.key=value", "e.g. --set train.epochs=5")])
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:  # not YAML, e.g. a date format: data.date_format=%d.%m.%Y
        value = raw
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; people write it so
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_settings(config: Path | None = None, overrides: list[str] = (), preset: str | None = None) -> Settings:
    """Preset, then YAML file, then `--set` overrides, each changing only what it names."""
    merged: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise InputError([Problem(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")])
        merged = PRESETS[preset]
    if config:
        try:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError([Problem(f"cannot read config file {config}: {exc}", "pass a readable YAML file")]) from exc
        if not isinstance(loaded, dict):
            raise InputError([Problem(f"config file {config} does not hold a mapping of sections", "see configs/")])
        merged = _merge(merged, loaded)
    for assignment in overrides:
        merged = _merge(merged, _override(assignment))
    return parse_settings(merged)


def parse_settings(values: dict[str, Any]) -> Settings:
    """Validate a nested mapping, turning pydantic's errors into one readable problem each."""
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [
            Problem(f"setting {'.'.join(map(str, err['loc'])) or 'config'}: {err['msg'].removeprefix('Value error, ')}",
                    "fix the config or --set value")
            for err in exc.errors()
        ]
        raise InputError(problems) from exc
