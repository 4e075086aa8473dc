"""Input problems: collected, reported together, one readable line each, exit code 2."""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass

EXAMPLES = 5  # cells quoted per problem; the rest are counted


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


def did_not_start(what: str, output: str, todo: str) -> InputError:
    """Something that could not start, as one line: `what`, the last line its `output` had to say, `todo`."""
    said = [line.strip() for line in output.splitlines() if line.strip()]
    return InputError([Problem(f"{what}: {said[-1]}" if said else what, todo)])


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


def shown_id(value) -> str:
    """A series id as the user types it after --series: 7, not 7.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()


class NothingFinished(RuntimeError):
    """Not one fit of a sweep or backtest finished: one line and exit code 1 (the parent run's table says
    why each failed)."""


class FitFailed(RuntimeError):
    """Training produced no usable model (its loss became NaN or infinite): that fit's run is FAILED, and a
    sweep or backtest goes on without it."""


def rows_text(rows, unit: str) -> str:
    """'Excel rows 102-113, 200 and 4 more': runs of consecutive rows, at most EXAMPLES of them."""
    rows = _row_numbers(rows)
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    shown = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:EXAMPLES])
    more = sum(b - a + 1 for a, b in runs[EXAMPLES:])
    return f"{unit}{'s' if len(rows) > 1 else ''} {shown}" + (f" and {more} more" if more else "") if rows else ""


def longest_run(rows) -> int:
    """The most consecutive row numbers among `rows`."""
    rows = _row_numbers(rows)
    best = run = 0
    for i, r in enumerate(rows):
        run = run + 1 if i and r == rows[i - 1] + 1 else 1
        best = max(best, run)
    return best


def _row_numbers(rows) -> list[int]:
    """The row numbers among `rows`, sorted, without blanks (None, NaN, pandas' NA)."""
    import pandas as pd  # imported here: every command imports this module at its start

    return sorted({int(r) for r in rows if pd.notna(r)})
