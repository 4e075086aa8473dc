"""Stage 3, split: chronological train | val | test row ranges.

Val and test windows take their lookback (L rows) from the rows before them, so a split only has to
hold its targets; rows after the test split are left unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.settings import Settings, SplitSettings


@dataclass(frozen=True)
class Bounds:
    """Half-open row ranges [start, stop) of each split's targets."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def rows(self) -> dict[str, int]:
        return {name: stop - start for name, (start, stop) in self.__dict__.items()}


def _count(value: float | int, n_rows: int) -> int:
    return int(value) if value >= 1 else int(round(value * n_rows))


def split_bounds(n_rows: int, cfg: SplitSettings) -> Bounds:
    train = _count(cfg.train, n_rows)
    val = _count(cfg.val, n_rows)
    test = _count(cfg.test, n_rows)
    return Bounds((0, train), (train, train + val), (train + val, train + val + test))


def required_rows(settings: Settings) -> int:
    """Fewest rows that give every split at least one window (train also needs its own lookback)."""
    L, H = settings.window.input_length, settings.window.horizon
    minimum = {"train": L + H, "val": H, "test": H}
    # Fixed counts are checked against these minimums by Settings; a fractional split of n rows holds
    # round(f*n) rows, so search for the smallest n that satisfies all.
    n = max(sum(int(v) for v in settings.split.model_dump().values() if v >= 1), 1)
    while True:
        bounds = split_bounds(n, settings.split)
        if bounds.test[1] <= n and all(bounds.rows()[k] >= minimum[k] for k in minimum):
            return n
        n += 1
