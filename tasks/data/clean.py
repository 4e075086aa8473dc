"""Stage 1b, clean, only when asked: sort the rows by time and fill short gaps, saying what changed.

Validation refuses unsorted rows, missing timestamps and blank cells; `data.sort` and `data.fill_gaps`
let a user have them handled instead. Filling is linear interpolation in time between the numbers on
either side of a run of at most `data.fill_gaps` missing steps (absent rows and blank cells alike).
Text cells are never touched, and a run that touches one, the edge of the data or a longer run is left
as it is, for validation to report.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.ingest import RawTable, Tables
from tasks.data.times import infer_step, read_times
from tasks.errors import count, rows_text
from tasks.settings import DataSettings


def clean_table(raw: RawTable, cfg: DataSettings) -> RawTable:
    """The table with the cleaning the settings ask for; its notes say what was changed."""
    frame, notes = raw.frame, list(raw.notes)
    if cfg.sort and not raw.numbered:  # row order is the time of a series without a time column
        frame, said = sort_rows(frame, raw.time_column, raw.row_unit, cfg)
        notes += said
    if cfg.fill_gaps:
        frame, said = fill_gaps(frame, raw.time_column, [raw.target, *raw.features], cfg.fill_gaps, raw.row_unit,
                                cfg, raw.numbered)
        notes += said
    return replace(raw, frame=frame, notes=tuple(notes))


def sort_rows(frame: pd.DataFrame, time_column: str, unit: str, cfg: DataSettings) -> tuple[pd.DataFrame, list[str]]:
    """Rows in time order (stable; rows whose time cannot be read go last, for validation to report)."""
    order = read_times(frame[time_column], cfg, unit).times.sort_values(kind="stable", na_position="last").index
    moved = frame.index[frame.index != order]
    if moved.empty:
        return frame, ["data.sort: the rows were already in time order"]
    return frame.loc[order], [f"data.sort: sorted the rows by time ({count(len(moved), 'row')} moved: "
                              f"{rows_text(moved, unit)})"]


def fill_gaps(frame: pd.DataFrame, time_column: str, columns: list[str], limit: int, unit: str,
              cfg: DataSettings, numbered: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Insert missing timestamps and interpolate blank cells, in runs of up to `limit` steps (`numbered`:
    the time column numbers the rows, so only blank cells can be filled)."""
    times = frame[time_column] if numbered else read_times(frame[time_column], cfg, unit).times
    if times.isna().any() or not times.is_unique or not times.is_monotonic_increasing:
        return frame, [f"data.fill_gaps={limit}: nothing filled, because the timestamps are not all readable, "
                       "unique and in order (see the problems reported)"]
    step = None if numbered else infer_step(times)[0]
    notes: list[str] = []
    frame, gap_of = _insert_missing(frame.assign(**{time_column: times}), time_column, step, limit)
    times = frame[time_column]
    elapsed = times - times.iloc[0]  # interpolation weights: seconds, or steps
    seconds = (elapsed.astype(float) if numbered else elapsed.dt.total_seconds()).to_numpy()
    filled_rows: dict[str, pd.Index] = {}
    frame = frame.astype({c: object for c in columns})
    for column in columns:
        values, blank = pd.to_numeric(frame[column], errors="coerce").to_numpy(float), frame[column].isna().to_numpy()
        done = []
        for start, stop in _runs(blank):  # positions [start, stop) are blank
            if stop - start > limit or start == 0 or stop == len(values):
                continue
            ends = values[[start - 1, stop]]
            if not np.isfinite(ends).all():  # a text cell or an infinity next to the run
                continue
            frame.iloc[start:stop, frame.columns.get_loc(column)] = np.interp(
                seconds[start:stop], seconds[[start - 1, stop]], ends)
            done += range(start, stop)
        filled_rows[column] = frame.index[done].dropna()
    # Inserted rows that some column could not fill are taken out again: that gap stays a gap.
    unfilled = set(gap_of[frame[columns].isna().any(axis=1).to_numpy() & (gap_of >= 0)])
    keep = ~np.isin(gap_of, list(unfilled)) | (gap_of < 0)
    inserted = gap_of[keep & (gap_of >= 0)]
    if len(inserted):
        after = [str(frame[time_column].iloc[np.flatnonzero(gap_of == g)[0] - 1]) for g in dict.fromkeys(inserted)]
        notes.append(f"data.fill_gaps={limit}: inserted {count(len(inserted), 'missing timestamp')} in "
                     f"{count(len(after), 'gap')} (after {', '.join(after[:5])}{' ...' if len(after) > 5 else ''}), "
                     f"values interpolated")
    for column, rows in filled_rows.items():
        if len(rows):
            notes.append(f"data.fill_gaps={limit}: interpolated {count(len(rows), 'blank cell')} in column "
                         f"{column!r} ({rows_text(rows, unit)})")
    if not notes:
        notes.append(f"data.fill_gaps={limit}: nothing to fill")
    return frame[keep].infer_objects(), notes


def _insert_missing(frame: pd.DataFrame, time_column: str, step: pd.Timedelta | None,
                    limit: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (blank values, no Excel row) for gaps of up to `limit` missing steps; and for every row,
    the number of the gap it fills (-1 for the rows that were read)."""
    index = pd.Index(frame.index, dtype="Int64", name=frame.index.name)
    frame = frame.set_axis(index)
    if step is None:
        return frame, np.full(len(frame), -1)
    times = frame[time_column]
    missing = (times.diff() / step - 1).fillna(0)
    gaps = missing[(missing >= 1) & (missing <= limit) & (missing == missing.round())]
    if gaps.empty:
        return frame, np.full(len(frame), -1)
    new = [(g, times[row] - step * k) for g, (row, n) in enumerate(gaps.items()) for k in range(int(n), 0, -1)]
    added = pd.DataFrame({time_column: [t for _, t in new]},
                         index=pd.Index([pd.NA] * len(new), dtype="Int64", name=frame.index.name))
    combined = pd.concat([frame, added]).assign(_gap=[-1] * len(frame) + [g for g, _ in new])
    combined = combined.sort_values(time_column, kind="stable")
    return combined.drop(columns="_gap"), combined["_gap"].to_numpy()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def clean_tables(tables: Tables, cfg: DataSettings) -> Tables:
    """Each series cleaned on its own (sorted, gaps filled from its own neighbours)."""
    return replace(tables, tables={i: clean_table(raw, cfg) for i, raw in tables.tables.items()})


@task(cache_policy=NO_CACHE)
def clean_data(tables: Tables, cfg: DataSettings) -> Tables:
    return clean_tables(tables, cfg)
