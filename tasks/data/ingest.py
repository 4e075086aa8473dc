"""Stage 1, ingest: read a workbook (or CSV/Parquet) into a raw frame and pick the time and target columns.

The frame's index is the row number the user sees in Excel (or the line number in a CSV), so every
later message can point at a cell. Nothing here judges the values; that is `validate`'s job. What is
refused here is what cannot be read at all: missing, empty, damaged or hostile files, and tables whose
header is not where the settings say (with a pointer to where it is).
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.data.times import STEPS, looks_like_time
from tasks.errors import InputError, Problem, shown_id
from tasks.settings import ALL, NO_TIME, DataSettings

EXCEL_ZIP = {".xlsx", ".xlsm"}
SUPPORTED = EXCEL_ZIP | {".xls", ".csv", ".parquet"}
# Refuse before parsing when the sheets inflate past this: a 1M-row, 8-column sheet is about 0.6 GB of
# XML, while a decompression bomb declares many GB in a file of a few MB.
MAX_UNCOMPRESSED_BYTES = 2**30
# A DOCTYPE sits in an XML part's prolog, before the root element; Excel never writes one.
PROLOG_BYTES = 4096
TIME_NAMES = ("date", "time", "timestamp", "datetime", "period", "ds")
# Names of id columns in long format (lower case, without spaces or underscores): several series stacked.
ID_NAMES = ("id", "uniqueid", "series", "seriesid", "group", "groupid", "store", "storeid", "sensor", "sensorid",
            "item", "itemid", "sku", "station", "stationid", "site", "siteid", "meter", "meterid", "device",
            "deviceid", "location")
HEADER_SEARCH_ROWS = 30  # how far down a sheet to look for a header the settings did not point at


@dataclass(frozen=True)
class RawTable:
    """What was read, and from where."""

    frame: pd.DataFrame  # index: Excel row number (CSV line number) of each data row
    sheet: str | None
    time_column: str
    target: str
    features: tuple[str, ...]
    digest: str  # sha256 of the file's bytes
    notes: tuple[str, ...] = field(default=())  # what was chosen or changed automatically
    row_unit: str = "Excel row"  # what the index counts: "Excel row", "line" (CSV) or "row" (Parquet)
    numbered: bool = False  # no time column: `time_column` (STEPS) numbers the rows 0..n-1


@dataclass(frozen=True)
class Tables:
    """The series a file holds, as the settings ask for them: one RawTable each, by series id (the
    column's name in wide format, the id in long format)."""

    tables: dict[str, RawTable]
    id_column: str | None  # long format: the column holding the ids; None: wide, or one series
    several: bool  # several series asked for (data.target or data.series lists them, or says "all")


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def check_file(path: Path) -> None:
    """Refuse what is not a readable data file, before any parser sees it."""
    todo = f"pass a workbook ({', '.join(sorted(SUPPORTED))})"
    if not path.exists():
        raise InputError([Problem(f"{path}: no such file", todo)])
    if path.is_dir():
        raise InputError([Problem(f"{path}: is a folder, not a file", todo)])
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError([Problem(f"{path}: unsupported file type {suffix or '(none)'}", todo)])
    size = path.stat().st_size
    if size == 0:
        raise InputError([Problem(f"{path}: the file is empty (0 bytes)", "export the data again")])
    with open(path, "rb") as fh:
        head = fh.read(8)
    if suffix in EXCEL_ZIP:
        if not head.startswith(b"PK"):
            kind = "text" if _looks_like_text(head) else "not a zip archive"
            raise InputError([Problem(
                f"{path}: not an Excel workbook ({kind}; an .xlsx file is a zip archive)",
                "if it is CSV, rename it to .csv; otherwise save it from Excel as .xlsx",
            )])
        _check_zip(path)
    elif suffix == ".xls" and not head.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError([Problem(f"{path}: not an Excel 97-2003 workbook", "save it from Excel as .xlsx")])


def _looks_like_text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in b"\t\r\n" for b in head)


def _check_zip(path: Path) -> None:
    """Hostile workbooks are refused from the zip's directory and the parts' first bytes, before parsing."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
            declared = sum(info.file_size for info in parts)
            if declared > MAX_UNCOMPRESSED_BYTES:
                raise InputError([Problem(
                    f"{path}: refused: its parts inflate to {declared / 2**30:.1f} GiB "
                    f"(limit {MAX_UNCOMPRESSED_BYTES / 2**30:.0f} GiB), which is what a decompression bomb does",
                    "if the data is genuine, export it as .csv or .parquet",
                )])
            for info in parts:
                if info.filename.endswith((".xml", ".rels")):
                    with archive.open(info) as part:
                        prolog = part.read(PROLOG_BYTES)
                    if b"<!DOCTYPE" in prolog or b"<!ENTITY" in prolog:
                        raise _entities_refused(path, info.filename)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise InputError([Problem(
            f"{path}: the workbook is damaged or incomplete ({exc})", "copy or export the file again"
        )]) from exc


def _entities_refused(path: Path, part: str = "") -> InputError:
    return InputError([Problem(
        f"{path}: refused: the workbook declares XML entities{f' (in {part})' if part else ''}, which Excel "
        "never writes and which can expand to gigabytes when read (an 'XML bomb')",
        "if the file should be genuine, open it in Excel and save it again, or export the data as .csv",
    )])


def read_frame(path: Path, sheet: str | int | None, header_row: int | None) -> tuple[pd.DataFrame, str | None, str]:
    """The table as pandas reads it, header on `header_row` (1-based; None: no header, data from row 1);
    returns frame, sheet name, row unit."""
    header, first = (None, 1) if header_row is None else (header_row - 1, header_row + 1)
    suffix = path.suffix.lower()
    # Only empty cells are missing: text such as "n/a" or "NULL" is reported as text, not taken as a blank.
    text_as_text = {"keep_default_na": False, "na_values": [""]}
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, header=header, skip_blank_lines=False, **text_as_text)
            sheet_name, unit = None, "line"
        elif suffix == ".parquet":
            frame, sheet_name, unit, first = pd.read_parquet(path), None, "row", 1
        else:
            # calamine (Rust) is several times faster than openpyxl and does not expand XML entities.
            with pd.ExcelFile(path, engine="calamine") as book:
                sheet_name = _pick_sheet(book, sheet, path)
                frame = pd.read_excel(book, sheet_name, header=header, **text_as_text)
            unit = "Excel row"
    except InputError:
        raise
    except Exception as exc:  # every parser has its own exception types; all mean "cannot read"
        detail = str(exc).splitlines()[0] if str(exc) else ""
        if "entit" in detail.lower():  # calamine: "unrecognized entity"; defusedxml: EntitiesForbidden
            raise _entities_refused(path) from exc
        if "larger than its declared" in detail:  # calamine stops inflating at the size the zip declares
            raise InputError([Problem(
                f"{path}: refused: a part of the workbook inflates past the size its zip headers declare, "
                "which is what a disguised decompression bomb (or a damaged file) does",
                "export the data again from Excel, or as .csv",
            )]) from exc
        raise InputError([Problem(
            f"{path}: cannot be read as {suffix} ({type(exc).__name__}: {detail})",
            "check that the file opens in Excel, then save it again",
        )]) from exc
    if header is None:
        frame.columns = ["value"] if frame.shape[1] == 1 else [f"column_{i}" for i in range(1, frame.shape[1] + 1)]
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.index = pd.RangeIndex(first, first + len(frame), name="row")
    return frame, sheet_name, unit


def is_data_row(names: pd.Index) -> bool:
    """A header row of numbers or dates (nothing else) is the first row of data in a sheet without a header."""
    def data(name) -> bool:
        return (not isinstance(name, str) or pd.notna(pd.to_numeric(name, errors="coerce"))
                or looks_like_time(pd.Series([name])))
    return len(names) > 0 and all(data(n) for n in names)


def _pick_sheet(book: pd.ExcelFile, sheet: str | int | None, path: Path) -> str:
    names = [str(n) for n in book.sheet_names]
    if sheet is None:
        return names[0]
    if isinstance(sheet, int):
        if 0 <= sheet < len(names):
            return names[sheet]
    elif sheet in names:
        return sheet
    raise InputError([Problem(f"{path}: no sheet {sheet!r}; sheets present: {', '.join(names)}", "pass --sheet NAME")])


def asked(value: str | None, known: list[str]) -> list[str] | str | None:
    """--target or --series as written: None, ALL, or names separated by commas; a value that is itself
    one of the `known` columns or ids (with a comma in it, or "all") is that one name."""
    if value is None:
        return None
    if value.strip() in known:
        return [value.strip()]
    if value.strip().lower() == ALL:
        return ALL
    return [name.strip() for name in value.split(",") if name.strip()]


def asks_several(value: str | None, known: list[str]) -> bool:
    """Several series asked for: ALL, more than one name, or one name followed by a comma ("OT,")."""
    names = asked(value, known)
    return names == ALL or (isinstance(names, list) and (len(names) > 1 or value.rstrip().endswith(",")))


def pick_columns(frame: pd.DataFrame, cfg: DataSettings, where: str) -> tuple[str | None, list[str], list[str]]:
    """The time column (None: row order is time) and targets: as configured (ALL: every column but the
    time column and the features), or the only plausible candidate; notes say which."""
    columns = list(frame.columns)
    notes: list[str] = []
    missing = [c for c in _named(cfg, columns) if c not in columns]
    if missing:
        raise InputError([Problem(
            f"{where}: column {name!r} not found; columns present: {', '.join(columns)}",
            "check the spelling (--time-col, --target, data.features), or pass --sheet/--header-row "
            "if the table is elsewhere",
        ) for name in missing])
    candidates = ([c for c in columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
                  or [c for c in columns if c.lower() in TIME_NAMES]
                  or [c for c in columns if looks_like_time(frame[c])])
    if cfg.time_column == NO_TIME or (cfg.time_column is None and not candidates):
        time_col = None
    else:
        time_col = cfg.time_column or _only(candidates, "time column", "--time-col", columns, where)
    numeric = [c for c in columns if c != time_col and pd.api.types.is_numeric_dtype(frame[c]) and not _id_name(c)]
    names = asked(cfg.target, columns)
    if names == ALL:
        # Text columns are series too: validation names them, rather than a model silently leaving them out.
        targets = [c for c in columns if c != time_col and c not in cfg.features and not _id_name(c)]
        notes.append(f"targets: every column but the time column ({len(targets)}: {', '.join(targets)})")
    else:
        targets = names or [_only([c for c in numeric if c not in cfg.features], "target column", "--target",
                                  columns, where)]
    if time_col is None:
        why = "data.time_column=none" if cfg.time_column else f"no column holds dates or times ({', '.join(columns)})"
        notes.append(f"no time column ({why}): row order is time, steps numbered 0 to {len(frame) - 1}; "
                     "pass --time-col NAME if a column holds the times")
    elif not cfg.time_column:
        notes.append(f"time column: {time_col!r} (auto-detected)")
    if not cfg.target:
        notes.append(f"target: {targets[0]!r} (the only numeric column)")
    return time_col, targets, notes


def _id_name(column: str) -> bool:
    return column.lower().replace("_", "").replace(" ", "") in ID_NAMES


def id_column(frame: pd.DataFrame, time_col: str | None, used: list[str]) -> str | None:
    """The id column of a long-format sheet: named like one (store, sensor, GroupID), or holding text,
    such that each timestamp recurs once per id (a notes or status column does not); None when there is
    none (or no single one)."""
    def text(cells: pd.Series) -> bool:
        given = cells.dropna()
        return (len(given) > 0 and given.map(lambda v: isinstance(v, str)).all()
                and pd.to_numeric(given, errors="coerce").isna().all() and not looks_like_time(cells))

    def stacks(column: str) -> bool:
        if time_col is None or frame[column].nunique() == 1:
            return True
        pairs = frame[[column, time_col]].dropna()
        return pairs[time_col].duplicated().any() and not pairs.duplicated().any()
    free = [c for c in frame.columns if c not in used]
    found = [c for c in free if _id_name(c) and stacks(c)] or [c for c in free if text(frame[c]) and time_col
                                                               and stacks(c)]
    return found[0] if len(found) == 1 else None


def pick_series(frame: pd.DataFrame, cfg: DataSettings, time_col: str | None, used: list[str],
                where: str) -> tuple[dict[str, pd.DataFrame] | None, str | None, list[str], bool]:
    """The rows of each series `data.series` asks for from a long-format sheet (one id, several separated
    by commas, or "all"), by id, with the id column, a note and whether several were asked for; None
    when there is no id column, or when it holds one series and none was asked for."""
    column = id_column(frame, time_col, used)
    if column is None:
        if cfg.series is not None:
            raise InputError([Problem(f"{where}: --series {cfg.series} given, but no id column found "
                                      f"(columns present: {', '.join(frame.columns)})",
                                      "leave out --series, or name the id column like 'id', 'store' or 'sensor'")])
        return None, None, [], False
    ids = frame[column].dropna().map(shown_id)
    distinct = list(dict.fromkeys(ids))
    listed = ", ".join(distinct[:20]) + (f" and {len(distinct) - 20} more" if len(distinct) > 20 else "")
    if cfg.series is None and len(distinct) == 1:
        return None, None, [f"id column {column!r} holds one series ({distinct[0]}); ignored"], False
    if cfg.series is None:
        raise InputError([Problem(f"{where}: {len(distinct)} series in id column {column!r} (long format): {listed}",
                                  "pass --series ID to use one of them, --series A,B for some, or --series all "
                                  "for one model over every series")])
    names = asked(cfg.series, distinct)
    wanted = distinct if names == ALL else names
    unknown = [i for i in wanted if i not in distinct]
    if unknown:
        raise InputError([Problem(f"{where}: no series {', '.join(map(repr, unknown))} in id column {column!r} "
                                  f"(long format): {listed}", "pass ids that the id column holds")])
    rows = {i: frame.loc[ids.index[ids == i]] for i in wanted}
    shown = ", ".join(wanted[:20]) + (f" and {len(wanted) - 20} more" if len(wanted) > 20 else "")
    return rows, column, [f"id column {column!r}: series {shown} ({sum(map(len, rows.values()))} of {len(frame)} "
                          f"rows; {len(distinct)} series in all: {listed})"], asks_several(cfg.series, distinct)


def _named(cfg: DataSettings, columns: list[str] = ()) -> list[str]:
    """The columns the settings name (`columns`: those of the sheet, when known)."""
    targets = asked(cfg.target, list(columns))
    return [c for c in (cfg.time_column, *(targets if isinstance(targets, list) else []), *cfg.features)
            if c not in (None, NO_TIME)]


def _only(candidates: list[str], what: str, flag: str, columns: list[str], where: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    found = f"candidates: {', '.join(candidates)}" if candidates else f"columns present: {', '.join(columns)}"
    raise InputError([Problem(f"{where}: cannot tell which is the {what} ({found})", f"pass {flag} NAME")])


def _head_rows(path: Path) -> dict[str | None, list[list[str]]]:
    """The first rows of every sheet (of the file, for CSV) as text, for finding a misplaced header."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", errors="replace") as fh:
            return {None: [row for row, _ in zip(csv.reader(fh), range(HEADER_SEARCH_ROWS))]}
    if path.suffix.lower() == ".parquet":
        return {}
    with pd.ExcelFile(path, engine="calamine") as book:
        return {str(name): pd.read_excel(book, name, header=None, nrows=HEADER_SEARCH_ROWS, keep_default_na=False)
                .astype(str).values.tolist() for name in book.sheet_names}


def locate_header(path: Path, cfg: DataSettings) -> tuple[str | None, int] | None:
    """The (sheet, 1-based row) of the first row naming every configured column (or, when none is
    configured, a typical time column name), or None."""
    wanted = set(_named(cfg))
    for sheet, rows in _head_rows(path).items():
        for number, cells in enumerate(rows, start=1):
            names = {str(c).strip() for c in cells} - {""}
            if wanted <= names if wanted else (len(names) > 1 and any(n.lower() in TIME_NAMES for n in names)):
                return sheet, number
    return None


def _misplaced_header(path: Path, cfg: DataSettings, sheet: str | None, header_row: int) -> InputError | None:
    """When the columns are not found: point at the sheet and row where they are, if they are near."""
    try:
        found = locate_header(path, cfg)
    except Exception:  # the search is a courtesy; the original problem still stands
        return None
    if found is None or found == (sheet, header_row):
        return None
    at_sheet, at_row = found
    flags = " ".join(([f"--sheet {at_sheet}"] if at_sheet != sheet else [])
                     + ([f"--header-row {at_row}"] if at_row != 1 else []))
    if at_sheet != sheet:
        what = f"{path}: the data is on sheet {at_sheet!r}" + (f" (header on Excel row {at_row})" if at_row != 1 else "")
        return InputError([Problem(f"{what}, not on sheet {sheet!r}", f"pass {flags}")])
    unit = "line" if sheet is None else "Excel row"
    above = "the rows above it hold a title" if at_row > header_row else "it is above the row given"
    where = f"{path}" + (f", sheet {sheet!r}" if sheet else "")
    return InputError([Problem(f"{where}: the header is on {unit} {at_row}, not {unit} {header_row} ({above})",
                               f"pass --header-row {at_row}")])


def excel_cell_values(path: Path, sheet: str, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The frame with its blank-looking cells replaced by what Excel holds there, when that is a formula
    without a saved value ("=B2*2") or an error ("#DIV/0!"): pandas reads both as blanks, and neither
    may be filled in as a gap. Only the blank cells are looked at (with openpyxl, read-only)."""
    blank = {c: frame.index[frame[c].isna()] for c in columns}
    if not any(len(rows) for rows in blank.values()):
        return frame
    import openpyxl  # parses through defusedxml when it is installed (a dependency), so entities stay refused

    book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        ws = book[sheet]
        header_row = int(frame.index[0]) - 1
        header = [str(c).strip() if c is not None else "" for c in next(ws.iter_rows(
            min_row=header_row, max_row=header_row, values_only=True), ())]
        wanted = {header.index(c) + 1: c for c in columns if c in header and len(blank[c])}
        if not wanted:
            return frame
        lookups = {(r, col) for col, c in wanted.items() for r in blank[c]}
        found = {}
        rows = ws.iter_rows(min_row=min(r for r, _ in lookups), max_row=max(r for r, _ in lookups),
                            min_col=min(wanted), max_col=max(wanted))
        for cells in rows:
            for cell in cells:
                key = (getattr(cell, "row", None), getattr(cell, "column", None))
                if key in lookups and cell.data_type in ("f", "e") and isinstance(cell.value, str):
                    found[key] = cell.value
    finally:
        book.close()
    if not found:
        return frame
    frame = frame.astype({wanted[col]: object for _, col in found})
    for (row, col), value in found.items():
        frame.at[row, wanted[col]] = value
    return frame


def read_tables(path: Path, cfg: DataSettings) -> Tables:
    """Check, read and pick columns and series; the entry point the flows use."""
    path = Path(path)
    check_file(path)
    header_row = cfg.header_row or 1
    try:
        frame, sheet, unit = read_frame(path, cfg.sheet, header_row)
        headerless = cfg.header_row is None and path.suffix.lower() != ".parquet" and is_data_row(frame.columns)
        if headerless:
            frame, sheet, unit = read_frame(path, sheet, None)
    except InputError as exc:
        # A title line above a CSV header makes the lines ragged, which pandas cannot parse.
        raise (path.suffix.lower() == ".csv" and _misplaced_header(path, cfg, None, header_row)) or exc from None
    where = f"{path}" + (f", sheet {sheet!r}" if sheet else "")
    try:
        if frame.empty:
            raise InputError([Problem(f"{where} has no data rows below the header ({unit} {header_row})",
                                      "pass --sheet/--header-row if the data is elsewhere, or export it again")])
        time_col, targets, notes = pick_columns(frame, cfg, where)
    except InputError as exc:
        raise _misplaced_header(path, cfg, sheet, header_row) or exc from None
    by_id, id_col, said, several_ids = pick_series(frame, cfg, time_col,
                                                   [c for c in (time_col, *targets, *cfg.features) if c], where)
    several = several_ids or asks_several(cfg.target, list(frame.columns))
    notes += said
    if by_id is not None and len(targets) > 1:
        raise InputError([Problem(f"{where}: both --series {cfg.series} (long format) and --target {cfg.target} "
                                  "(several columns) ask for several series",
                                  "pick the series by one of them: --series in long format, --target in wide")])
    if headerless:
        notes.insert(0, f"no header row ({unit} 1 holds data, not column names): columns named "
                        f"{', '.join(frame.columns)}")
    if header_row > 1:
        notes.append(f"header on {unit} {header_row}; the {header_row - 1} row(s) above it are not read")
    values = [*targets, *cfg.features]
    if path.suffix.lower() in EXCEL_ZIP:
        frame = excel_cell_values(path, sheet, frame, values + [time_col] * (time_col is not None))
    numbered = time_col is None
    column = STEPS if numbered else time_col
    if numbered and not by_id:  # numbered by their place in the sheet, before a wide series is cut to its span
        frame = frame.assign(**{STEPS: range(len(frame))})
    frames = by_id or {target: frame for target in targets}
    digest, tables = file_digest(path), {}
    for series_id, rows in frames.items():
        target = targets[0] if by_id else series_id
        notes_of = notes
        if several and not by_id:
            rows, said = _own_span(rows, target, unit)
            notes_of = notes + said
        if numbered and by_id:  # each id's rows in their order
            rows = rows.assign(**{STEPS: range(len(rows))})
        tables[series_id] = RawTable(rows[[column, target, *cfg.features]], sheet, column, target,
                                     tuple(cfg.features), digest, tuple(notes_of), unit, numbered)
    return Tables(tables, id_col, several)


def _own_span(rows: pd.DataFrame, column: str, unit: str) -> tuple[pd.DataFrame, list[str]]:
    """A wide sheet's column from its first to its last value: series of a sheet may start and end at
    different times, blank before and after. Blanks inside stay, for validation to report."""
    given = rows[column].notna().to_numpy()
    if not given.any() or given.all():
        return rows, []
    first, last = given.argmax(), len(given) - 1 - given[::-1].argmax()
    if (first, last) == (0, len(given) - 1):
        return rows, []
    span = rows.iloc[first:last + 1]
    return span, [f"series {column}: its values run from {unit} {span.index[0]} to {span.index[-1]}; "
                  "the blank rows before and after them are not part of it"]


def read_table(path: Path, cfg: DataSettings) -> RawTable:
    """The one series the settings ask for (read_tables, for settings that ask for one)."""
    tables = read_tables(path, cfg)
    if tables.several:
        raise ValueError("read_table reads one series; these settings ask for several: use read_tables")
    return next(iter(tables.tables.values()))


def _content_key(context, parameters) -> str:
    """Cache ingestion by what the file holds and how it is read (its suffix), not where it lies (a
    renamed copy hits the cache); and by this module's code, since the cache outlives the process."""
    path = Path(parameters["path"])
    if not path.is_file():
        return None  # nothing to cache; the task itself says what is wrong
    how = parameters["cfg"].model_dump_json().encode() + path.suffix.lower().encode() + Path(__file__).read_bytes()
    return f"read_workbook-{file_digest(path)}-{hashlib.sha256(how).hexdigest()[:16]}"


def _transient(task, task_run, state) -> bool:
    """Retry I/O hiccups (a file still being copied, a network share), never bad input."""
    return not isinstance(state.result(raise_on_failure=False), InputError)


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=_transient, cache_key_fn=_content_key)
def read_workbook(path: Path, cfg: DataSettings) -> Tables:
    return read_tables(path, cfg)
