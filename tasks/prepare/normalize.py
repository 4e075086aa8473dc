"""Stage 4, normalize: z-score every column with statistics of the train split only.

The original script used the whole series' mean and std, leaking the test period into training. The
statistics are kept (logged, and bundled in the model) so inference scales new data the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.prepare.scaler import Scaler
from tasks.prepare.split import Bounds


def fit_scaler(series: pd.DataFrame, bounds: Bounds) -> Scaler:
    start, stop = bounds.train
    train = series.iloc[start:stop]
    std = train.std(ddof=0).replace(0.0, 1.0)  # a column constant in train is only centred
    return Scaler(tuple(series.columns), tuple(train.mean().tolist()), tuple(std.tolist()))


@task(cache_policy=NO_CACHE)
def normalize_series(frames: list[pd.DataFrame], bounds: list[Bounds]) -> tuple[list[Scaler], list[np.ndarray]]:
    """Each series z-scored with the statistics of its own train split."""
    scalers = [fit_scaler(frame, b) for frame, b in zip(frames, bounds)]
    return scalers, [scaler.transform(frame) for scaler, frame in zip(scalers, frames)]
