"""How a time column's cells become timestamps: one reading for the whole column, never cell by cell.

Shared by validate (which judges the result), clean (which sorts and fills by it) and the raw schema.
- Dates and datetimes (Excel date cells, Parquet) are taken as they are; timestamps with a UTC offset
  are converted to UTC, and the note says so.
- Text dates get one strptime format for the whole column, inferred from all its cells: when month-first
  and day-first both read every cell differently, the column is refused with both readings shown
  (`data.date_format` settles it). Cells the format cannot read stay unread (NaT), for validate to report.
- With `data.time_zone`, the times are that zone's local clock, converted to UTC.
- Clock times without dates (loggers, SCADA exports) are counted forward from `data.start_date`: a time
  earlier than the one before it starts a new day when it is less than 12 hours after it across midnight;
  otherwise the times go backwards, and the column is refused.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from tasks.errors import count, shown
from tasks.settings import START_DATE, DataSettings

STEPS = "step"  # the frequency, and the time column's name, of a series whose row order is its time
CLOCK = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")  # 7:05, 00:25:00, 13:45:30.5
# A UTC offset after a text timestamp's time of day: 13:00+01:00, 13:00:00-0500, 13:00Z
ZONED = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s?([+-]\d{2}:?\d{2}|Z)$"
GUESS_CELLS = 20  # cells a format is guessed from; every cell then decides between the guesses
DAY = 86400.0


@dataclass(frozen=True)
class TimeReading:
    """The column's timestamps (datetime64[ns], NaT where a cell cannot be read) and what was decided."""

    times: pd.Series
    notes: tuple[str, ...] = ()
    # The column as a whole cannot be read as time (format ambiguous, clock going backwards): (what, todo)
    refused: tuple[tuple[str, str], ...] = ()
    zoned: bool = False  # the cells carried their zone (converted to UTC); data.time_zone does not apply


def read_times(cells: pd.Series, cfg: DataSettings, unit: str = "Excel row") -> TimeReading:
    """One reading of a whole time column (see the module docstring), as `data.time_zone`'s local clock
    when that is set."""
    reading = _read(cells, cfg, unit)
    if cfg.time_zone is None or reading.refused or reading.zoned:
        return reading
    try:
        # The repeated hour when daylight saving ends is told apart by the order of the rows.
        local = reading.times.dt.tz_localize(cfg.time_zone, ambiguous="infer", nonexistent="NaT")
    except ValueError as exc:  # pytz/pandas: an hour that repeats without its second occurrence, ...
        return TimeReading(reading.times, reading.notes, ((
            f"cannot read the times as local time in {cfg.time_zone} (data.time_zone): "
            f"{str(exc).splitlines()[0]}", "check the rows around the daylight-saving changes"),))
    skipped = local.isna() & reading.times.notna()
    if skipped.any():
        listed = ", ".join(f"{shown(t)} ({unit} {r})" for r, t in reading.times[skipped].iloc[:5].items())
        return TimeReading(reading.times, reading.notes, ((
            f"{count(int(skipped.sum()), 'time')} in the hour that clocks in {cfg.time_zone} (data.time_zone) "
            f"skip when daylight saving starts: {listed}", "check the zone, or correct those cells"),))
    utc = local.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return TimeReading(utc, reading.notes + (f"time zone: local time in {cfg.time_zone} (data.time_zone), "
                                             "converted to UTC",))


def _read(cells: pd.Series, cfg: DataSettings, unit: str) -> TimeReading:
    if isinstance(cells.dtype, pd.DatetimeTZDtype):
        return _to_utc(cells)
    if pd.api.types.is_datetime64_any_dtype(cells):
        return TimeReading(cells.astype("datetime64[ns]"))
    given = cells.dropna()
    if len(given) and given.map(lambda v: isinstance(v, dt.time)
                                or (isinstance(v, str) and CLOCK.fullmatch(v.strip()) is not None)).all():
        return _clock_times(cells, cfg, unit)
    text = given[given.map(lambda v: isinstance(v, str))].str.strip()
    objects = pd.to_datetime(given[given.map(lambda v: isinstance(v, (dt.date, np.datetime64)))], errors="coerce",
                             utc=True if _has_zone(given) else None)
    if text.empty:
        return _combined(cells, objects, [])
    fmt, refused = (cfg.date_format, ()) if cfg.date_format else _text_format(text)
    if refused:
        return TimeReading(pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]"), refused=refused)
    parsed = _parse(text, fmt)
    offsets = sorted(set(text.str.extract(ZONED, expand=False).dropna()))
    how = "data.date_format" if cfg.date_format else "the one format that reads every cell"
    return _combined(cells, pd.concat([objects, parsed]) if len(objects) else parsed,
                     [f"text dates read as {fmt} ({how})"], ", ".join(offsets))


def _has_zone(values: pd.Series) -> bool:
    return values.map(lambda v: getattr(v, "tzinfo", None) is not None).any()


def _combined(cells: pd.Series, parsed: pd.Series, notes: list[str], zone: str = "") -> TimeReading:
    """Parsed cells back in the column's rows; zoned ones in UTC."""
    zoned = isinstance(parsed.dtype, pd.DatetimeTZDtype)
    if zoned:
        reading = _to_utc(parsed, zone)
        parsed, notes = reading.times, notes + list(reading.notes)
    times = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]")
    times.loc[parsed.index] = parsed.astype("datetime64[ns]")
    return TimeReading(times, tuple(notes), zoned=zoned)


def _to_utc(times: pd.Series, zone: str = "") -> TimeReading:
    """Zoned timestamps as UTC without a zone (equal steps across daylight-saving changes)."""
    utc = times.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return TimeReading(utc, (f"time zone: the timestamps carry {zone or times.dt.tz}; in UTC here",), zoned=True)


def _text_format(text: pd.Series) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The one format that reads every cell; (None, refusal) when month- and day-first both do, differently."""
    with warnings.catch_warnings():  # pandas warns that dayfirst does not apply to year-first text
        warnings.simplefilter("ignore")
        guesses = dict.fromkeys(f for cell in text.iloc[:GUESS_CELLS] for first in (False, True)
                                if (f := guess_datetime_format(cell, dayfirst=first)) and not _year_day_month(f))
    if not guesses:
        return "ISO8601", ()  # nothing recognisable: every cell is then reported as unreadable
    read = {f: _parse(text, f) for f in guesses}
    complete = [f for f, times in read.items() if times.notna().all()]
    distinct = {f: read[f] for f in complete if not any(read[f].equals(read[g]) for g in complete[:complete.index(f)])}
    if len(distinct) > 1:
        first, second = list(distinct.values())[:2]
        example = text.iloc[int(np.flatnonzero((first != second).to_numpy())[0])]
        readings = " or ".join(f"{read[f][text == example].iloc[0]:%Y-%m-%d %H:%M} "
                               f"({'day' if f.find('%d') < f.find('%m') else 'month'} first, {f})" for f in distinct)
        options = " or ".join(f'--set "data.date_format={f}"' for f in distinct)
        return None, ((f"the text dates read both month-first and day-first (every day is 12 or less): "
                       f"{example} is {readings}", f"say which: pass {options}"),)
    if complete:
        return complete[0], ()
    return max(read, key=lambda f: read[f].notna().sum()), ()  # the cells it cannot read are reported


def _year_day_month(fmt: str) -> bool:
    """2016-07-01 is never 7 January: year-first dates are year-month-day."""
    return fmt.startswith("%Y") and -1 < fmt.find("%d") < fmt.find("%m")


def _parse(text: pd.Series, fmt: str) -> pd.Series:
    """Every cell with one format; with a UTC offset on any of them, all in UTC (offsets may differ)."""
    zoned = text.str.extract(ZONED, expand=False).notna().any()
    return pd.to_datetime(text, format=fmt, errors="coerce", utc=True if zoned else None)


def _clock_times(cells: pd.Series, cfg: DataSettings, unit: str) -> TimeReading:
    """Times of day counted forward from the start date, a new day at each wrap past midnight."""
    def seconds(v) -> float:
        if isinstance(v, dt.time):
            return v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6
        return pd.Timedelta(v.strip() if v.strip().count(":") == 2 else v.strip() + ":00").total_seconds()

    given = cells.dropna()
    of_day = given.map(seconds).to_numpy()
    back = np.diff(of_day) < 0
    wraps = back & (of_day[1:] + DAY - of_day[:-1] < DAY / 2)
    start = pd.Timestamp(cfg.start_date or START_DATE)
    if (back & ~wraps).any():
        rows = given.index[1:][back & ~wraps]
        listed = ", ".join(f"{_clock(given[r])} after {_clock(given.iloc[given.index.get_loc(r) - 1])} ({unit} {r})"
                           for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        return TimeReading(pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]"), refused=((
            f"the clock times (no dates) go backwards without wrapping past midnight: {listed}{more}",
            "put the rows in time order, or add a column with the full date and time of each row and pass "
            "--time-col NAME"),))
    days = np.r_[0, np.cumsum(wraps)]
    times = pd.Series(start + pd.to_timedelta(days * DAY + of_day, unit="s"), index=given.index)
    said = "data.start_date" if cfg.start_date else "a fixed date; set data.start_date=YYYY-MM-DD for the real one"
    return _combined(cells, times, [f"the time column holds clock times without dates: days counted from "
                                    f"{start:%Y-%m-%d} ({said}), a new day at each wrap past midnight "
                                    f"({int(days[-1])} of them)"])


def _clock(value) -> str:
    """A clock time as a user writes it: 00:25:00, never datetime.time(0, 25); text unquoted."""
    return value.strip() if isinstance(value, str) else shown(value)


def looks_like_time(cells: pd.Series) -> bool:
    """Does a column (not named like time) hold times: datetimes, clock times, or text dates?"""
    if pd.api.types.is_datetime64_any_dtype(cells):
        return True
    if pd.api.types.is_numeric_dtype(cells):
        return False
    sample = cells.dropna().iloc[:GUESS_CELLS]
    return len(sample) > 0 and sample.map(
        lambda v: isinstance(v, (dt.date, dt.time)) or (isinstance(v, str) and (
            CLOCK.fullmatch(v.strip()) is not None or guess_datetime_format(v.strip()) is not None))).mean() > 0.5


def infer_step(times: pd.Series) -> tuple[pd.Timedelta | None, str]:
    """The series' step: pandas' frequency if it has one, else the most common spacing (in time order)."""
    times = times.dropna().drop_duplicates().sort_values()
    if len(times) < 3:
        return None, "unknown"
    freq = pd.infer_freq(times)
    diffs = times.diff().dropna()
    if diffs.empty:
        return None, "unknown"
    freq = freq or calendar_frequency(times)
    if freq and diffs.nunique() > 1:
        return None, freq  # a calendar frequency (months, years): regular, though its steps differ in length
    step = diffs.mode().iloc[0]
    return step, freq or pd.tseries.frequencies.to_offset(step).freqstr


# Calendar frequencies, coarsest first (the first whose dates hold every timestamp is the series' own),
# and their step as people say it.
CALENDAR = {"YS": "year", "YE": "year", "QS": "quarter", "QE": "quarter", "MS": "month", "ME": "month",
            "W": "week", "B": "business day"}


def calendar_frequency(times: pd.Series) -> str | None:
    """The calendar frequency of timestamps with missing steps (which pandas cannot infer): month
    starts with a month missing are monthly with a gap, not unevenly spaced."""
    first, last = times.iloc[0], times.iloc[-1]
    for name in CALENDAR:
        # Anchored on the first timestamp: weeks on its weekday, quarters and years on its month.
        freq = {"W": f"W-{first:%a}", "B": "B", "MS": "MS", "ME": "ME"}.get(name, f"{name}-{first:%b}").upper()
        grid = pd.date_range(first, last, freq=freq)
        # Every timestamp on the grid, and most of the grid present (else a finer frequency is the step).
        if len(grid) and grid[0] == first and times.isin(grid).all() and len(grid) < 2 * len(times):
            return freq
    return None


def calendar_steps(times: pd.Series, freq: str) -> np.ndarray:
    """Position of each timestamp on its calendar frequency's grid."""
    return pd.date_range(times.iloc[0], times.iloc[-1], freq=freq).get_indexer(times)


def step_text(step: pd.Timedelta) -> str:
    """'1 hour', '15 minutes': a step as people say it."""
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n = step.total_seconds() / seconds
        if n >= 1 and n == int(n):
            return count(int(n), unit)
    return str(step)
