"""Stage 2, validate: check the raw table against the schemas and return a typed, clean series.

Validation only judges: it never fills, sorts or drops (that is `clean`, and only when asked). All
problems are collected in one lazy pass and reported together, each with Excel row numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.data.ingest import RawTable, Tables
from tasks.data.schemas import raw_schema, series_schema
from tasks.data.times import CALENDAR, STEPS, TimeReading, calendar_steps, infer_step, read_times, step_text
from tasks.errors import EXAMPLES, InputError, Problem, count, longest_run, rows_text, shown
from tasks.prepare.split import required_rows, scaled_note
from tasks.settings import Settings



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

    def spacing(self) -> str:
        """The step as a user says it: 1 hour, 1 month."""
        try:
            return step_text(pd.Timedelta(self.step))
        except ValueError:  # a calendar frequency (months, years) has no fixed length
            return CALENDAR.get(self.step.split("-")[0], self.step)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        span = (f"steps {self.start} to {self.end} (row order)" if self.frequency == STEPS else
                f"from {self.start} to {self.end}  every {self.spacing()} (frequency {self.frequency}), no gaps")
        lines = [
            f"{self.source}" + (f" [sheet {self.sheet}]" if self.sheet else ""),
            f"  rows: {self.rows}  {span}",
            f"  time column: {self.time_column}  target: {self.target}"
            + (f"  features: {', '.join(self.features)}" if self.features else ""),
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _cells(cases: pd.DataFrame, unit: str) -> str:
    quoted = [shown(v) + (f" ({unit} {int(r)})" if pd.notna(r) else "")
              for v, r in zip(cases["failure_case"], cases["index"])][:EXAMPLES]
    more = f" and {len(cases) - EXAMPLES} more" if len(cases) > EXAMPLES else ""
    return ", ".join(quoted) + more


# What Excel shows in a cell whose formula failed; ingest puts them where pandas saw a blank.
EXCEL_ERRORS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
                "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!")


def _text_problems(cases: pd.DataFrame, unit: str) -> list[tuple[str, str]]:
    """Text in a number column, told apart: Excel errors, formulas without saved values, other text."""
    text = cases["failure_case"].astype(str).str.strip()
    errors, formulas = text.isin(EXCEL_ERRORS), text.str.startswith("=")
    other = cases[~errors & ~formulas]
    problems = []
    if errors.any():
        problems.append((f"{count(errors.sum(), 'cell')} hold Excel errors: {_cells(cases[errors], unit)}",
                         "fix the formulas that give these errors in Excel, or clear the cells"))
    if formulas.any():
        problems.append((f"{count(formulas.sum(), 'formula cell')} have no saved values "
                         f"({rows_text(cases[formulas]['index'], unit)}, e.g. {text[formulas].iloc[0]!r})",
                         "open the file in Excel and save it (Excel then stores the computed values), "
                         "or paste the values over the formulas"))
    if len(other):
        decimal_comma = other["failure_case"].astype(str).str.fullmatch(r"\s*-?\d+,\d+\s*").any()
        problems.append((f"{count(len(other), 'cell')} hold text, not numbers: {_cells(other, unit)}",
                         "write numbers with a decimal point (12.5, not 12,5), or clear those cells"
                         if decimal_comma else "correct or clear those cells"))
    return problems


def _duplicates(cases: pd.DataFrame, unit: str) -> list[tuple[str, str]]:
    groups = [f"{stamp} at {rows_text(group['index'], unit)}"
              for stamp, group in cases.groupby("failure_case", sort=True)]
    more = f" and {len(groups) - EXAMPLES} more" if len(groups) > EXAMPLES else ""
    return [(f"{len(cases)} rows share {count(len(groups), 'timestamp')}: {'; '.join(groups[:EXAMPLES])}{more}",
             "remove the duplicate rows, or combine them into one row per timestamp")]


def _blanks(cases: pd.DataFrame, unit: str, is_time: bool) -> list[tuple[str, str]]:
    where, run = rows_text(cases["index"], unit), longest_run(cases["index"])
    if is_time:
        return [(f"{count(len(cases), 'blank timestamp')} at {where}", "fill in those timestamps, or delete the rows")]
    return [(f"{count(len(cases), 'blank cell')} at {where}",
             f"fill in the blanks, or pass --set data.fill_gaps={run} to interpolate runs of up to {run} "
             "missing steps")]


def _describe(check: str, cases: pd.DataFrame, unit: str, is_time: bool, step: str) -> list[tuple[str, str]]:
    """One failed check on one column -> (what is wrong, what to do) pairs."""
    rows = rows_text(cases["index"], unit)
    if check == "numeric":
        return _text_problems(cases, unit)
    if check == "field_uniqueness":
        return _duplicates(cases, unit)
    if check == "not_nullable":
        return _blanks(cases, unit, is_time)
    simple = {
        "parseable_time": (f"{count(len(cases), 'cell')} are not dates or times: {_cells(cases, unit)}",
                           "correct those cells (for example 2016-07-01 13:00)"),
        "increasing": (f"timestamps go backwards at {rows} (the rows are not in time order)",
                       "sort the rows by time, or pass --set data.sort=true to have them sorted"),
        "regular": (f"uneven spacing at {rows} (the step is {step} elsewhere)", "make the timestamps evenly spaced"),
        "finite": (f"{count(len(cases), 'infinite value')}: {_cells(cases, unit)}", "replace them with real numbers"),
        "varies": ("the target is constant (the same value on every row, zero variance)",
                   "choose a target column that varies (--target)"),
    }
    return [simple.get(check, (f"check {check} failed at {rows}", ""))]


def _problems(errors: pa.errors.SchemaErrors, skip: set[tuple[str, int]], where: str, unit: str,
              time_column: str, step: str = "") -> list[Problem]:
    cases = errors.failure_cases
    cases = cases[[(c, int(i) if pd.notna(i) else None) not in skip for c, i in zip(cases["column"], cases["index"])]]
    problems = []
    for (col, check), group in cases.groupby(["column", "check"], sort=False):
        check = "parseable_time" if check.startswith("coerce_dtype") or check.startswith("dtype") else check
        problems += [Problem(f"{where}, column {col!r}: {what}", todo)
                     for what, todo in _describe(check, group, unit, col == time_column, step)]
    return problems


# Daylight saving starts and ends on a Sunday night of these months (both hemispheres), at 01:00-03:59.
DST_MONTHS, DST_HOURS = {3, 4, 9, 10, 11}, range(0, 4)


def _dst_night(times: pd.Series) -> np.ndarray:
    return (times.dt.dayofweek.eq(6) & times.dt.month.isin(DST_MONTHS) & times.dt.hour.isin(DST_HOURS)).to_numpy()


def _daylight_saving(times: pd.Series, step: pd.Timedelta | None, time_column: str, where: str,
                     unit: str) -> tuple[list[Problem], set, set]:
    """Local clock time across daylight-saving changes: an hour repeated, or an hour missing, on a
    Sunday night of spring or autumn. One message, pointing at data.time_zone; returns it, the rows
    whose repeats or jumps it explains, and the timestamps after which its missing hour falls."""
    if step is None or step > pd.Timedelta(hours=1) or times.isna().any():
        return [], set(), set()
    repeated = times[times.duplicated(keep=False) & _dst_night(times)]
    ordered = times.drop_duplicates().sort_values()
    after_gap = (ordered.diff() == step + pd.Timedelta(hours=1)).to_numpy() & _dst_night(ordered)
    gap_before = ordered.shift(1)[after_gap]
    if repeated.empty and gap_before.empty:
        return [], set(), set()
    said = [f"{stamp} twice ({rows_text(group.index, unit)})" for stamp, group in repeated.groupby(repeated)]
    said += [f"the hour after {stamp} missing" for stamp in gap_before]
    return [Problem(
        f"{where}, column {time_column!r}: the times look like a local clock across daylight-saving changes: "
        f"{'; '.join(said[:EXAMPLES])}",
        "pass --set data.time_zone=ZONE (the zone of that clock, for example Europe/Berlin) to read them as "
        "local time, converted to UTC",
    )], {(time_column, int(r)) for r in [*repeated.index, *ordered.index[after_gap]]}, set(gap_before)


def _gap_problems(times: pd.Series, step: pd.Timedelta | None, freq: str, time_column: str, where: str,
                  unit: str, explained: set = frozenset()) -> tuple[list[Problem], set]:
    """Missing timestamps, as one message with the longest gaps, instead of one per uneven row; steps
    counted by length, or on the calendar (a missing month is one missing step).

    Judged in time order over distinct timestamps, and only when every timestamp is known."""
    calendar = CALENDAR.get(freq.split("-")[0]) if step is None else None
    if (step is None and not calendar) or times.isna().any():
        return [], set()
    ordered = times.drop_duplicates().sort_values()
    if calendar:
        missing = np.r_[np.nan, np.diff(calendar_steps(ordered, freq)) - 1.0]
    else:
        missing = (ordered.diff() / step - 1).to_numpy()
    at = np.flatnonzero((missing >= 1) & (missing == np.round(missing)) & ~ordered.shift(1).isin(explained).to_numpy())
    if not len(at):
        return [], set()
    gaps = sorted(zip(missing[at], ordered.index[at], ordered.iloc[at - 1]), key=lambda g: -g[0])
    examples = ", ".join(f"{int(n)} after {before} (before {unit} {row})" for n, row, before in gaps[:EXAMPLES])
    longest = int(gaps[0][0])
    return [Problem(
        f"{where}, column {time_column!r}: {count(int(missing[at].sum()), 'missing timestamp')} in "
        f"{count(len(at), 'gap')} (the step is {f'1 {calendar}' if calendar else step_text(step)}): {examples}",
        # Filling inserts rows a fixed step apart, which calendar steps are not.
        "add the missing rows" if calendar else
        f"add the missing rows, or pass --set data.fill_gaps={longest} to interpolate gaps of up to {longest} steps",
    )], {(time_column, int(row)) for _, row, _ in gaps if pd.notna(row)}


def validate_table(raw: RawTable, settings: Settings, source: str, series_id: str | None = None
                   ) -> tuple[pd.DataFrame, Summary]:
    """Typed series (DatetimeIndex, or step numbers when row order is time; target, then features, as
    float) and its summary, or InputError; `series_id`: the id messages name (long format's several series)."""
    values = [raw.target, *raw.features]
    frame, unit, time = raw.frame, raw.row_unit, raw.time_column
    where = source + (f", sheet {raw.sheet!r}" if raw.sheet else "") + (f", series {series_id}" if series_id else "")
    reading = TimeReading(frame[time]) if raw.numbered else read_times(frame[time], settings.data, unit)
    # A column that cannot be read as time at all gets one message; its cells and order are not judged.
    problems = [Problem(f"{where}, column {time!r}: {what}", todo) for what, todo in reading.refused]
    judged_time = None if raw.numbered or reading.refused else time
    reported: set[tuple[str, int]] = set()
    try:
        raw_schema(judged_time, values, lambda s: reading.times.loc[s.index]).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _problems(exc, set(), where, unit, time)
        reported = {(c, int(i)) for c, i in zip(exc.failure_cases["column"], exc.failure_cases["index"]) if pd.notna(i)}

    typed = pd.DataFrame({time: reading.times}
                         | {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in values})
    step, freq = (None, STEPS) if raw.numbered else infer_step(typed[time])
    (dst, dst_rows, dst_gaps), (gap_problems, gap_rows) = ([], set(), set()), ([], set())
    if judged_time is not None:
        if not settings.data.time_zone:  # with a zone given, the changes are read, not reported
            dst, dst_rows, dst_gaps = _daylight_saving(typed[time], step, time, where, unit)
        gap_problems, gap_rows = _gap_problems(typed[time], step, freq, time, where, unit, dst_gaps)
    try:
        schema = series_schema(time if judged_time or raw.numbered else None, raw.target, list(raw.features), step,
                               raw.numbered)
        schema.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _problems(exc, reported | gap_rows | dst_rows, where, unit, time,
                              step_text(step) if step is not None else "")
    problems += gap_problems + dst

    needed = required_rows(settings)
    if len(typed) < needed:
        problems.append(Problem(
            f"{where}: only {len(typed)} data rows; the split and window settings need at least {needed}",
            "use more data, or lower window.input_length / window.horizon / the split sizes",
        ))
    if problems:
        raise InputError(problems)

    series = typed.set_index(time)
    scaled = scaled_note(len(series), settings.split)
    summary = Summary(
        source=source, sheet=raw.sheet, time_column=time, target=raw.target, features=raw.features,
        rows=len(series), start=str(series.index[0]), end=str(series.index[-1]), frequency=freq,
        step=str(step) if step is not None else freq, notes=raw.notes + reading.notes + ((scaled,) if scaled else ()),
    )
    return series, summary


@dataclass(frozen=True)
class Valid:
    """The series that passed validation, by id, and those left out (data.skip_bad_series) with why."""

    series: dict[str, tuple[pd.DataFrame, Summary]]
    skipped: dict[str, str]


def validate_tables(tables: Tables, settings: Settings, source: str) -> Valid:
    """Every series validated on its own, every problem of every series reported at once. With
    data.skip_bad_series, the series that fail are left out instead (said in the summary), as long as
    one is left. One model forecasts at one frequency, so the series must share it."""
    valid, failed = {}, {}
    for series_id, raw in tables.tables.items():
        # Wide format's messages name the series already (its column); long format's say the id.
        named = series_id if tables.id_column and tables.several else None
        try:
            valid[series_id] = validate_table(raw, settings, source, named)
        except InputError as exc:
            failed[series_id] = exc.problems
    if failed and not (settings.data.skip_bad_series and valid):
        problems = list(dict.fromkeys(p for found in failed.values() for p in found))  # wide: one time column
        if tables.several and valid:
            problems.append(Problem(f"{source}: {len(failed)} of {len(tables.tables)} series failed "
                                    f"({', '.join(failed)})", "fix them, or leave them out with "
                                    "--set data.skip_bad_series=true"))
        raise InputError(problems)
    spacings: dict[str, list[str]] = {}
    for series_id, (_, summary) in valid.items():
        spacings.setdefault(summary.spacing(), []).append(series_id)
    if len(spacings) > 1:
        shown_ = ", ".join(f"{', '.join(ids[:3])}{f' and {len(ids) - 3} more' if len(ids) > 3 else ''} every {step}"
                           for step, ids in spacings.items())
        raise InputError([Problem(f"{source}: the series are not spaced alike ({shown_}); one model forecasts "
                                  "series of one frequency", "train the series of each frequency apart "
                                  "(--series A,B, or --target A,B)")])
    return Valid(valid, {i: str(found[0]) for i, found in failed.items()})


@task(cache_policy=NO_CACHE)
def validate_data(tables: Tables, settings: Settings, source: str) -> Valid:
    valid = validate_tables(tables, settings, source)
    logger = get_run_logger()
    for note in dict.fromkeys(n for _, summary in valid.series.values() for n in summary.notes):
        logger.info(note)  # what was chosen or changed without being asked, in the run's log
    for series_id, why in valid.skipped.items():
        logger.warning("series %s left out (data.skip_bad_series): %s", series_id, why)
    return valid
