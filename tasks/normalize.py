"""Stage 4, normalize: z-score every column with statistics of the train split only.

The original script used the whole series' mean and std, leaking the test period into training. The
statistics are kept (logged, and bundled in the model) so inference scales new data the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.split import Bounds


@dataclass(frozen=True)
class Scaler:
    columns: tuple[str, ...]  # target first, then features
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """[rows, columns] float32, in `columns` order."""
        values = frame[list(self.columns)].to_numpy(dtype=np.float64)
        return ((values - np.array(self.mean)) / np.array(self.std)).astype(np.float32)

    def inverse_target(self, values: np.ndarray) -> np.ndarray:
        """Back to the target's own units."""
        return np.asarray(values, dtype=np.float64) * self.std[0] + self.mean[0]

    def to_dict(self) -> dict:
        return asdict(self)


def fit_scaler(series: pd.DataFrame, bounds: Bounds) -> Scaler:
    start, stop = bounds.train
    train = series.iloc[start:stop]
    std = train.std(ddof=0).replace(0.0, 1.0)  # a column constant in train is only centred
    return Scaler(tuple(series.columns), tuple(train.mean().tolist()), tuple(std.tolist()))


@task(cache_policy=NO_CACHE)
def normalize_series(series: pd.DataFrame, bounds: Bounds) -> tuple[Scaler, np.ndarray]:
    scaler = fit_scaler(series, bounds)
    return scaler, scaler.transform(series)
