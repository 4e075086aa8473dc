"""Input problems: collected, reported together, one readable line each, exit code 2."""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    what: str  # what is wrong and where (file, sheet, column, Excel rows)
    todo: str = ""  # what the user can do about it

    def __str__(self) -> str:
        return f"{self.what}; {self.todo}" if self.todo else self.what


class InputError(Exception):
    """Bad input from the user (data, config): never a traceback, always exit code 2."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


def count(n: int, noun: str) -> str:
    """'1 cell', '3 cells'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def shown(value) -> str:
    """A cell's value as a user writes it: text quoted ('n/a'), 00:25:00, 2016-07-01 13:00:00, 12.5;
    never a Python repr such as datetime.time(0, 25) or np.float64(12.5)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.date):  # datetime and pandas' Timestamp too: 2016-07-01 13:00:00
        return str(value)
    if isinstance(value, numbers.Number):
        return str(value.item() if hasattr(value, "item") else value)
    return str(value)


class NothingFinished(RuntimeError):
    """Not one fit of a sweep or backtest finished: one line and exit code 1 (the parent run's table says
    why each failed)."""


class FitFailed(RuntimeError):
    """Training produced no usable model (its loss became NaN or infinite): that fit's run is FAILED, and a
    sweep or backtest goes on without it."""
