"""The benchmark's own protocol code agrees with the product's windows and baselines on ETTh1."""

from pathlib import Path

import numpy as np
import pandas as pd

from bench import protocol
from tasks.model.evaluate import repeat_forecast, seasonal_naive_forecast
from tasks.prepare.normalize import fit_scaler
from tasks.prepare.split import Bounds
from tasks.prepare.window import origins, target_windows
from tasks.settings import WindowSettings

ETTH1 = Path(__file__).parents[2] / "data" / "ETTh1.xlsx"


def test_script_windows_and_baselines_match_the_product():
    series = pd.read_excel(ETTH1, engine="calamine").set_index("date")[["OT"]]
    z = protocol.zscore(series["OT"].to_numpy(np.float64))
    seg = protocol.segments()
    values = fit_scaler(series, Bounds(seg["train"], seg["val"], seg["test"])).transform(series)
    np.testing.assert_allclose(values[:, 0], z, atol=1e-5)
    for horizon in protocol.HORIZONS:
        starts = origins(seg["test"], WindowSettings(input_length=protocol.L, horizon=horizon), training=False)
        x, y = protocol.windows(z, seg["test"], horizon)
        assert len(x) == len(starts) == 2880 - horizon + 1
        np.testing.assert_allclose(y, target_windows(values, starts, horizon), atol=1e-5)
        mine = protocol.naive(z, horizon)
        for name, forecast in (("repeat", repeat_forecast(values, starts, horizon)),
                               ("seasonal_naive", seasonal_naive_forecast(values, starts, horizon, 24))):
            assert abs(mine[name][0] - np.mean((forecast - y) ** 2)) < 1e-5
        assert protocol.ridge(z, horizon)["mse"] < mine["repeat"][0]
