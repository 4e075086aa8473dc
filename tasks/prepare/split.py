"""Stage 3, split: chronological train | val | test row ranges.

Val and test windows take their lookback (L rows) from the rows before them, so a split only has to
hold its targets; rows after the test split are left unused.

Fractions become row counts without ever overflowing the data: the fractional splits' boundaries are
their cumulative fractions of n rounded down (floor(0.7n), floor(0.85n), floor(1.0n) = n), so together
they take floor(sum × n) <= n rows, none is lost when the fractions add up to 1, and each split holds at
least floor(fraction × n) rows, a count that never shrinks as n grows. Row counts are taken as given;
with `split.scale_to_fit`, on fewer rows than they add up to, they act as their shares of that total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.settings import SLACK, SPLITS, Settings, SplitSettings


@dataclass(frozen=True)
class Bounds:
    """Half-open row ranges [start, stop) of each split's targets."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def rows(self) -> dict[str, int]:
        return {name: stop - start for name, (start, stop) in self.__dict__.items()}


def _count(value: float | int, n_rows: int) -> int:
    """Rows of one split-like setting on its own (the promotion holdout): a row count, or floor(fraction x n)."""
    return int(value) if value >= 1 else int(value * n_rows + SLACK)


def split_sizes(n_rows: np.ndarray | int, cfg: SplitSettings) -> np.ndarray:
    """Rows of train, val and test for each row count in `n_rows`: [len(n_rows), 3] (vectorised, so that
    `required_rows` and the tests can look at every row count at once)."""
    n = np.atleast_1d(np.asarray(n_rows, dtype=np.int64))[:, None]  # [counts, 1]
    values = np.array([getattr(cfg, name) for name in SPLITS], dtype=float)
    fraction = values < 1
    sizes = np.where(fraction, _from_fractions(np.where(fraction, values, 0.0), n), values.astype(np.int64))
    if cfg.scale_to_fit and not fraction.any():
        # Fewer rows than the counts take: the counts' shares of their total, as fractions.
        short = n[:, 0] < values.sum()
        sizes[short] = _from_fractions(values / values.sum(), n[short])
    return sizes


def _from_fractions(fractions: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Rows of each fraction of n [counts, 1]: differences of floor(cumulative fraction x n), [counts, 3]."""
    cumulative = np.floor(np.cumsum(fractions) * n + SLACK).astype(np.int64)
    return np.diff(cumulative, axis=1, prepend=0)


def scaled_note(n_rows: int, cfg: SplitSettings) -> str | None:
    """What `split.scale_to_fit` did to `n_rows` rows, if anything."""
    counts = [getattr(cfg, name) for name in SPLITS]
    if not cfg.scale_to_fit or min(counts) < 1 or n_rows >= sum(counts):
        return None
    sizes = split_sizes(n_rows, cfg)[0]
    return (f"split: {n_rows} rows are fewer than the {int(sum(counts))} the split's row counts take "
            f"({', '.join(f'{k} {int(v)}' for k, v in zip(SPLITS, counts))}); all three scaled down alike to "
            f"{', '.join(f'{k} {v}' for k, v in zip(SPLITS, sizes))} (split.scale_to_fit)")


def split_bounds(n_rows: int, cfg: SplitSettings) -> Bounds:
    """The splits of `n_rows` rows; their targets end at or before the last row once n_rows >= required_rows."""
    stops = np.cumsum(split_sizes(n_rows, cfg)[0])
    starts = np.r_[0, stops[:-1]]
    return Bounds(*((int(a), int(b)) for a, b in zip(starts, stops)))


def fits(n_rows: np.ndarray, settings: Settings) -> np.ndarray:
    """For each row count: do the splits fit in the data, each with at least one window?"""
    sizes = split_sizes(n_rows, settings.split)
    return (sizes.sum(axis=1) <= np.asarray(n_rows)) & (sizes >= np.array(settings.split_minimum())).all(axis=1)


def required_rows(settings: Settings) -> int:
    """Fewest rows from which on every row count gives every split a window and no split passes the end.

    No search: the condition settles within a short, known range of row counts (`Settings.rows_to_check`,
    which also refuses splits that never settle), checked all at once."""
    candidates = np.array(settings.rows_to_check())
    failing = candidates[~fits(candidates, settings)]
    return int(failing[-1]) + 1 if len(failing) else int(candidates[0])
