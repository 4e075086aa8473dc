"""Writing tables for people: .csv, or .xlsx that holds exactly the values it was given."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from openpyxl.cell import _writer as cell_writer


@contextmanager
def exact_floats():
    """openpyxl writes numbers with "%.16g", which changes the last bit of many float64 values;
    while saving, write the shortest round-trip repr instead."""
    original = cell_writer.safe_string
    cell_writer.safe_string = lambda v: repr(v) if type(v) is float and math.isfinite(v) else original(v)
    try:
        yield
    finally:
        cell_writer.safe_string = original


def write_table(frame: pd.DataFrame, path: Path, sheet: str = "data") -> Path:
    """Write `frame` (index dropped) as .csv or .xlsx, by the path's suffix."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix.lower() in (".xlsx", ".xlsm"):
        with exact_floats(), pd.ExcelWriter(path, engine="openpyxl") as writer:
            frame.to_excel(writer, sheet_name=sheet, index=False)
    else:
        raise ValueError(f"cannot write {path.suffix or 'files without a suffix'}: use .csv or .xlsx")
    return path
