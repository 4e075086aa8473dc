"""Prediction intervals: split-conformal, one half-width per horizon step, calibrated on the val split.

For step h the half-width is the ceil((n+1)·coverage)-th smallest of the n validation windows' absolute
errors at that step, in the target's units; `forecast ± half-width` then covers the truth with
probability >= coverage when errors are exchangeable. Stride-1 windows overlap and val was also used for
early stopping, so the guarantee is approximate: the evaluation reports the coverage met on test windows.
"""

from __future__ import annotations

import math

import numpy as np


def conformal_halfwidths(errors: np.ndarray, coverage: float) -> np.ndarray:
    """Half-widths [H] from forecast errors [windows, H]: per step, the k-th smallest absolute error."""
    # k = ceil((n+1)·coverage) is the finite-sample correction; with too few windows, the largest error.
    k = min(len(errors), math.ceil((len(errors) + 1) * coverage))
    return np.sort(np.abs(errors), axis=0)[k - 1]
