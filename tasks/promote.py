"""Promotion: the champion/challenger gate, a forced promotion, and rollback to the previous champion.

The gate scores the champion and the challenger on the same windows: every origin whose H targets lie
in the newest `promotion.holdout` rows of the data (by default as many rows as the test split). Its MSEs
are on the data's own scale (the target's units squared), not the normalized one: each model normalizes
with the statistics of its own training data, so only the raw scale is common to both. The challenger
takes `champion` if its MSE is below the champion's x (1 - margin) and, when required, below Repeat's on
the same windows. Aliases move only through `registry.move_alias`, which records who, when and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import registry, runs
from tasks.errors import InputError, Problem
from tasks.evaluate import forecast_windows, repeat_forecast
from tasks.forecast import Forecaster, load_forecaster, read_model_input
from tasks.pyfunc import spec_scaler, spec_window
from tasks.settings import PromotionSettings, Settings
from tasks.split import _count
from tasks.window import target_windows

CHAMPION, CHALLENGER = "champion", "challenger"
PROMOTED, KEPT = "promoted", "kept"


@dataclass(frozen=True)
class GateResult:
    model_name: str
    challenger: str  # version numbers
    champion: str | None  # the champion the challenger met (None: there was none)
    decision: str  # PROMOTED or KEPT
    reason: str
    scores: dict[str, float]  # gate_challenger_mse, gate_champion_mse (if any), gate_repeat_mse, gate_windows

    def __str__(self) -> str:
        return f"version {self.challenger} {self.decision}: {self.reason}"


def gate_origins(n_rows: int, settings: Settings, lookback: int, horizon: int) -> range:
    """Origins whose H targets lie in the newest holdout rows; lookback may reach into earlier rows."""
    holdout = _count(settings.promotion.holdout or settings.split.test, n_rows)
    return range(max(n_rows - holdout, lookback), n_rows - horizon + 1)


def forecast_units(forecaster: Forecaster, series: pd.DataFrame, starts: range) -> np.ndarray:
    """The model's forecasts from every origin [windows, H] in the target's units, batched through Keras."""
    scaler = spec_scaler(forecaster.spec)
    normalized = forecast_windows(forecaster.keras_model, scaler.transform(series), starts, spec_window(forecaster.spec))
    return scaler.inverse_target(normalized)


def comparable(challenger: dict, champion: dict | None) -> list[Problem]:
    """Two models are scored on the same windows only if they forecast the same target, horizon and frequency."""
    if champion is None:
        return []
    return [Problem(f"champion and challenger differ in {key}: {champion[key]!r} vs {challenger[key]!r}",
                    "they cannot be compared on the same windows; promote with --version N --force")
            for key in ("target", "horizon", "frequency") if champion[key] != challenger[key]]


def score_candidates(series: pd.DataFrame, challenger: Forecaster, champion: Forecaster | None,
                     settings: Settings) -> dict[str, float]:
    """Gate MSEs (target units squared) of challenger, champion and Repeat on the same newest windows."""
    spec = challenger.spec
    problems = comparable(spec, champion.spec if champion else None)
    lookback = max(f.spec["input_length"] for f in (challenger, champion) if f is not None)
    starts = gate_origins(len(series), settings, lookback, spec["horizon"])
    if len(starts) == 0:
        problems.append(Problem(f"the data has {len(series)} rows: too few for gate windows of {lookback} + "
                                f"{spec['horizon']} rows in its newest stretch", "pass more data, or raise promotion.holdout"))
    if problems:
        raise InputError(problems)
    target = series[[spec["target"]]].to_numpy()  # [rows, 1], units
    truth = target_windows(target, starts, spec["horizon"])  # [windows, H]

    def mse(forecast: np.ndarray) -> float:
        return float(np.mean((forecast - truth) ** 2))

    scores = {"gate_challenger_mse": mse(forecast_units(challenger, series, starts)),
              "gate_repeat_mse": mse(repeat_forecast(target, starts, spec["horizon"])), "gate_windows": float(len(starts))}
    if champion is not None:
        scores["gate_champion_mse"] = mse(forecast_units(champion, series, starts))
    return scores


def decide(scores: dict[str, float], cfg: PromotionSettings) -> tuple[str, str]:
    """(PROMOTED or KEPT, why), from the gate MSEs."""
    challenger, repeat = scores["gate_challenger_mse"], scores["gate_repeat_mse"]
    champion = scores.get("gate_champion_mse")
    if not math.isfinite(challenger):
        return KEPT, "the challenger's forecasts are not finite"
    if cfg.require_beat_repeat and not challenger < repeat:
        return KEPT, f"challenger MSE {challenger:.4g} does not beat Repeat's {repeat:.4g}"
    if champion is None:
        return PROMOTED, f"no champion yet; challenger MSE {challenger:.4g} (Repeat {repeat:.4g})"
    bar = champion * (1 - cfg.margin)
    verdict = "<" if challenger < bar else "is not below"
    why = f"challenger MSE {challenger:.4g} {verdict} champion's {champion:.4g} x (1 - {cfg.margin:g}) (Repeat {repeat:.4g})"
    return (PROMOTED if challenger < bar else KEPT), why


def crown(model_name: str, version: str, reason: str, rollback: bool = False) -> None:
    """Move `champion` to `version`. A promotion remembers the champion it replaced (`previous_champion`,
    what rollback returns to); a rollback leaves that trail as it is, so rolling back again goes further back."""
    held = registry.alias_run(model_name, CHAMPION)
    previous = {} if rollback or held is None or held[0] == version else {"previous_champion": held[0]}
    registry.move_alias(model_name, CHAMPION, version, reason, previous)


def load_candidates(model_name: str, version: str | None) -> tuple[Forecaster, Forecaster | None]:
    """The challenger (`version`, else the alias's holder) and the champion; InputError if either is unknown."""
    challenger = load_forecaster(f"models:/{model_name}/{version}" if version else f"models:/{model_name}@{CHALLENGER}")
    champion = registry.alias_run(model_name, CHAMPION)
    return challenger, load_forecaster(f"models:/{model_name}/{champion[0]}") if champion else None


def apply_decision(model_name: str, challenger: Forecaster, champion: Forecaster | None, scores: dict[str, float],
                   cfg: PromotionSettings, data: str) -> GateResult:
    """Record the decision and both scores on the challenger's run and version; move the aliases if promoted.
    Nothing moves before this step, so bad input or models that cannot be compared leave the registry as it was."""
    decision, reason = decide(scores, cfg)
    held = registry.alias_run(model_name, CHALLENGER)
    if held is None or held[0] != challenger.version:
        registry.move_alias(model_name, CHALLENGER, challenger.version, "named for the promotion gate")
    tags = {"promotion_decision": decision, "promotion_reason": reason,
            "gate_champion_version": champion.version if champion else "none", "gate_data": str(Path(data).resolve())}
    runs.log_metrics(challenger.run_id, scores)
    runs.set_run_tags(challenger.run_id, tags)
    registry.set_version_tags(model_name, challenger.version, tags | {k: f"{v:.6g}" for k, v in scores.items()})
    if decision == PROMOTED:
        crown(model_name, challenger.version, f"promotion gate: {reason}")
        registry.drop_alias(model_name, CHALLENGER)
    return GateResult(model_name, challenger.version, champion.version if champion else None, decision, reason, scores)


def force_champion(model_name: str, version: str, reason: str) -> str | None:
    """Make `version` the champion without the gate; returns the version it replaced (or None)."""
    registry.model_version(model_name, version)
    held = registry.alias_run(model_name, CHAMPION)
    crown(model_name, str(version), f"forced: {reason}")
    return held[0] if held else None


def rollback_champion(model_name: str, reason: str) -> tuple[str, str]:
    """Give `champion` back to the version it replaced; returns (from, to)."""
    held = registry.alias_run(model_name, CHAMPION)
    if held is None:
        raise InputError([Problem(f"model {model_name!r} has no champion to roll back", "promote a version first")])
    previous = registry.model_version(model_name, held[0]).tags.get("previous_champion")
    if previous is None:
        raise InputError([Problem(f"champion version {held[0]} of {model_name!r} replaced no earlier champion",
                                  "force a version instead: promote --version N --force")])
    registry.model_version(model_name, previous)  # InputError if it has been deleted since
    crown(model_name, previous, f"rollback from version {held[0]}: {reason}", rollback=True)
    return held[0], previous


@task(cache_policy=NO_CACHE)
def gate_candidates(model_name: str, version: str | None) -> tuple[Forecaster, Forecaster | None]:
    return load_candidates(model_name, version)


def needed_columns(challenger: Forecaster, champion: Forecaster | None) -> list[str]:
    """The value columns the gate's forecasts read: the target and both models' features."""
    features = [*challenger.spec["features"], *(champion.spec["features"] if champion else [])]
    return [challenger.spec["target"], *dict.fromkeys(features)]


@task(cache_policy=NO_CACHE)
def read_gate_data(data: str, settings: Settings, challenger: Forecaster, champion: Forecaster | None) -> pd.DataFrame:
    """DATA, validated, with the columns both models read."""
    extra = tuple(champion.spec["features"]) if champion else ()
    return read_model_input(Path(data), settings.data, challenger.spec, extra)[0]


@task(cache_policy=NO_CACHE)
def score_gate(series: pd.DataFrame, challenger: Forecaster, champion: Forecaster | None,
               settings: Settings) -> dict[str, float]:
    return score_candidates(series, challenger, champion, settings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def promote_model(model_name: str, challenger: Forecaster, champion: Forecaster | None, scores: dict[str, float],
                  cfg: PromotionSettings, data: str) -> GateResult:
    return apply_decision(model_name, challenger, champion, scores, cfg, data)
