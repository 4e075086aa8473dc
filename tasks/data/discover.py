"""Finding the data to work on: the newest workbook in a folder, where scheduled runs pick up new data."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.data.ingest import SUPPORTED
from tasks.errors import InputError, Problem


def newest_workbook(folder: Path, pattern: str = "*") -> Path:
    """The most recently modified data file in `folder` matching `pattern` (hidden and temp files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError([Problem(f"{folder}: no such folder", "point data_dir at the folder where new workbooks land")])
    candidates = [p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in SUPPORTED
                  and not p.name.startswith((".", "~$"))]  # ~$ files are Excel's lock files
    if not candidates:
        raise InputError([Problem(f"{folder}: no workbook matching {pattern!r}",
                                  f"put a {'/'.join(sorted(SUPPORTED))} file there")])
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))


@task
def find_newest_workbook(folder: str, pattern: str = "*") -> Path:
    return newest_workbook(Path(folder), pattern)
