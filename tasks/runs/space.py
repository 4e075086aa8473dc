"""A sweep's search space: read and checked from YAML, then proposed trial by trial (full grid, or Optuna).

The file maps setting keys (`section.key`, as `--set` takes them) to what each may be:

    window.input_length: [48, 96, 168]                 # a list: these values (a grid axis)
    model.units: {choice: [16, 32, 64]}                # one of these (Optuna, categorical)
    train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range (Optuna; ints stay ints)

Only lists: every combination is tried (the full grid). Any range or choice: Optuna's TPE sampler,
seeded with `train.seed`, proposes the trials (lists count as choices).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from tasks.errors import InputError, Problem
from tasks.settings import Settings, parse_settings

RANGE_KEYS = {"low", "high", "log", "step"}
# How a trial's name shows its varied values (`L168-u64-lr0.003`); other keys show their own last part.
SHORT = {"window.input_length": "L", "window.horizon": "H", "model.units": "u", "model.layers": "x",
         "model.dropout": "do", "train.learning_rate": "lr", "train.batch_size": "b", "model.level": "level-"}


@dataclass(frozen=True)
class Space:
    axes: dict[str, list | dict]  # key -> list of values, {"choice": [...]} or {"low", "high", "log", "step"}

    @property
    def is_grid(self) -> bool:
        return all(isinstance(v, list) for v in self.axes.values())

    def grid(self) -> list[dict[str, Any]]:
        """Every combination, in file order."""
        return [dict(zip(self.axes, values)) for values in itertools.product(*self.axes.values())]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        out = {}
        for key, axis in self.axes.items():
            if isinstance(axis, list) or "choice" in axis:
                out[key] = optuna.distributions.CategoricalDistribution(axis if isinstance(axis, list) else axis["choice"])
            elif all(isinstance(axis[k], int) for k in ("low", "high")) and isinstance(axis.get("step", 1), int):
                out[key] = optuna.distributions.IntDistribution(axis["low"], axis["high"], log=axis.get("log", False),
                                                                step=axis.get("step", 1))
            else:
                out[key] = optuna.distributions.FloatDistribution(axis["low"], axis["high"], log=axis.get("log", False),
                                                                  step=axis.get("step"))
        return out


def trial_settings(base: Settings, values: dict[str, Any]) -> Settings:
    """The base settings with `values` (`section.key -> value`) set; InputError if the settings refuse them."""
    merged = base.model_dump()
    for key, value in values.items():
        section, name = key.split(".", 1)
        merged[section] = merged[section] | {name: value}
    return parse_settings(merged)


def trial_name(values: dict[str, Any]) -> str:
    """`L168-u64-lr0.003`: the values a trial varies, short enough for the MLflow UI's run list."""
    def show(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return "-".join(f"{SHORT.get(k, k.split('.')[-1])}{show(v)}" for k, v in values.items())


def _axis_problems(key: str, axis: Any, base: Settings, where: str) -> list[Problem]:
    """What is wrong with one axis: its shape, then each value (or both ends of a range) against the settings."""
    if isinstance(axis, list):
        values = axis
    elif isinstance(axis, dict) and set(axis) == {"choice"} and isinstance(axis["choice"], list):
        values = axis["choice"]
    elif isinstance(axis, dict) and {"low", "high"} <= set(axis) <= RANGE_KEYS:
        low, high = axis["low"], axis["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            return [Problem(f"{where}: {key}: low {low} and high {high} must be numbers with low < high",
                            "e.g. {low: 1.0e-4, high: 1.0e-2, log: true}")]
        if axis.get("log") and low <= 0:
            return [Problem(f"{where}: {key}: a log range needs low > 0 (got {low})", "raise low, or drop log: true")]
        values = [low, high]
    else:
        return [Problem(f"{where}: {key}: {axis!s} is not a list, {{choice: [...]}} or {{low: ..., high: ...}}",
                        "write a list of values, or a range {low: A, high: B, log: true}")]
    if not values:
        return [Problem(f"{where}: {key}: no values to try", "list at least one value")]
    problems = []
    for value in values:
        try:
            trial_settings(base, {key: value})
        except InputError as exc:
            allowed = "; ".join(p.what.split(": ", 1)[-1].removeprefix("Value error, ") for p in exc.problems)
            problems.append(Problem(f"{where}: {key}={value} is refused by the settings ({allowed})",
                                    "change or remove that value"))
    return problems


def read_space(path: Path, base: Settings) -> Space:
    """The space in `path`, checked key by key against the settings; InputError naming each problem."""
    where = f"space file {path}"
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError([Problem(f"{where}: cannot be read ({str(exc).splitlines()[0]})",
                                  "pass a readable YAML file (see sweeps/example.yaml)")]) from exc
    if not isinstance(loaded, dict) or not loaded:
        raise InputError([Problem(f"{where}: holds no settings to vary",
                                  "map setting keys to values, e.g. `window.input_length: [48, 96]`")])
    known = base.flat()
    problems = []
    for key, axis in loaded.items():
        if key not in known:
            section = str(key).split(".")[0]
            near = [k for k in known if k.startswith(f"{section}.")]
            todo = f"use one of: {', '.join(near)}" if near else \
                f"name a setting as section.key; the sections are {', '.join(sorted({k.split('.')[0] for k in known}))}"
            problems.append(Problem(f"{where}: {key!r} is not a setting", todo))
        else:
            problems += _axis_problems(key, axis, base, where)
    if problems:
        raise InputError(problems)
    return Space(loaded)


class Proposer:
    """Hands out trial values: the grid's combinations in order, or Optuna's ask/tell with seeded TPE.

    `done` are (values, objective) of trials that finished before (a sweep continued by name): the grid
    skips them, Optuna learns from them. Optuna's constant liar keeps trials that run at the same time apart.
    """

    def __init__(self, space: Space, seed: int, done: list[tuple[dict, float]] = ()):
        self.space, self.asked = space, {}
        finished = [values for values, _ in done]
        if space.is_grid:
            self.todo = [v for v in space.grid() if v not in finished]
            self.study = None
        else:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self.distributions = space.distributions()
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
            self.study = optuna.create_study(direction="minimize", sampler=sampler)
            for values, objective in done:
                if set(values) == set(self.distributions):
                    self.study.add_trial(optuna.trial.create_trial(params=values, distributions=self.distributions,
                                                                   value=objective))

    @property
    def size(self) -> int | None:
        """Trials left in the grid (None: a search space without end)."""
        return len(self.todo) if self.study is None else None

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        """(a handle for `tell`, the next trial's values), or None when the grid is done."""
        if self.study is None:
            return (0, self.todo.pop(0)) if self.todo else None
        trial = self.study.ask(self.distributions)
        self.asked[trial.number] = trial
        return trial.number, trial.params

    def tell(self, handle: int, objective: float | None) -> None:
        """A trial's objective, or None when it failed."""
        if self.study is None:
            return
        trial = self.asked.pop(handle)
        if objective is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, objective)
