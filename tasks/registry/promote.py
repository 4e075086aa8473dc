"""Promotion: the champion/challenger gate, a forced promotion, and rollback along the audit history.

The gate scores the champion and the challenger on the same windows: every origin whose H targets lie
in the newest `promotion.holdout` rows of the data (by default as many rows as the test split) and after
the last row either model's training looked at (`seen_through` in its spec), so neither is scored on data
it was fitted or early-stopped on. Its MSEs are on the data's own scale (the target's units squared), not
the normalized one: each model normalizes with the statistics of its own training data, so only the raw
scale is common to both. The challenger takes `champion` if its MSE is below the champion's x (1 - margin)
and, when required, below Repeat's on the same windows. Models that cannot be scored on the same windows
(another target, horizon or frequency) are `not_compared`: the challenger stays the challenger.

Every alias move holds the model's registry lock (tasks/tracking/locks.py) and is compare-and-set: the gate
moves `champion` only if the champion it scored against still holds it; if another process moved it
meanwhile, the gate scores again against the new one, under the lock, and says so in its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem
from tasks.model.evaluate import forecast_windows, repeat_forecast
from tasks.prepare.split import _count
from tasks.prepare.window import target_windows
from tasks.registry.forecast import Forecaster, load_forecaster, read_model_input
from tasks.data.panel import Prepared
from tasks.registry.pyfunc import SERIES, spec_scaler, spec_window
from tasks.settings import PromotionSettings, Settings
from tasks.tracking import registry, runs
from tasks.tracking.locks import registry_lock

CHAMPION, CHALLENGER = "champion", "challenger"
PROMOTED, KEPT, NOT_COMPARED = "promoted", "kept", "not_compared"


@dataclass(frozen=True)
class Verdict:
    decision: str  # PROMOTED, KEPT or NOT_COMPARED
    reason: str
    scores: dict[str, float]  # gate_challenger_mse, gate_champion_mse (if any), gate_repeat_mse, gate_windows; {} unscored


@dataclass(frozen=True)
class GateResult:
    model_name: str
    challenger: str  # version numbers
    champion: str | None  # the champion the challenger met (None: there was none)
    decision: str  # PROMOTED, KEPT or NOT_COMPARED
    reason: str
    scores: dict[str, float]

    def __str__(self) -> str:
        return f"version {self.challenger} {self.decision}: {self.reason}"


def gate_origins(n_rows: int, settings: Settings, lookback: int, horizon: int, unseen: int = 0) -> range:
    """Origins whose H targets lie in the newest holdout rows and from row `unseen` on; lookback may reach
    into earlier rows."""
    holdout = _count(settings.promotion.holdout or settings.split.test, n_rows)
    return range(max(n_rows - holdout, lookback, unseen), n_rows - horizon + 1)


def first_unseen_row(index: pd.Index, spec: dict) -> int:
    """The first row of `index` after the last one the model's training looked at."""
    seen = spec["seen_through"]  # ISO time, or a step number when the series has no time column
    return int(index.searchsorted(pd.Timestamp(seen) if isinstance(seen, str) else seen, side="right"))


def series_spec(spec: dict, series_id: str | None) -> dict:
    """The spec of one series of a model: the model's own for a model of one series (`series_id` None)."""
    if series_id is None:
        return spec
    part = spec[SERIES][series_id]
    return spec | {key: part[key] for key in ("scaler", "seen_through") if key in part} | {"target": part["column"]}


def forecast_units(forecaster: Forecaster, series: pd.DataFrame, starts: range, series_id: str | None = None
                   ) -> np.ndarray:
    """The model's forecasts from every origin [windows, H] in the target's units, batched through Keras."""
    spec = series_spec(forecaster.spec, series_id)
    scaler = spec_scaler(spec)
    normalized = forecast_windows(forecaster.keras_model, scaler.transform(series), starts, spec_window(spec))
    return scaler.inverse_target(normalized)


def comparable(challenger: dict, champion: dict | None) -> list[str]:
    """Why the two models cannot be scored on the same windows: another target, horizon, frequency or set
    of series, or a model that does not record where its training data ended. Empty when they can."""
    specs = [challenger] if champion is None else [challenger, champion]
    alike = champion is not None and (SERIES in champion) == (SERIES in challenger)  # both of one, or of several
    same_layout = alike and champion.get("id_column") == challenger.get("id_column")
    keys = ("target", "horizon", "frequency") if same_layout else ("horizon", "frequency")
    why = [f"champion and challenger differ in {key}: {champion[key]!r} vs {challenger[key]!r}"
           for key in keys if champion is not None and champion[key] != challenger[key]]
    if champion is not None and not alike:
        several, one = ("challenger", "champion") if SERIES in challenger else ("champion", "challenger")
        why.append(f"the {several} forecasts several series, the {one} one")
    elif champion is not None and SERIES in challenger and champion.get("id_column") != challenger.get("id_column"):
        def layout(id_column: str | None) -> str:
            return "a wide sheet (a column per series)" if id_column is None else f"a long sheet (ids in {id_column!r})"
        why.append(f"the champion reads {layout(champion.get('id_column'))}, the challenger "
                   f"{layout(challenger.get('id_column'))}")
    elif champion is not None and SERIES in challenger and set(champion[SERIES]) != set(challenger[SERIES]):
        why.append(f"champion and challenger forecast other series ({', '.join(champion[SERIES])} vs "
                   f"{', '.join(challenger[SERIES])}); the gate compares them on the same ones")
    if any("seen_through" not in spec for spec in specs):
        why.append("a model does not record where its training data ended (logged before the gate checked it)")
    return why


def judge(data: Prepared, challenger: Forecaster, champion: Forecaster | None, settings: Settings) -> Verdict:
    """The gate's verdict on `data`: scores of challenger, champion and Repeat on the same newest windows
    that neither model was trained on, and the decision they give. The score is the MSE in the target's
    units squared; with several series, each series' errors in units of its standard deviation over
    `data` (the same scale for both models, whatever statistics each normalized with), pooled over series
    and windows."""
    spec, models = challenger.spec, [f for f in (challenger, champion) if f is not None]
    why = comparable(spec, champion.spec if champion else None)
    missing = missing_inputs(data, challenger, champion)
    if missing:
        why.append(f"the data lacks {', '.join(missing)} that the models read")
    if why:
        return Verdict(NOT_COMPARED, "; ".join(why) + "; promote --version N --force decides by hand", {})
    lookback = max(f.spec["input_length"] for f in models)
    members = {m.id: m for m in data.members}
    pieces = [(i, members[i].series) for i in spec[SERIES]] if SERIES in spec else [(None, data.series)]
    errors: dict[str, list[np.ndarray]] = {"challenger": [], "champion": [], "repeat": []}
    windows, short = 0, []
    for series_id, series in pieces:
        unseen = max(first_unseen_row(series.index, series_spec(f.spec, series_id)) for f in models)
        starts = gate_origins(len(series), settings, lookback, spec["horizon"], unseen)
        if len(starts) == 0:
            after = max(len(series) - unseen, 0)
            short.append(f"{after} of series {series_id}'s {len(series)} rows" if series_id
                         else f"{after} of the data's {len(series)} rows")
            continue
        target = series[[series_spec(spec, series_id)["target"]]].to_numpy()  # [rows, 1], units
        truth = target_windows(target, starts, spec["horizon"])  # [windows, H]
        # Several series: each in units of its own spread, so that no series' units outweigh the others'.
        scale = 1.0 if series_id is None else float(np.std(target)) or 1.0
        forecasts = {"challenger": forecast_units(challenger, series, starts, series_id),
                     "repeat": repeat_forecast(target, starts, spec["horizon"])}
        if champion is not None:
            forecasts["champion"] = forecast_units(champion, series, starts, series_id)
        for name, forecast in forecasts.items():
            errors[name].append(forecast - truth if series_id is None else (forecast - truth) / scale)
        windows += len(starts)
    if short and not windows:
        seen = ", ".join(f"version {f.version} through {f.spec['seen_through']}" for f in models)
        return Verdict(KEPT, f"too few rows to score fairly: {'; '.join(short)} come after the models' training "
                             f"data ({seen}), and a gate window needs {spec['horizon']} of them in its newest "
                             "stretch; pass newer data", {})

    def mse(name: str) -> float:
        return float(np.mean(np.concatenate(errors[name]) ** 2))

    scores = {"gate_challenger_mse": mse("challenger"), "gate_repeat_mse": mse("repeat"), "gate_windows": float(windows)}
    if champion is not None:
        scores["gate_champion_mse"] = mse("champion")
    decision, reason = decide(scores, settings.promotion)
    if short:  # several series, some without new rows enough: the others decide
        reason += f"; not scored, too few rows after the models' training data: {'; '.join(short)}"
    return Verdict(decision, reason, scores)


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


def load_candidates(model_name: str, version: str | None) -> tuple[Forecaster, Forecaster | None]:
    """The challenger (`version`, else the alias's holder) and the champion; InputError if either is unknown."""
    challenger = load_forecaster(f"models:/{model_name}/{version}" if version else f"models:/{model_name}@{CHALLENGER}")
    return challenger, champion_now(model_name)


def champion_now(model_name: str) -> Forecaster | None:
    held = registry.alias_run(model_name, CHAMPION)
    return load_forecaster(f"models:/{model_name}/{held[0]}") if held else None


def apply_decision(model_name: str, challenger: Forecaster, champion: Forecaster | None, verdict: Verdict,
                   prepared: Prepared, settings: Settings, data: str) -> GateResult:
    """Under the registry lock: if `champion` is no longer the champion, judge again against the one that
    is; record the decision and scores on the challenger's run and version; if promoted, move `champion`
    and drop `challenger` when this version holds it. Nothing moves before this step, so bad input leaves
    the registry as it was."""
    with registry_lock(model_name):
        held = registry.alias_run(model_name, CHAMPION)
        now, met = held[0] if held else None, champion.version if champion else None
        # (When the challenger holds `champion` already, this is a retry of this very decision.)
        if now not in (met, challenger.version):
            champion = champion_now(model_name)
            verdict = judge(prepared, challenger, champion, settings)
            verdict = replace(verdict, reason=f"judged again: version {now or 'none'} replaced {met or 'none'} "
                                              f"as champion while the gate scored; {verdict.reason}")
        tags = {"promotion_decision": verdict.decision, "promotion_reason": verdict.reason,
                "gate_champion_version": champion.version if champion else "none", "gate_data": str(Path(data).resolve())}
        runs.log_metrics(challenger.run_id, verdict.scores)
        runs.set_run_tags(challenger.run_id, tags)
        registry.set_version_tags(model_name, challenger.version, tags | {k: f"{v:.6g}" for k, v in verdict.scores.items()})
        if verdict.decision == PROMOTED:
            registry.change_alias(model_name, CHAMPION, challenger.version, f"promotion gate: {verdict.reason}")
            if (registry.alias_run(model_name, CHALLENGER) or ("",))[0] == challenger.version:
                registry.change_alias(model_name, CHALLENGER, None, f"version {challenger.version} became champion")
    return GateResult(model_name, challenger.version, champion.version if champion else None, verdict.decision,
                      verdict.reason, verdict.scores)


def force_champion(model_name: str, version: str, reason: str) -> str | None:
    """Make `version` the champion without the gate; returns the version it replaced (or None)."""
    registry.model_version(model_name, version)
    with registry_lock(model_name):
        held = registry.alias_run(model_name, CHAMPION)
        registry.change_alias(model_name, CHAMPION, str(version), f"forced: {reason}")
    return held[0] if held else None


def rollback_champion(model_name: str, reason: str) -> tuple[str, str]:
    """Give `champion` back to the version that held it before the last change not yet rolled back (the
    audit history's trail: two rollbacks go back two changes); returns (from, to)."""
    with registry_lock(model_name):
        held = registry.alias_run(model_name, CHAMPION)
        if held is None:
            raise InputError([Problem(f"model {model_name!r} has no champion to roll back", "promote a version first")])
        trail = registry.alias_trail(registry.history(model_name), CHAMPION)
        if trail[-1:] != [held[0]]:
            raise InputError([Problem(f"champion version {held[0]} of {model_name!r} was set outside lstm-pipeline "
                                      "(the audit history does not show it)", "force a version instead: promote --version N --force")])
        if len(trail) < 2:
            raise InputError([Problem(f"champion version {held[0]} of {model_name!r} has no earlier champion to return to",
                                      "force a version instead: promote --version N --force")])
        previous = trail[-2]
        registry.model_version(model_name, previous)  # InputError if it has been deleted since
        registry.change_alias(model_name, CHAMPION, previous, f"rollback from version {held[0]}: {reason}",
                              action=registry.ROLLBACK)
    return held[0], previous


@task(cache_policy=NO_CACHE)
def gate_candidates(model_name: str, version: str | None) -> tuple[Forecaster, Forecaster | None]:
    return load_candidates(model_name, version)


def missing_inputs(data: Prepared, challenger: Forecaster, champion: Forecaster | None) -> list[str]:
    """What the gate's forecasts read that `data` lacks: the challenger's series, the target and both
    models' features (as `column(s) ...` and `series ...`)."""
    spec = challenger.spec
    features = [*spec["features"], *(champion.spec["features"] if champion else [])]
    members = {m.id: m for m in data.members} if data.several else {}
    if SERIES in spec:
        absent = [i for i in spec[SERIES] if i not in members]
        present = [members[i] for i in spec[SERIES] if i in members]
        columns = {c for m in present for c in m.series.columns}
        needed = [*dict.fromkeys([*(members[i].summary.target for i in spec[SERIES] if i in members), *features])]
    else:
        absent, columns = [], set(data.series.columns) if not data.several else set()
        needed = [spec["target"], *dict.fromkeys(features)]
    missing = [c for c in needed if c not in columns]
    return ([f"column(s) {', '.join(missing)}"] if missing else []) + ([f"series {', '.join(absent)}"] if absent else [])


@task(cache_policy=NO_CACHE)
def read_gate_data(data: str, settings: Settings, challenger: Forecaster, champion: Forecaster | None) -> Prepared:
    """DATA, validated, with the series and columns both models read."""
    extra = tuple(champion.spec["features"]) if champion else ()
    return read_model_input(Path(data), settings.data, challenger.spec, extra)


@task(cache_policy=NO_CACHE)
def score_gate(data: Prepared, challenger: Forecaster, champion: Forecaster | None, settings: Settings) -> Verdict:
    return judge(data, challenger, champion, settings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def promote_model(model_name: str, challenger: Forecaster, champion: Forecaster | None, verdict: Verdict,
                  prepared: Prepared, settings: Settings, data: str) -> GateResult:
    return apply_decision(model_name, challenger, champion, verdict, prepared, settings, data)
