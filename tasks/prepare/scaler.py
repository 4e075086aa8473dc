"""The z-score scaler: train-split statistics applied to every column. Training uses it, and so does the
logged model when it loads (so, like everything the model imports, this module imports no Prefect)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


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
