"""The benchmark: the ETTh1 protocol (bench/protocol.py) through `lstm-pipeline train` (default configuration,
only L, H, the split, the target and where runs are recorded set), training speed, whole-command
overhead and scale. Prints the tables; `--write` also puts them in BENCHMARKS.md.

    .venv/bin/python -m bench.run [--parts accuracy,speed,overhead,scale,sweep,cluster,backtest,series] [--data data/ETTh1.xlsx] [--write]

Every command runs as a subprocess of its own, with its peak memory measured by a small launcher, and
records into a bench-only MLflow store (a temporary folder unless --store), never ./mlruns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from bench import cluster, fanout, protocol, series
from bench.bigbook import hourly_series, write_workbook

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
CLI = PYTHON.with_name("lstm-pipeline")
PEAK_RSS = ROOT / "tests" / "fixtures" / "peak_rss.py"  # forks the command from a small process
PARTS = ("accuracy", "speed", "overhead", "scale", "sweep", "cluster", "backtest", "series")
SCALE_ROWS = 1_000_000
# short_run_ratio: a one-epoch `train` against the imports alone, and against the imports plus one epoch's
# arithmetic (the same factor: what a short run may cost beyond what it cannot avoid).
LIMITS = {"seed_seconds": 60, "validate_seconds": 30, "validate_peak_gb": 1.5, "epoch_ratio": 0.5, "short_run_ratio": 1.6}
SAVED = ROOT / "bench" / "results.json"  # the latest measurement of each part, which the block in BENCHMARKS.md shows


@dataclass
class Finished:
    argv: list[str]
    started: float  # time.time() at launch
    wall: float
    peak_mb: float
    returncode: int
    out: str  # stdout and stderr, interleaved
    rss: list[tuple[float, float]]  # (time.time(), MB) of the command's process, sampled

    def require(self) -> Finished:
        if self.returncode != 0:
            raise SystemExit(f"command failed ({self.returncode}): {' '.join(self.argv)}\n{self.out[-3000:]}")
        return self


def sample_rss(launcher: subprocess.Popen, into: list) -> None:
    """Every 0.2 s, the resident memory of the command (the launcher's child), until it ends."""
    while launcher.poll() is None:
        try:
            for child in psutil.Process(launcher.pid).children():
                into.append((time.time(), child.memory_info().rss / 2**20))
        except psutil.Error:
            pass
        time.sleep(0.2)


def measure(argv: list, env: dict | None = None) -> Finished:
    """Run a command from the repo's folder: wall time, peak resident memory, memory over time."""
    argv = [str(a) for a in argv]
    samples: list[tuple[float, float]] = []
    with tempfile.NamedTemporaryFile("r") as peak, tempfile.TemporaryFile("w+") as out:
        started, clock = time.time(), time.perf_counter()
        launcher = subprocess.Popen([str(PYTHON), str(PEAK_RSS), peak.name, *argv], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, text=True)
        sample_rss(launcher, samples)
        wall = time.perf_counter() - clock
        out.seek(0)
        peak_kb = int(peak.read() or 0)
        return Finished(argv, started, wall, peak_kb / 1024, launcher.returncode, out.read(), samples)


def train(data: Path, env: dict, overrides: list[str], preset: str | None = None) -> tuple[Finished, str]:
    argv = [CLI, "train", data, "--target", "OT", *(a for o in overrides for a in ("--set", o))]
    done = measure(argv + (["--preset", preset] if preset else []), env).require()
    return done, re.search(r"^run_id: (\w+)$", done.out, re.M).group(1)


def store_env(store: Path) -> dict:
    """The bench's own MLflow store; Prefect's temporary server, as a user without a server gets."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return env | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}


def run_metrics(env: dict, run_id: str) -> dict[str, float]:
    """Metrics of a run, read back from the bench's store through MLflow."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_run(run_id).data.metrics


def metric_history(env: dict, run_id: str, key: str) -> list[float]:
    """A per-epoch metric of a run, in epoch order."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def run_tag(env: dict, run_id: str, key: str) -> str | None:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_run(run_id).data.tags.get(key)


# --- accuracy ------------------------------------------------------------------------------------------

def protocol_overrides(horizon: int) -> list[str]:
    return [f"window.input_length={protocol.L}", f"window.horizon={horizon}",
            *(f"split.{k}={v}" for k, v in protocol.SPLIT.items()),
            "tracking.experiment=bench", f"registry.model_name=bench-etth1-h{horizon}"]


def accuracy(data: Path, env: dict) -> dict:
    z = protocol.zscore(read_target(data))
    out = {}
    for horizon in protocol.HORIZONS:
        done, run_id = train(data, env, protocol_overrides(horizon))
        m = run_metrics(env, run_id)
        mine = protocol.naive(z, horizon)
        # The script's own Repeat must equal the product's: the same windows, the same scaling.
        assert abs(mine["repeat"][0] - m["repeat_test_mse"]) < 1e-6, (mine["repeat"], m["repeat_test_mse"])
        out[horizon] = {
            "model": (m["test_mse"], m["test_mae"]), "start_val_mse": m["start_val_mse"],
            "kept_val_loss": m["kept_val_loss"], "val_mse": m["val_mse"],
            "lstm_improved_on_start": run_tag(env, run_id, "lstm_improved_on_start"),
            "repeat": (m["repeat_test_mse"], m["repeat_test_mae"]),
            "seasonal_naive": (m["seasonal_naive_test_mse"], m["seasonal_naive_test_mae"]),
            "ridge": protocol.ridge(z, horizon), "train_seconds": done.wall, "run_id": run_id,
            "epochs": epochs_trained(done.out),
        }
    return out


def read_target(data: Path) -> np.ndarray:
    frame = pd.read_csv(data) if data.suffix == ".csv" else pd.read_excel(data, engine="calamine")
    return frame["OT"].to_numpy(np.float64)


def epochs_trained(out: str) -> int:
    return len(re.findall(r" - epoch \d+/\d+ ", out))


# --- speed -----------------------------------------------------------------------------------------------

def epoch_times(data: Path, epochs: int = 3, rounds: int = 2) -> dict:
    """Plain Keras and the product, alternating, each in a fresh process; epoch 1 (tracing) left out."""
    times = {how: {"wall": [], "cpu": []} for how in ("plain", "product")}
    for _ in range(rounds):
        for how in ("plain", "product"):
            done = measure([PYTHON, "-m", "bench.timing", how, data, "--epochs", epochs]).require()
            result = json.loads(done.out.strip().splitlines()[-1])
            for kind in ("wall", "cpu"):
                times[how][kind] += result[kind][1:]
    return times | {"windows": result["windows"]}


def step_times(data: Path) -> dict:
    """Per optimizer step at batch 32 (L=96, 32 units, H=24): the product's training steps, without and with
    XLA (epochs 2 and 3, whose steps are traced and compiled already), and the peer's LSTM (bench/peer.py)."""
    out = {}
    for name, flags in (("product", []), ("product_xla", ["--jit"])):
        done = measure([PYTHON, "-m", "bench.timing", "product", data, "--epochs", 3, "--batch", 32, *flags]).require()
        result = json.loads(done.out.strip().splitlines()[-1])
        out[name] = {"ms_per_step": statistics.median(result["train"][1:]) / result["steps"] * 1000,
                     "first_epoch_s": result["train"][0], "steps": result["steps"]}
    if fanout.PEER_PYTHON.exists():
        peer = measure([fanout.PEER_PYTHON, ROOT / "bench" / "peer.py", data, "--per-step"]).require()
        out["peer"] = json.loads(peer.out.strip().splitlines()[-1])
    return out


def speed(data: Path, env: dict) -> dict:
    times = epoch_times(data)
    seed, _ = train(data, env, ["tracking.experiment=bench", "registry.model_name=bench-seed"], preset="seed")
    return {"epochs": times, "steps": step_times(data),
            "seed": {"seconds": seed.wall, "peak_mb": seed.peak_mb, "phases": phases(seed)}}


# --- overhead --------------------------------------------------------------------------------------------

STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| (.*)$", re.M)
TRAINING = "training (incl. per-epoch MLflow metrics)"
GROUPS = {  # task name -> phase; tasks not listed keep their own name
    "read_workbook": "ingest, clean, validate, normalize", "clean_data": "ingest, clean, validate, normalize",
    "validate_data": "ingest, clean, validate, normalize", "normalize_series": "ingest, clean, validate, normalize",
    "train_model": TRAINING,
    # Between train_model and package_model: val and test forecasts, intervals and metrics (tasks/runs/fit.py).
    "package_model": "evaluation, forecast example, plots", "make_figures": "evaluation, forecast example, plots",
    "register_version": "MLflow: params, metrics, artifacts, model, registry",
    "publish_report": "MLflow: params, metrics, artifacts, model, registry",
    "gate_candidates": "promotion gate", "read_gate_data": "promotion gate", "score_gate": "promotion gate",
    "promote_model": "promotion gate",
}


def phases(done: Finished) -> dict[str, dict[str, float]]:
    """Where a `train` command's wall time went, from the timestamps of Prefect's log lines, and the
    command's largest sampled memory in each phase."""
    day = datetime.fromtimestamp(done.started).date()
    events = [(datetime.combine(day, datetime.strptime(t, "%H:%M:%S.%f").time()).timestamp(), text)
              for t, text in STAMP.findall(done.out)]
    spent: dict[str, dict[str, float]] = {}
    previous = done.started

    def add(name: str, until: float) -> None:
        nonlocal previous
        phase = spent.setdefault(name, {"s": 0.0, "peak_mb": 0.0})
        phase["s"] += max(0.0, until - previous)
        phase["peak_mb"] = max([phase["peak_mb"], *(mb for t, mb in done.rss if previous <= t < until)])
        previous = max(previous, until)

    flows = 0
    for stamp, text in events:
        if "Beginning flow run" in text:
            flows += 1
            add("start-up: imports, settings; Prefect's temporary server alongside" if flows == 1 else "promotion gate", stamp)
        elif text.startswith("Flow run") and "MLflow run" in text:
            add("MLflow: connect, open run", stamp)
        elif (task := re.match(r"Task run '(\w+)-\w+' - Finished", text)):
            add(GROUPS.get(task.group(1), task.group(1)), stamp)
        elif text.startswith("Flow run") and "Finished in state" in text:
            add("promotion gate", stamp)
    add("shut-down: Prefect server stop, exit", done.started + done.wall)
    return spent


STARTS = {  # what a `train` command starts with, each timed alone in a fresh process (as flows/cli/ sets it up)
    # The training flow and what it trains with: TensorFlow comes with the fit (tasks/model/train.py), lazily.
    "imports (flows.train)": "import flows.cli, time; t = time.perf_counter(); import flows.train, tasks.model.train; "
                             "print('seconds', time.perf_counter() - t)",
    "Prefect temporary server start": "import flows.cli, time; from services.tempserver import TemporaryServer as S; "
                                      "t = time.perf_counter(); s = S(); s.ready(); print('seconds', time.perf_counter() - t); s.stop()",
}


def overhead(data: Path, env: dict) -> dict:
    """A short run (the default configuration, one epoch), and the start-up's pieces alone."""
    done, _ = train(data, env, ["train.epochs=1", "tracking.experiment=bench", "registry.model_name=bench-short"])
    alone = {name: float(re.search(r"^seconds (\S+)$", measure([PYTHON, "-c", code], env).require().out, re.M).group(1))
             for name, code in STARTS.items()}
    # The README's `make run`: the defaults on the whole workbook. Its epochs after the first (traced by
    # then) are what one epoch of the short run's configuration costs in arithmetic, its val pass included.
    full, full_run = train(data, env, ["tracking.experiment=bench", "registry.model_name=bench-make-run"])
    epochs = metric_history(env, full_run, "epoch_seconds")
    return {"seconds": done.wall, "phases": phases(done), "alone": alone,
            "epoch_seconds": statistics.median(epochs[1:]) if len(epochs) > 1 else None,
            "make_run": {"seconds": full.wall, "epochs": epochs_trained(full.out), "peak_mb": full.peak_mb,
                         "rows": len(read_target(data))}}


# --- scale -----------------------------------------------------------------------------------------------

def scale(env: dict, folder: Path) -> dict:
    """A generated 1,000,000-row workbook: write, validate, train one epoch; and training memory
    against the series length (Parquet copies, so that the workbook reader's memory is left out)."""
    series = hourly_series(SCALE_ROWS)
    book = folder / f"hourly-{SCALE_ROWS}.xlsx"
    clock = time.perf_counter()
    write_workbook(series, book)
    out = {"rows": SCALE_ROWS, "write_seconds": time.perf_counter() - clock, "xlsx_mb": book.stat().st_size / 2**20}
    check = measure([CLI, "validate", book, "--target", "OT"], env).require()
    out["validate"] = {"seconds": check.wall, "peak_mb": check.peak_mb}
    one_epoch = ["train.epochs=1", "tracking.experiment=bench-scale", "registry.model_name=bench-scale"]
    done, _ = train(book, env, one_epoch)
    out["train_xlsx"] = {"seconds": done.wall, "peak_mb": done.peak_mb, "phases": phases(done)}
    out["train_parquet"] = {}
    for rows in (SCALE_ROWS // 4, SCALE_ROWS):
        path = folder / f"hourly-{rows}.parquet"
        series.iloc[:rows].to_parquet(path)
        done, _ = train(path, env, one_epoch)
        out["train_parquet"][rows] = {"seconds": done.wall, "peak_mb": done.peak_mb, "phases": phases(done)}
    return out


# --- report ----------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {ram:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def accuracy_table(acc: dict) -> str:
    hs = protocol.HORIZONS
    head = "| method | " + " | ".join(f"MSE H={h} | MAE H={h}" for h in hs) + " |\n"
    head += "|---|" + "---:|---:|" * len(hs) + "\n"

    def row(name: str, pairs: dict) -> str:
        return f"| {name} | " + " | ".join(f"{fmt(pairs.get(h, (None, None))[0])} | {fmt(pairs.get(h, (None, None))[1])}"
                                           for h in hs) + " |\n"

    rows = row("**lstm-pipeline, default configuration** (what the model is: below)", {h: acc[h]["model"] for h in hs if h in acc})
    rows += row("Repeat (last value; product's metric)", {h: acc[h]["repeat"] for h in hs if h in acc})
    rows += row("seasonal naive, 24 h (product's metric)", {h: acc[h]["seasonal_naive"] for h in hs if h in acc})
    rows += row("ridge on last-value-subtracted windows (this script; penalty "
                + ", ".join(f"{acc[h]['ridge']['penalty']:g} at H={h}" for h in hs if h in acc) + ", chosen on val)",
                {h: (acc[h]["ridge"]["mse"], acc[h]["ridge"]["mae"]) for h in hs if h in acc})
    for name, (values, _) in protocol.REFERENCES.items():
        rows += row(f"reference, not measured by this bench: {name}", values)
    rows += row("target (issue 6)", {h: (protocol.TARGETS[h], None) for h in hs})
    return head + rows


def what_the_model_is(acc: dict) -> str:
    """Per horizon: did any epoch of the LSTM beat the least-squares start on val (the run's tag)?"""
    def one(h: int, a: dict) -> str:
        if a["lstm_improved_on_start"] == "true":
            return (f"H={h}: the LSTM improved on its least-squares start (val loss {a['kept_val_loss']:.4f} from "
                    f"{a['start_val_mse']:.4f})")
        return (f"H={h}: no epoch beat the least-squares start (val loss {a['start_val_mse']:.4f}), so the model is "
                "that linear map of the window; the LSTM adds nothing")
    return "; ".join(one(h, a) for h, a in acc.items())


def measured(part: dict) -> str:
    """Which run measured the part, and how busy the machine was (1-minute load average before and after:
    above the CPU count, other processes competed for the cores and wall times grew)."""
    load = " (load average {:.1f} before, {:.1f} after)".format(*part["load"]) if "load" in part else ""
    return f"Measured {part['date']} on {part['machine']}{load}, by `{part['command']}`.\n\n"


def report(saved: dict) -> str:
    """The measured block: each part as its latest run measured it, with that run's date and command."""
    parts = []
    if "accuracy" in saved:
        acc = {int(h): v for h, v in saved["accuracy"]["result"].items()}
        met = ", ".join(f"H={h}: {acc[h]['model'][0]:.4f} vs target {protocol.TARGETS[h]} "
                        f"({'met' if acc[h]['model'][0] <= protocol.TARGETS[h] else 'NOT met'})" for h in acc)
        runs = ", ".join(f"H={h}: {acc[h]['train_seconds']:.0f} s, {acc[h]['epochs']} epochs" for h in acc)
        sources = "".join(f"- {name}: {source}\n" for name, (_, source) in protocol.REFERENCES.items())
        parts.append(f"### ETTh1 protocol (L=96, test windows of rows 11520-14400, normalized scale)\n\n"
                     f"{measured(saved['accuracy'])}{accuracy_table(acc)}\nWhat the model is: {what_the_model_is(acc)}.\n\n"
                     f"Targets: {met}. Whole `train` commands: {runs}.\n\nSources of the reference rows:\n{sources}")
    if "speed" in saved:
        e, seed = saved["speed"]["result"]["epochs"], saved["speed"]["result"]["seed"]
        plain, mine = statistics.median(e["plain"]["wall"]), statistics.median(e["product"]["wall"])
        parts.append(
            f"### Training speed\n\n{measured(saved['speed'])}Per-epoch time on the protocol's {e['windows']} train windows (H=24), median of "
            f"{len(e['plain']['wall'])} epochs each (epoch 1, tracing, left out), alternating processes:\n\n"
            "| fit | wall s/epoch | CPU s/epoch |\n|---|---:|---:|\n"
            f"| plain `model.fit` of the same network, Keras defaults (NumPy arrays, batch 32, TF's threads) | "
            f"{plain:.2f} | {statistics.median(e['plain']['cpu']):.2f} |\n"
            f"| `lstm-pipeline` training (`fit_model`: batch 256, tf.data windows, 1 intra-op thread, val pass included) | "
            f"{mine:.2f} | {statistics.median(e['product']['cpu']):.2f} |\n\n"
            f"Ratio {mine / plain:.2f} (target ≤ {LIMITS['epoch_ratio']}).\n\n"
            + step_table(saved["speed"]["result"].get("steps"))
            + f"`--preset seed` end to end: "
            f"{seed['seconds']:.0f} s (target < {LIMITS['seed_seconds']} s), peak {seed['peak_mb']:.0f} MB.\n\n"
            + phase_table(seed["phases"], "`--preset seed`") + "\n")
    if "overhead" in saved:
        o = saved["overhead"]["result"]
        alone = "; ".join(f"{name}: {sec:.1f} s" for name, sec in o["alone"].items())
        floor = o["alone"]["imports (flows.train)"]
        parts.append(f"### Where a short run's time goes\n\n{measured(saved['overhead'])}Default configuration, "
                     f"`--set train.epochs=1`, on the bundled workbook: {o['seconds']:.1f} s in all, "
                     f"{o['seconds'] / floor:.2f}x the imports alone ({floor:.1f} s, the floor of any `train`; "
                     f"target ≤ {LIMITS['short_run_ratio']}x: {_met(o['seconds'] / floor, LIMITS['short_run_ratio'])})"
                     + _arithmetic_floor(o, floor) + ".\n\n"
                     + phase_table(o["phases"], "short run")
                     + f"\nThe start-up's pieces, each alone in a fresh process: {alone}.\n\n"
                     f"The README's `make run` (the defaults on all {o['make_run']['rows']:,} rows of the bundled workbook): "
                     f"{o['make_run']['seconds']:.0f} s end to end, {o['make_run']['epochs']} epochs, "
                     f"peak {o['make_run']['peak_mb']:.0f} MB.\n")
    if "scale" in saved:
        s = saved["scale"]["result"]
        runs = {f"1 epoch ({s['rows']:,}-row .xlsx)": s["train_xlsx"]} | {
            f"1 epoch ({int(r):,}-row .parquet)": v for r, v in s["train_parquet"].items()}
        pq = sorted((int(r), v["phases"][TRAINING]["peak_mb"]) for r, v in s["train_parquet"].items())
        (r1, m1), (r2, m2) = pq[0], pq[-1]
        parts.append(
            f"### Scale\n\n{measured(saved['scale'])}A generated {s['rows']:,}-row hourly workbook (ETTh1's layout: date + 7 columns): written in "
            f"{s['write_seconds']:.0f} s ({s['xlsx_mb']:.0f} MiB, openpyxl write-only).\n\n"
            "| command | wall s | peak RSS MB | peak RSS MB while training | limit |\n|---|---:|---:|---:|---|\n"
            f"| `lstm-pipeline validate` (1M-row .xlsx) | {s['validate']['seconds']:.1f} | {s['validate']['peak_mb']:.0f} | | "
            f"< {LIMITS['validate_seconds']} s, < {LIMITS['validate_peak_gb'] * 1024:.0f} MB |\n"
            + "".join(f"| `lstm-pipeline train`, {name} | {v['seconds']:.0f} | {v['peak_mb']:.0f} | "
                      f"{v['phases'][TRAINING]['peak_mb']:.0f} | |\n" for name, v in runs.items())
            + f"\nWhile training, memory grows by {(m2 - m1) * 2**20 / (r2 - r1):.0f} bytes per row of the series "
            f"(Parquet runs, {r1:,} → {r2:,} rows); materialized train windows alone would add at least "
            f"{4 * (protocol.L + 24) * 0.7:.0f} bytes per row (a float32 window of L=96 and its H=24 targets for "
            f"each of the 70% train origins).\n\n"
            + phase_table(s["train_xlsx"]["phases"], "1M-row .xlsx train") + "\n")
    if "sweep" in saved:
        parts.append(fanout.sweep_report(saved["sweep"]["result"], measured(saved["sweep"])))
    if "cluster" in saved:
        parts.append(cluster.report(saved["cluster"]["result"], measured(saved["cluster"])))
    if "backtest" in saved:
        parts.append(fanout.backtest_report(saved["backtest"]["result"], measured(saved["backtest"])))
    if "series" in saved:
        parts.append(series.report(saved["series"]["result"], measured(saved["series"])))
    return "\n".join(parts)


def _met(value: float, limit: float) -> str:
    return "met" if value <= limit else "NOT met"


def _arithmetic_floor(o: dict, imports: float) -> str:
    """The short run against the floor that holds its one epoch's arithmetic too (not its tracing)."""
    if not o.get("epoch_seconds"):
        return ""
    floor = imports + o["epoch_seconds"]
    return (f"; {o['seconds'] / floor:.2f}x the imports plus one epoch's arithmetic ({floor:.1f} s: an epoch "
            f"of the same configuration after the first, {o['epoch_seconds']:.2f} s with its val pass, the median of "
            f"the `make run` below; target ≤ {LIMITS['short_run_ratio']}x: "
            f"{_met(o['seconds'] / floor, LIMITS['short_run_ratio'])})")


def step_table(steps: dict | None) -> str:
    """Per-step training time at batch 32 beside NeuralForecast's LSTM."""
    if not steps:
        return ""
    peer = steps.get("peer")
    rows = [f"| `lstm-pipeline` training step, default (`train.jit_compile=false`) | {steps['product']['ms_per_step']:.1f} | "
            f"{steps['product']['first_epoch_s']:.1f} |",
            f"| `lstm-pipeline` training step, `train.jit_compile=true` (XLA) | {steps['product_xla']['ms_per_step']:.1f} | "
            f"{steps['product_xla']['first_epoch_s']:.1f} |"]
    if peer:
        rows.append(f"| NeuralForecast {peer['neuralforecast']} `LSTM` (bench/peer.py --per-step; fixed cost of a "
                    f"267-step fit {peer['fixed_s']:.2f} s) | {peer['ms_per_step']:.1f} | |")
    verdict = ""
    if peer:
        ratios = {k: steps[k]["ms_per_step"] / peer["ms_per_step"] for k in ("product", "product_xla")}
        verdict = (f"Per step against the peer: {ratios['product']:.2f}x by default, {ratios['product_xla']:.2f}x with "
                   f"XLA (target ≤ 1: {'met' if ratios['product'] <= 1 else 'NOT met'} by default, "
                   f"{'met' if ratios['product_xla'] <= 1 else 'NOT met'} with XLA).\n\n")
    return ("Per optimizer step at batch 32 (L=96, 32 units, H=24, the protocol's train windows; the product's "
            "epochs 2 and 3, up to their validation pass, over the steps of an epoch; the peer's extra steps "
            "between a 267- and an 801-step fit):\n\n"
            "| step | ms/step | first epoch s (tracing, compiling) |\n|---|---:|---:|\n" + "\n".join(rows) + "\n\n"
            + verdict)


def phase_table(spent: dict[str, dict[str, float]], what: str) -> str:
    total = sum(p["s"] for p in spent.values())
    # A phase shorter than the sampling interval may hold no sample: no peak to show.
    peak = lambda mb: f"{mb:.0f}" if mb else "–"  # noqa: E731
    rows = "".join(f"| {name} | {p['s']:.1f} | {100 * p['s'] / total:.0f}% | {peak(p['peak_mb'])} |\n"
                   for name, p in spent.items())
    return f"| phase ({what}) | s | share | peak RSS MB (sampled) |\n|---|---:|---:|---:|\n{rows}"


def write_benchmarks(text: str) -> Path:
    """Replace the measured block of BENCHMARKS.md; the prose around it is kept."""
    path = ROOT / "BENCHMARKS.md"
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    page = path.read_text()
    head, _, rest = page.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "ETTh1.xlsx", help="ETTh1 (.xlsx or .csv)")
    parser.add_argument("--store", type=Path, help="keep the bench's MLflow store and workbooks here")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--etth2", type=Path, help="a copy of ETTh2.csv (ETDataset, CC BY-ND 4.0; not bundled): the "
                                                   "series part measures it beside ETTh1")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")

    folder = args.store or Path(tempfile.mkdtemp(prefix="lstm-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = store_env(folder.resolve())
    data = args.data.resolve()
    runners = {"accuracy": lambda: accuracy(data, env), "speed": lambda: speed(data, env),
               "overhead": lambda: overhead(data, env), "scale": lambda: scale(env, folder),
               "sweep": lambda: fanout.sweep(measure, CLI, data, env, folder),
               "cluster": lambda: cluster.run(measure, CLI, data, folder),
               "backtest": lambda: fanout.backtest(measure, CLI, data, env),
               "series": lambda: series.run(measure, CLI, {"ETTh1": data} | ({"ETTh2": args.etth2.resolve()}
                                                                           if args.etth2 else {}),
                                            env, folder, read_target)}
    # With --write, parts not run now keep their last measurement (each with its own date and command).
    saved = json.loads(SAVED.read_text()) if args.write and SAVED.exists() else {}
    # The store's tables are created once per store (~3-6 s); no measured command should pay for that.
    from tasks.tracking.store import connect

    connect(env["MLFLOW_TRACKING_URI"])
    for part in parts:
        print(f"[bench] {part} ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        result = runners[part]()
        saved[part] = {"date": date.today().isoformat(), "machine": machine(), "load": [load_before, os.getloadavg()[0]],
                       "command": ".venv/bin/python -m bench.run " + " ".join(sys.argv[1:]), "result": result}
        saved = json.loads(json.dumps(saved, default=str))
        (folder / "results.json").write_text(json.dumps(saved, indent=2))  # kept if a later part fails
    text = report(saved)
    print(text)
    print(f"[bench] results: {folder / 'results.json'}", file=sys.stderr)
    if args.write:
        SAVED.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"[bench] wrote {SAVED} and {write_benchmarks(text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
