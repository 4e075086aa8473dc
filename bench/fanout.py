"""Bench parts for many fits: sweeps and backtests, each way of running measured side by side in one run.

- `sweep`: 8 trials of one small space on ETTh1 five ways, side by side: the sweep on 1 worker, on 2
  workers, on 2 with XLA, a loop of `lstm-pipeline train` commands with the 1-worker sweep's trial values,
  and the peer (NeuralForecast's AutoLSTM, Optuna backend, bench/peer.py) on the same space and step budget;
  each trial's overhead (its child run's duration less its `train_seconds`) and, with 2 epochs a trial, its
  fixed cost (all but its epochs' arithmetic); then the protocol sweep (L in
  96..512, two model sizes), chosen on val.
- `backtest`: ETTh1, default configuration, H=24, 4 folds of 2,880 rows ending at row 14,400, on 1 and on
  2 workers.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench import protocol

# 8 trials proposed by Optuna; one epoch each at batch 32: 267 optimizer steps on the protocol's train windows.
SMALL_SPACE = {"window.input_length": {"choice": [48, 96]}, "model.units": {"choice": [16, 32]},
               "train.learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}
SMALL_TRIALS, SMALL_STEPS = 8, 267
SMALL_BASE = ["train.epochs=1", "train.batch_size=32", "train.patience=0", "window.horizon=24",
              *(f"split.{k}={v}" for k, v in protocol.SPLIT.items())]
ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PROTOCOL_SPACE = {"window.input_length": [96, 168, 336, 512], "model.units": [16, 32]}
FOLDS, FOLD_ROWS = 4, 2880
LIMITS = {"two_vs_one": 0.6, "two_vs_loop": 0.3, "two_vs_peer": 0.5, "trial_fixed_s": 0.5, "backtest_two_vs_one": 0.6}


def _space_file(space: dict, folder: Path) -> Path:
    import yaml

    path = Path(tempfile.mkstemp(suffix=".yaml", dir=folder)[1])
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def set_options(assignments: list[str]) -> list[str]:
    return [a for s in assignments for a in ("--set", s)]


def _children(env: dict, parent: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(parent)
    return client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)


def run_sweep(measure, cli, data: Path, env: dict, space: dict, folder: Path, name: str, base: list[str], workers: int,
              trials: int | None = None, options: tuple = ()) -> dict:
    done = measure([cli, "sweep", data, "--target", "OT", "--space", _space_file(space, folder), "--workers", workers,
                    "--name", name, *options,
                    *(["--trials", trials] if trials else []),
                    *set_options([*base, "tracking.experiment=bench-sweep"])], env).require()
    parent = re.search(r"run_id (\w+);", done.out).group(1)
    children = _children(env, parent)
    overhead = [_duration(r) - r.data.metrics["train_seconds"] for r in children]
    return {"seconds": done.wall, "peak_mb": done.peak_mb, "trials": len(children),
            "train_seconds": sum(r.data.metrics["train_seconds"] for r in children),
            "overhead_median": statistics.median(overhead), "overhead_max": max(overhead),
            "fixed_median": _fixed_cost(env, children),
            "children": [{"name": r.info.run_name, "values": {k: r.data.params[k] for k in space},
                          **{k: r.data.metrics.get(k) for k in ("val_mse", "test_mse", "train_seconds")}}
                         for r in children]}


def _duration(run) -> float:
    return (run.info.end_time - run.info.start_time) / 1000


def _fixed_cost(env: dict, children: list) -> float | None:
    """Median over trials of what a trial costs beyond its epochs' arithmetic: its run's duration less its
    epochs, each as long as its last (the steps and the val pass, traced and compiled by then). Needs 2 epochs."""
    from mlflow.tracking import MlflowClient

    client, fixed = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]), []
    for run in children:
        epochs = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"),
                                          key=lambda m: m.step)]
        if len(epochs) >= 2:
            fixed.append(_duration(run) - len(epochs) * epochs[-1])
    return statistics.median(fixed) if fixed else None


def sweep(measure, cli, data: Path, env: dict, folder: Path) -> dict:
    """The small space five ways, side by side, and once with 2 epochs a trial (its fixed cost); then the
    protocol sweep at H=24 and H=96."""
    out = {f"workers_{w}": run_sweep(measure, cli, data, env, SMALL_SPACE, folder, f"bench-small-{w}w", SMALL_BASE, w,
                                     SMALL_TRIALS) for w in (1, 2)}
    out["workers_2_xla"] = run_sweep(measure, cli, data, env, SMALL_SPACE, folder, "bench-small-2w-xla",
                                     [*SMALL_BASE, "train.jit_compile=true"], 2, SMALL_TRIALS)
    out["fixed"] = {how: run_sweep(measure, cli, data, env, SMALL_SPACE, folder, f"bench-fixed-{how}",
                                   [*SMALL_BASE, "train.epochs=2", *extra], 2, SMALL_TRIALS)["fixed_median"]
                    for how, extra in (("default", []), ("xla", ["train.jit_compile=true"]))}
    loop, clock = [], time.perf_counter()
    for trial in out["workers_1"]["children"]:
        loop.append(measure([cli, "train", data, "--target", "OT",
                             *set_options([*SMALL_BASE, *(f"{k}={v}" for k, v in trial["values"].items()),
                                     "tracking.experiment=bench-loop", "registry.model_name=bench-loop",
                                     "promotion.require_beat_repeat=false"])], env).require().wall)
    out["loop"] = {"seconds": time.perf_counter() - clock, "per_command": loop}
    if PEER_PYTHON.exists():
        out["peer"] = peer_sweep(measure, data)
    out["protocol"] = {}
    for horizon in protocol.HORIZONS:
        base = [f"window.horizon={horizon}", *(f"split.{k}={v}" for k, v in protocol.SPLIT.items())]
        result = run_sweep(measure, cli, data, env, PROTOCOL_SPACE, folder, f"bench-protocol-h{horizon}", base, 2)
        best = min(result["children"], key=lambda c: c["val_mse"] if c["val_mse"] is not None else float("inf"))
        # The trial with the default configuration's L and units
        default = next(c for c in result["children"]
                       if c["values"] == {"window.input_length": "96", "model.units": "32"})
        out["protocol"][horizon] = {"seconds": result["seconds"], "best": best, "default": default,
                                    "trials": result["children"]}
    return out


def peer_sweep(measure, data: Path) -> dict:
    """NeuralForecast's AutoLSTM on the small space and step budget (bench/peer.py), in .venv-peer."""
    peer = measure([PEER_PYTHON, ROOT / "bench" / "peer.py", data, "--trials", SMALL_TRIALS,
                    "--steps", SMALL_STEPS]).require()
    return json.loads(peer.out.strip().splitlines()[-1]) | {"wall": peer.wall, "peak_mb": peer.peak_mb}


def backtest(measure, cli, data: Path, env: dict) -> dict:
    """4 folds of 2,880 rows ending at row 14,400 (the protocol's test split is the last), 1 and 2 workers."""
    base = ["window.horizon=24", *(f"split.{k}={v}" for k, v in protocol.SPLIT.items()),
            "tracking.experiment=bench-backtest"]
    out = {}
    for workers in (1, 2):
        done = measure([cli, "backtest", data, "--target", "OT", "--folds", FOLDS, "--fold-size", FOLD_ROWS,
                        "--workers", workers, *set_options(base)], env).require()
        parent = re.search(r"^run_id: (\w+)$", done.out, re.M).group(1)
        folds = sorted(_children(env, parent), key=lambda r: int(r.data.params["fold.origin"]))
        out[f"workers_{workers}"] = {
            "seconds": done.wall, "peak_mb": done.peak_mb,
            "folds": [{"origin": int(r.data.params["fold.origin"]),
                       **{k: r.data.metrics[k] for k in ("test_mse", "repeat_test_mse", "seasonal_naive_test_mse")}}
                      for r in folds]}
    return out


def sweep_report(s: dict, measured: str) -> str:
    one, two, loop, peer, xla = s["workers_1"], s["workers_2"], s["loop"], s.get("peer"), s.get("workers_2_xla")
    r21, r2loop = two["seconds"] / one["seconds"], two["seconds"] / loop["seconds"]
    verdict = lambda ratio, limit: f"{ratio:.2f} (target ≤ {limit}: {'met' if ratio <= limit else 'NOT met'})"  # noqa: E731
    peer_row = (f"| NeuralForecast {peer['neuralforecast']} `AutoLSTM`, Optuna backend (bench/peer.py; its best "
                f"configuration refit included) | {peer['wall']:.0f} | {peer['trials']} | | | {peer['peak_mb']:.0f} |"
                if peer else "| NeuralForecast `AutoLSTM`: not measured (no .venv-peer; `make bench` builds it) | | | | | |")
    lines = [
        "### Sweeps: 8 trials, five ways\n",
        measured.rstrip() + "\n",
        f"The space {SMALL_SPACE} on ETTh1 (protocol split, H=24; each trial one epoch at batch 32, "
        f"{SMALL_STEPS} optimizer steps), 8 trials proposed by Optuna's seeded TPE: `lstm-pipeline sweep` on 1 and "
        "on 2 local Dask workers, and on 2 with XLA; a loop of `lstm-pipeline train` commands, one per trial of the 1-worker sweep; "
        f"and the peer on the same space, {SMALL_STEPS} steps of 32 windows per trial, over the same train and "
        "val rows:\n",
        "| way | wall s | trials | sum of trials' train_seconds | per-trial overhead, median (max) s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| `sweep`, {w} | {r['seconds']:.0f} | {r['trials']} | {r['train_seconds']:.0f} | "
          f"{r['overhead_median']:.2f} ({r['overhead_max']:.2f}) | {r['peak_mb']:.0f} |"
          for w, r in (("1 worker", one), ("2 workers", two), ("2 workers, `train.jit_compile=true`", xla)) if r),
        f"| loop of `train` commands | {loop['seconds']:.0f} | {len(loop['per_command'])} | | | |",
        peer_row,
        "",
        f"2 workers / 1 worker: {verdict(r21, LIMITS['two_vs_one'])}; 2 workers / loop: "
        f"{verdict(r2loop, LIMITS['two_vs_loop'])}"
        + (f"; 2 workers / peer: {verdict(two['seconds'] / peer['wall'], LIMITS['two_vs_peer'])}" if peer else "")
        + (f"; with XLA, 2 workers / peer: {verdict(xla['seconds'] / peer['wall'], LIMITS['two_vs_peer'])}"
           if peer and xla else "")
        + ". A trial's overhead is its child run's duration less its `train_seconds` (normalize, evaluate, plots, "
        "logging its run); `train_seconds` holds the tracing of a shape's first fit on a worker.\n",
        *([f"A trial's fixed cost, everything but its epochs' arithmetic: the same sweep on 2 workers with 2 epochs a "
           f"trial, each trial's run duration less twice its second epoch (`epoch_seconds`, traced and compiled by "
           f"then), median over the 8 trials: {fixed_verdict(s['fixed']['default'])} by default, {fixed_verdict(s['fixed']['xla'])} "
           f"with XLA (target ≤ {LIMITS['trial_fixed_s']} s).\n"] if s.get("fixed") else []),
        "### Sweeps on the ETTh1 protocol, chosen on val\n",
        f"`window.input_length` in {PROTOCOL_SPACE['window.input_length']} x `model.units` in "
        f"{PROTOCOL_SPACE['model.units']}, everything else the default configuration, 2 workers:\n",
        "| H | trials | wall s | chosen (lowest val_mse) | its val_mse | its test_mse | L96-u32 test_mse | target |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for h, p in s["protocol"].items():
        target = protocol.TARGETS[int(h)]
        lines.append(f"| {h} | {len(p['trials'])} | {p['seconds']:.0f} | {p['best']['name']} | {p['best']['val_mse']:.4f} | "
                     f"{p['best']['test_mse']:.4f} | {p['default']['test_mse']:.4f} | {target} "
                     f"({'met' if p['best']['test_mse'] <= target else 'NOT met'}) |")
    return "\n".join(lines) + "\n"


def fixed_verdict(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.2f} s ({'met' if seconds <= LIMITS['trial_fixed_s'] else 'NOT met'})"


def backtest_report(b: dict, measured: str) -> str:
    one, two = b["workers_1"], b["workers_2"]
    rows = ["| fold origin (row) | model MSE | Repeat MSE | seasonal naive MSE |", "|---:|---:|---:|---:|"]
    rows += [f"| {f['origin']:,} | {f['test_mse']:.4f} | {f['repeat_test_mse']:.4f} | {f['seasonal_naive_test_mse']:.4f} |"
             for f in two["folds"]]
    mean = {k: statistics.mean(f[k] for f in two["folds"]) for k in ("test_mse", "repeat_test_mse", "seasonal_naive_test_mse")}
    rows.append(f"| mean | {mean['test_mse']:.4f} | {mean['repeat_test_mse']:.4f} | {mean['seasonal_naive_test_mse']:.4f} |")
    ratio = two["seconds"] / one["seconds"]
    return ("### Backtest: ETTh1, default configuration, H=24, 4 folds of 2,880 rows ending at row 14,400\n\n"
            + measured + "Each fold normalizes with its own train rows, so each fold's MSEs are on its own scale.\n\n"
            + "\n".join(rows) + f"\n\nWall time: {one['seconds']:.0f} s on 1 worker, {two['seconds']:.0f} s on 2; "
            f"ratio {ratio:.2f} (target ≤ {LIMITS['backtest_two_vs_one']}: "
            f"{'met' if ratio <= LIMITS['backtest_two_vs_one'] else 'NOT met'}).\n")
