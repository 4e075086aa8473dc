"""Build data/ETTh1.xlsx, the bundled example, from the ETTh1 CSV (values copied exactly): ETTh1.csv of the
ETDataset repository (zhouhaoyi/ETDataset, CC BY-ND 4.0; see data/ETT-LICENSE.txt).

    python data/make_example_workbook.py PATH/TO/ETTh1.csv
"""

import sys
from pathlib import Path

import pandas as pd

from tasks.report.export import write_table

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    source = Path(sys.argv[1])
    frame = pd.read_csv(source, parse_dates=["date"])
    out = write_table(frame, Path(__file__).with_name("ETTh1.xlsx"), sheet="ETTh1")
    back = pd.read_excel(out, engine="calamine")
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_dtype=False)
    print(f"{out}: {len(frame)} rows x {frame.shape[1]} columns, identical to {source}")
