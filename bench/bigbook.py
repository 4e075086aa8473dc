"""A large, realistic hourly workbook for the scale benchmark: the ETTh1 layout (date + 7 load and
temperature columns), with daily and yearly cycles, weekday effects and slowly wandering noise.

    python -m bench.bigbook OUT.xlsx [ROWS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl import Workbook

COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def hourly_series(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` hours from 2016-07-01: loads with daily and weekly shapes, an oil temperature (OT) that
    follows the seasons, the load and its own slow AR(1) noise; values rounded to 3 decimals."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)
    day, year = 2 * np.pi * t / 24, 2 * np.pi * t / (24 * 365.25)
    weekday = (np.floor(t / 24) % 7 < 5).astype(np.float64)

    def ar1(phi: float, sigma: float) -> np.ndarray:
        # x[t] = phi x[t-1] + e[t] is an exponentially weighted mean of e (alpha = 1 - phi), rescaled.
        e = rng.normal(0, sigma, rows)
        e[0] *= 1 - phi  # so that x[0] = e[0]
        return pd.Series(e).ewm(alpha=1 - phi, adjust=False).mean().to_numpy() / (1 - phi)

    load = 6 + 2 * np.sin(day - 1.0) + 0.8 * weekday + ar1(0.95, 0.3)
    frame = {
        "HUFL": load, "HULL": 0.3 * load + ar1(0.9, 0.2),
        "MUFL": 0.7 * load + ar1(0.9, 0.2), "MULL": 0.1 * load + ar1(0.9, 0.1),
        "LUFL": 0.5 * load + 1 + ar1(0.9, 0.1), "LULL": 1.2 + ar1(0.9, 0.05),
        "OT": 18 + 9 * np.cos(year) + 1.5 * np.sin(day - 2.0) + 0.4 * load + ar1(0.995, 0.25),
    }
    times = pd.date_range("2016-07-01", periods=rows, freq="h")
    return pd.DataFrame({"date": times} | {c: np.round(v, 3) for c, v in frame.items()})


def write_workbook(frame: pd.DataFrame, path: Path) -> Path:
    """openpyxl's write-only mode streams rows to disk: memory stays flat however many rows."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("data")
    sheet.append(list(frame.columns))
    for row in zip(frame["date"].dt.to_pydatetime(), *(frame[c].tolist() for c in COLUMNS)):
        sheet.append(row)
    book.save(path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    started = time.perf_counter()
    write_workbook(hourly_series(rows), out)
    print(f"{out}: {rows} rows in {time.perf_counter() - started:.1f}s, {out.stat().st_size / 2**20:.1f} MiB")
