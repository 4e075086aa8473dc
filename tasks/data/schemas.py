"""The data contracts, one pandera schema per stage: raw sheet, clean series, forecast output.

Column names come from the user's workbook, so the first two are built from them; checks are named so
that `validate` can turn each failure into a sentence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series


def _parses(convert):
    # Blank cells are not a parsing problem; `series_schema` reports them as blanks.
    return lambda s: convert(s).notna() | s.isna()


def raw_schema(time_column: str | None, value_columns: list[str], to_time) -> pa.DataFrameSchema:
    """The sheet as read: every non-blank time cell parses as a timestamp (`to_time`: the column's one
    reading, tasks/data/times.py), every value cell as a number. `time_column` None: not judged here."""
    to_number = _parses(lambda s: pd.to_numeric(s, errors="coerce"))
    time = {time_column: pa.Column(checks=pa.Check(_parses(to_time), name="parseable_time"), nullable=True)}
    return pa.DataFrameSchema(
        (time if time_column is not None else {})
        | {c: pa.Column(checks=pa.Check(to_number, name="numeric"), nullable=True) for c in value_columns},
        name="RawSheet",
    )


def series_schema(time_column: str | None, target: str, features: list[str], step: pd.Timedelta | None,
                  numbered: bool = False) -> pa.DataFrameSchema:
    """The typed series: unique, increasing, evenly spaced timestamps (or, `numbered`, the step numbers
    0..n-1 that row order gives; None: a time column refused as a whole, not judged again); finite
    values; a target that varies."""
    def spacing_ok(s: pd.Series) -> pd.Series:
        # Judged in time order, so that unsorted or repeated rows are reported once (as such) rather
        # than again as uneven spacing; and only once every timestamp is known. Positional, because
        # rows inserted by `clean` have no Excel row number.
        if step is None or s.isna().any():
            return pd.Series(True, index=s.index)
        order = np.argsort(s.to_numpy(), kind="stable")
        diff = np.diff(s.to_numpy()[order])
        bad = np.zeros(len(s), dtype=bool)
        bad[order[1:]] = (diff != np.timedelta64(0)) & (diff != step.to_timedelta64())
        return pd.Series(~bad, index=s.index)

    def not_backwards(s: pd.Series) -> pd.Series:
        diff = s.diff()
        return diff.isna() | (diff >= pd.Timedelta(0))  # equal timestamps are duplicates, reported as such

    def varies(s: pd.Series) -> bool:
        finite = s[np.isfinite(s)]
        return len(finite) < 2 or finite.std() > 0  # too few numbers is reported as blanks or text

    finite = pa.Check(lambda s: np.isfinite(s) | s.isna(), name="finite")
    time = pa.Column("int64", unique=True) if numbered else pa.Column(
        "datetime64[ns]", nullable=False, unique=True, checks=[
            pa.Check(not_backwards, name="increasing"),
            pa.Check(spacing_ok, name="regular", ignore_na=False),
        ])
    return pa.DataFrameSchema(
        ({time_column: time} if time_column is not None else {})
        | {target: pa.Column(float, nullable=False, checks=[finite, pa.Check(varies, name="varies")])}
        | {c: pa.Column(float, nullable=False, checks=[finite]) for c in features},
        name="CleanSeries",
    )


class ForecastFrame(pa.DataFrameModel):
    """What a forecast returns: the next H timestamps and values in the data's own units."""

    timestamp: Series[Any]  # datetimes; step numbers when the series had no time column
    forecast: Series[float] = pa.Field(nullable=False)

    class Config:
        strict = False  # interval columns may follow
