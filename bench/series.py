"""The bench's `series` part: many series, one model.

- ETTh1's seven columns as seven series (channel-independent, as PatchTST and DLinear train): one global
  model per horizon, scored on `OT` under the protocol (same rows, L=96, H=24 and 96), beside the OT-only
  model trained in the same bench run; the same on ETTh2 when the bench is given a copy (`--etth2 FILE`:
  ETT-small/ETTh2.csv of github.com/zhouhaoyi/ETDataset, CC BY-ND 4.0, not bundled).
- Scale: 100 generated series of 2,000 hourly rows each (long format), `validate` and a one-epoch `train`,
  wall time and peak memory, against the same 200,000 rows as one series.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench import protocol
from bench.bigbook import hourly_series
from bench.fanout import set_options

SCALE_SERIES, SCALE_ROWS = 100, 2_000


def _run_id(out: str) -> str:
    return re.search(r"^run_id: (\w+)$", out, re.M).group(1)


def _client(env: dict):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def _series_table(env: dict, run_id: str) -> pd.DataFrame:
    path = _client(env).download_artifacts(run_id, "series.csv")
    return pd.read_csv(io.StringIO(Path(path).read_text())).set_index("series")


def _protocol(horizon: int, name: str) -> list[str]:
    return [f"window.input_length={protocol.L}", f"window.horizon={horizon}",
            *(f"split.{k}={v}" for k, v in protocol.SPLIT.items()),
            "tracking.experiment=bench-series", f"registry.model_name=bench-{name}-h{horizon}"]


def accuracy(measure, cli, data: Path, env: dict, ot: np.ndarray, name: str) -> dict:
    """For each horizon: the OT-only model and the global model of all seven columns, both scored on OT."""
    z, out = protocol.zscore(ot), {}
    for horizon in protocol.HORIZONS:
        alone = measure([cli, "train", data, "--target", "OT", *set_options(_protocol(horizon, f"{name}-ot"))],
                        env).require()
        every = measure([cli, "train", data, "--target", "all", *set_options(_protocol(horizon, f"{name}-all"))],
                        env).require()
        m_alone = _client(env).get_run(_run_id(alone.out)).data.metrics
        m_every = _client(env).get_run(_run_id(every.out)).data.metrics
        table = _series_table(env, _run_id(every.out))
        # The global model's OT is normalized and windowed as the protocol does: its Repeat is the script's.
        repeat = protocol.naive(z, horizon)["repeat"][0]
        assert abs(table.loc["OT", "repeat_test_mse"] - repeat) < 1e-6, (table.loc["OT", "repeat_test_mse"], repeat)
        out[horizon] = {
            "ot_only": {"test_mse": m_alone["test_mse"], "test_mae": m_alone["test_mae"], "seconds": alone.wall},
            "global": {"ot_test_mse": m_every["test_mse.OT"], "ot_test_mae": m_every["test_mae.OT"],
                       "all_test_mse": m_every["test_mse"], "seconds": every.wall, "peak_mb": every.peak_mb,
                       "epochs": len(re.findall(r" - epoch \d+/\d+ ", every.out))},
            "repeat_ot": repeat, "series": table[["test_mse", "repeat_test_mse"]].round(4).to_dict("index"),
        }
    return out


def scale(measure, cli, env: dict, folder: Path) -> dict:
    """100 series of 2,000 rows (long format) against the same rows as one series: validate, one epoch."""
    many = pd.concat([hourly_series(SCALE_ROWS, seed=k)[["date", "OT"]].assign(sensor=f"s{k:03d}")
                      for k in range(SCALE_SERIES)], ignore_index=True)[["date", "sensor", "OT"]]
    one = hourly_series(SCALE_SERIES * SCALE_ROWS)[["date", "OT"]]
    books = {"many": folder / "series-100x2000.parquet", "one": folder / "series-1x200000.parquet"}
    many.to_parquet(books["many"])
    one.to_parquet(books["one"])
    asks = {"many": ["--series", "all"], "one": ["--target", "OT"]}
    epoch = set_options(["train.epochs=1", "tracking.experiment=bench-series-scale"])
    out = {"series": SCALE_SERIES, "rows": SCALE_ROWS}
    for name, book in books.items():
        check = measure([cli, "validate", book, *asks[name]], env).require()
        train = measure([cli, "train", book, *asks[name], *epoch,
                         "--set", f"registry.model_name=bench-series-scale-{name}"], env).require()
        out[name] = {"validate_seconds": check.wall, "validate_peak_mb": check.peak_mb,
                     "train_seconds": train.wall, "train_peak_mb": train.peak_mb}
    return out


def run(measure, cli, datasets: dict[str, Path], env: dict, folder: Path, read_ot) -> dict:
    """`datasets`: ETTh1, and ETTh2 when the bench was given a copy (`--etth2`); `read_ot`: a file's OT column."""
    return {"accuracy": {name: accuracy(measure, cli, path, env, read_ot(path), name) for name, path in datasets.items()},
            "scale": scale(measure, cli, env, folder)}


def report(result: dict, measured: str) -> str:
    rows, per = "", []
    for name, by_horizon in result["accuracy"].items():
        for h, a in ((int(h), a) for h, a in by_horizon.items()):
            target = protocol.TARGETS[h] if name == "ETTh1" else None
            met = f"{target} ({'met' if a['global']['ot_test_mse'] <= target else 'NOT met'})" if target else ""
            rows += (f"| {name} | {h} | {a['ot_only']['test_mse']:.4f} | {a['global']['ot_test_mse']:.4f} | "
                     f"{a['repeat_ot']:.4f} | {met} | {a['ot_only']['seconds']:.0f} | {a['global']['seconds']:.0f} "
                     f"({a['global']['epochs']} epochs, peak {a['global']['peak_mb']:.0f} MB) |\n")
            per.append(f"{name} H={h}: " + ", ".join(f"{s} {v['test_mse']:.3f}" for s, v in a["series"].items()))
    s = result["scale"]
    ratio = lambda key: s["many"][key] / s["one"][key]  # noqa: E731
    return (
        f"### Many series, one model\n\n{measured}Each dataset's seven columns as seven series, one global model "
        "(`train --target all`), scored on OT under the protocol above (ETTh2 split and windowed as ETTh1), beside "
        "the OT-only model (`--target OT`) of the same bench run. MSE on OT's normalized scale:\n\n"
        "| data | H | OT only | global, OT | Repeat, OT | target | OT-only train s | global train s |\n"
        "|---|---|---:|---:|---:|---|---:|---:|\n" + rows
        + f"\nThe global model's test MSE on each of its series: {'; '.join(per)}.\n\n"
        f"Scale: {s['series']} generated series of {s['rows']:,} hourly rows (long format, `--series all`) against "
        f"the same {s['series'] * s['rows']:,} rows as one series (Parquet, so that reading the file is not what "
        "is measured):\n\n| command | 100 series | 1 series | ratio |\n|---|---:|---:|---:|\n"
        f"| `validate`, wall s | {s['many']['validate_seconds']:.1f} | {s['one']['validate_seconds']:.1f} | "
        f"{ratio('validate_seconds'):.2f} |\n"
        f"| `validate`, peak MB | {s['many']['validate_peak_mb']:.0f} | {s['one']['validate_peak_mb']:.0f} | "
        f"{ratio('validate_peak_mb'):.2f} |\n"
        f"| `train --set train.epochs=1`, wall s | {s['many']['train_seconds']:.0f} | {s['one']['train_seconds']:.0f} | "
        f"{ratio('train_seconds'):.2f} |\n"
        f"| `train --set train.epochs=1`, peak MB | {s['many']['train_peak_mb']:.0f} | {s['one']['train_peak_mb']:.0f} | "
        f"{ratio('train_peak_mb'):.2f} |\n")
