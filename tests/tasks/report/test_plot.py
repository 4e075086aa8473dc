import numpy as np
import pandas as pd

from tasks.report.plot import make_figures


def test_a_test_split_of_exactly_one_window_plots():
    # One origin: the test targets are H rows, not one (the plot used to read a second origin's time).
    H = 6
    index = pd.date_range("2024-01-01", periods=60, freq="h")
    series = pd.DataFrame({"y": np.sin(np.arange(60) / 5)}, index=index)
    future = pd.DataFrame({"timestamp": pd.date_range(index[-1], periods=H + 1, freq="h")[1:], "forecast": np.zeros(H)})
    figures = make_figures.fn(series, "y", range(54, 55), np.ones((1, H)), future, {"loss": [1.0, 0.5]}, "one window")
    line = [l for l in figures["forecast.png"].axes[0].lines if l.get_label().startswith("test forecast")][0]
    assert list(line.get_xdata()) == list(index[54:60])
