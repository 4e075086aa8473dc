"""Input problems: collected, reported together, one readable line each, exit code 2."""

from __future__ import annotations

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


class NothingFinished(RuntimeError):
    """Not one fit of a sweep or backtest finished: one line and exit code 1 (the parent run's table says
    why each failed)."""
