"""Stage 1, ingest: read a workbook (or CSV/Parquet) into a raw frame and pick the time and target columns.

The frame's index is the row number the user sees in Excel (or the line number in a CSV), so every
later message can point at a cell. Nothing here judges the values; that is `validate`'s job.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.errors import InputError, Problem
from tasks.settings import DataSettings

EXCEL_ZIP = {".xlsx", ".xlsm"}
SUPPORTED = EXCEL_ZIP | {".xls", ".csv", ".parquet"}
# Refuse before parsing when the sheets inflate past this: a 1M-row, 8-column sheet is about 0.6 GB of
# XML, while a decompression bomb declares many GB in a file of a few MB.
MAX_UNCOMPRESSED_BYTES = 2**30
TIME_NAMES = ("date", "time", "timestamp", "datetime", "period", "ds")


@dataclass(frozen=True)
class RawTable:
    """What was read, and from where."""

    frame: pd.DataFrame  # index: Excel row number (CSV line number) of each data row
    sheet: str | None
    time_column: str
    target: str
    features: tuple[str, ...]
    digest: str  # sha256 of the file's bytes
    notes: tuple[str, ...] = field(default=())  # what was chosen automatically


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
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise InputError([Problem(
            f"{path}: the workbook is damaged or incomplete ({exc})", "copy or export the file again"
        )]) from exc
    if declared > MAX_UNCOMPRESSED_BYTES:
        raise InputError([Problem(
            f"{path}: refused: its parts inflate to {declared / 2**30:.1f} GiB "
            f"(limit {MAX_UNCOMPRESSED_BYTES / 2**30:.0f} GiB), which is what a decompression bomb does",
            "if the data is genuine, export it as .csv or .parquet",
        )])


def read_frame(path: Path, sheet: str | int | None, header_row: int) -> tuple[pd.DataFrame, str | None]:
    """The table as pandas reads it, header on `header_row` (1-based); returns the frame and sheet name."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, header=header_row - 1, skip_blank_lines=False)
            sheet_name = None
        elif suffix == ".parquet":
            frame, sheet_name = pd.read_parquet(path), None
        else:
            # calamine (Rust) is several times faster than openpyxl and does not expand XML entities.
            with pd.ExcelFile(path, engine="calamine") as book:
                sheet_name = _pick_sheet(book, sheet, path)
                frame = book.parse(sheet_name, header=header_row - 1)
    except InputError:
        raise
    except Exception as exc:  # every parser has its own exception types; all mean "cannot read"
        raise InputError([Problem(
            f"{path}: cannot be read as {suffix} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "check that the file opens in Excel, then save it again",
        )]) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.index = pd.RangeIndex(header_row + 1, header_row + 1 + len(frame), name="row")
    return frame, sheet_name


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


def pick_columns(frame: pd.DataFrame, cfg: DataSettings) -> tuple[str, str, list[str]]:
    """The time column and target: as configured, or the only plausible candidate; notes say which."""
    columns = list(frame.columns)
    notes: list[str] = []
    missing = [c for c in (cfg.time_column, cfg.target, *cfg.features) if c is not None and c not in columns]
    if missing:
        raise InputError([Problem(
            f"column {name!r} not found; columns present: {', '.join(columns)}",
            "check the spelling, or pass --sheet/--header-row if the data is elsewhere",
        ) for name in missing])
    time_col = cfg.time_column or _only(
        [c for c in columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        or [c for c in columns if c.lower() in TIME_NAMES],
        "time column", "--time-col", columns,
    )
    numeric = [c for c in columns if c != time_col and pd.api.types.is_numeric_dtype(frame[c])]
    target = cfg.target or _only([c for c in numeric if c not in cfg.features], "target column", "--target", columns)
    if not cfg.time_column:
        notes.append(f"time column: {time_col!r} (auto-detected)")
    if not cfg.target:
        notes.append(f"target: {target!r} (the only numeric column)")
    return time_col, target, notes


def _only(candidates: list[str], what: str, flag: str, columns: list[str]) -> str:
    if len(candidates) == 1:
        return candidates[0]
    found = f"candidates: {', '.join(candidates)}" if candidates else f"columns present: {', '.join(columns)}"
    raise InputError([Problem(f"cannot tell which is the {what} ({found})", f"pass {flag} NAME")])


def read_table(path: Path, cfg: DataSettings) -> RawTable:
    """Check, read and pick columns; the only entry point the flows use."""
    path = Path(path)
    check_file(path)
    header_row = cfg.header_row or 1
    frame, sheet = read_frame(path, cfg.sheet, header_row)
    if frame.empty:
        where = f"sheet {sheet!r}" if sheet else str(path)
        raise InputError([Problem(f"{where} has no data rows below the header (Excel row {header_row})",
                                  "put the data on the first sheet, or pass --sheet/--header-row")])
    time_col, target, notes = pick_columns(frame, cfg)
    keep = [time_col, target, *cfg.features]
    return RawTable(frame[keep], sheet, time_col, target, tuple(cfg.features), file_digest(path), tuple(notes))


def _content_key(context, parameters) -> str:
    """Cache ingestion by what the file holds, not where it lies (a renamed copy hits the cache)."""
    if not Path(parameters["path"]).is_file():
        return None  # nothing to cache; the task itself says what is wrong
    options = hashlib.sha256(parameters["cfg"].model_dump_json().encode()).hexdigest()[:16]
    return f"read_workbook-{file_digest(Path(parameters['path']))}-{options}"


def _transient(task, task_run, state) -> bool:
    """Retry I/O hiccups (a file still being copied, a network share), never bad input."""
    return not isinstance(state.result(raise_on_failure=False), InputError)


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=_transient, cache_key_fn=_content_key)
def read_workbook(path: Path, cfg: DataSettings) -> RawTable:
    return read_table(path, cfg)
