"""Stage 2, validate: check the raw table against the schemas and return a typed, clean series.

Validation only judges: it never fills, sorts or drops (that is `clean`, and only when asked). All
problems are collected in one lazy pass and reported together, each with Excel row numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import pandera.pandas as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem
from tasks.ingest import RawTable
from tasks.schemas import raw_schema, series_schema
from tasks.settings import Settings
from tasks.split import required_rows

EXAMPLES = 5  # cells quoted per problem; the rest are counted


@dataclass(frozen=True)
class Summary:
    """What a user wants to know about a valid series (printed by `validate`, logged to MLflow)."""

    source: str
    sheet: str | None
    time_column: str
    target: str
    features: tuple[str, ...]
    rows: int
    start: str
    end: str
    frequency: str
    step: str
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [
            f"{self.source}" + (f" [sheet {self.sheet}]" if self.sheet else ""),
            f"  rows: {self.rows}  from {self.start} to {self.end}  every {self.step} (frequency {self.frequency}), no gaps",
            f"  time column: {self.time_column}  target: {self.target}"
            + (f"  features: {', '.join(self.features)}" if self.features else ""),
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def infer_step(times: pd.Series) -> tuple[pd.Timedelta | None, str]:
    """The series' step: pandas' frequency if it has one, else the most common spacing."""
    times = times.dropna()
    if len(times) < 3:
        return None, "unknown"
    freq = pd.infer_freq(times) if times.is_monotonic_increasing and times.is_unique else None
    diffs = times.diff().dropna()
    diffs = diffs[diffs > pd.Timedelta(0)]
    if diffs.empty:
        return None, "unknown"
    if freq and diffs.nunique() > 1:
        return None, freq  # a calendar frequency (months, years): regular, though its steps differ in length
    step = diffs.mode().iloc[0]
    return step, freq or pd.tseries.frequencies.to_offset(step).freqstr


def _rows(cases: pd.DataFrame) -> str:
    rows = [int(r) for r in cases["index"] if pd.notna(r)]
    shown = ", ".join(map(str, rows[:EXAMPLES]))
    more = f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else ""
    return (f"row {shown}" if len(rows) == 1 else f"rows {shown}{more}") if rows else "(whole column)"


def _cells(cases: pd.DataFrame) -> str:
    quoted = [f"{v!r}" + (f" (row {int(r)})" if pd.notna(r) else "")
              for v, r in zip(cases["failure_case"], cases["index"])][:EXAMPLES]
    more = f" and {len(cases) - EXAMPLES} more" if len(cases) > EXAMPLES else ""
    return ", ".join(quoted) + more


# check name -> (what is wrong, what to do); {col}, {n}, {cells}, {rows} are filled in.
MESSAGES = {
    "parseable_time": ("column {col!r}: {n} cell(s) are not dates/times: {cells}", "correct those cells"),
    "numeric": ("column {col!r}: {n} cell(s) hold text, not numbers: {cells}", "correct or clear those cells"),
    "not_nullable": ("column {col!r}: {n} blank cell(s) at {rows}",
                     "fill them in, or set data.fill_gaps=N to interpolate runs of up to N blanks"),
    "field_uniqueness": ("column {col!r}: {n} duplicate timestamp(s): {cells}", "remove the duplicate rows"),
    "increasing": ("column {col!r}: timestamps go backwards at {rows}",
                   "sort the rows by time (or set data.sort=true)"),
    "regular": ("column {col!r}: uneven spacing at {rows}", "make the timestamps evenly spaced"),
    "finite": ("column {col!r}: {n} infinite value(s): {cells}", "replace them with real numbers"),
    "varies": ("column {col!r}: the target is constant (zero variance)", "choose a target that varies"),
}


def _problems(errors: pa.errors.SchemaErrors, skip: set[tuple[str, int]]) -> list[Problem]:
    cases = errors.failure_cases
    cases = cases[[(c, int(i) if pd.notna(i) else None) not in skip for c, i in zip(cases["column"], cases["index"])]]
    problems = []
    for (col, check), group in cases.groupby(["column", "check"], sort=False):
        check = "parseable_time" if check.startswith("coerce_dtype") or check.startswith("dtype") else check
        what, todo = MESSAGES.get(check, ("column {col!r}: check {check} failed at {rows}", ""))
        problems.append(Problem(what.format(col=col, n=len(group), cells=_cells(group), rows=_rows(group), check=check), todo))
    return problems


def _gap_problems(times: pd.Series, step: pd.Timedelta | None, time_column: str) -> tuple[list[Problem], set]:
    """Missing timestamps, as one message with the longest gaps, instead of one per uneven row."""
    if step is None:
        return [], set()
    diff = times.diff()
    missing = (diff / step) - 1
    gap_rows = missing[(missing >= 1) & (missing == missing.round())]
    if gap_rows.empty:
        return [], set()
    previous = times.shift(1)
    examples = ", ".join(f"{int(n)} after {previous[r]} (before row {r})"
                         for r, n in gap_rows.sort_values(ascending=False).head(EXAMPLES).items())
    longest = int(gap_rows.max())
    return [Problem(
        f"column {time_column!r}: {int(gap_rows.sum())} missing timestamp(s) in {len(gap_rows)} gap(s): {examples}",
        f"add the missing rows, or set data.fill_gaps={longest} to interpolate gaps of up to {longest} steps",
    )], {(time_column, int(r)) for r in gap_rows.index}


def validate_table(raw: RawTable, settings: Settings, source: str) -> tuple[pd.DataFrame, Summary]:
    """Typed series (DatetimeIndex; target, then features, as float) and its summary, or InputError."""
    values = [raw.target, *raw.features]
    frame = raw.frame
    problems: list[Problem] = []
    reported: set[tuple[str, int]] = set()
    try:
        raw_schema(raw.time_column, values).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _problems(exc, set())
        reported = {(c, int(i)) for c, i in zip(exc.failure_cases["column"], exc.failure_cases["index"]) if pd.notna(i)}

    typed = pd.DataFrame({raw.time_column: pd.to_datetime(frame[raw.time_column], errors="coerce", format="mixed")}
                         | {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in values})
    typed[raw.time_column] = typed[raw.time_column].astype("datetime64[ns]")
    step, freq = infer_step(typed[raw.time_column])
    gap_problems, gap_rows = _gap_problems(typed[raw.time_column], step, raw.time_column)
    problems += gap_problems
    try:
        series_schema(raw.time_column, raw.target, list(raw.features), step).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _problems(exc, reported | gap_rows)

    needed = required_rows(settings)
    if len(typed) < needed:
        problems.append(Problem(
            f"only {len(typed)} data rows; the split and window settings need at least {needed}",
            "use more data, or lower window.input_length / window.horizon / the split sizes",
        ))
    if problems:
        raise InputError([Problem(f"{source}: {p.what}", p.todo) for p in problems])

    series = typed.set_index(raw.time_column)
    summary = Summary(
        source=source, sheet=raw.sheet, time_column=raw.time_column, target=raw.target, features=raw.features,
        rows=len(series), start=str(series.index[0]), end=str(series.index[-1]), frequency=freq,
        step=str(step) if step is not None else freq, notes=raw.notes,
    )
    return series, summary


@task(cache_policy=NO_CACHE)
def validate_data(raw: RawTable, settings: Settings, source: str) -> tuple[pd.DataFrame, Summary]:
    return validate_table(raw, settings, source)
