"""Bench part `cluster`: the small sweep of `sweep` (bench/fanout.py) on servers and workers that stay up.

A team runs sweeps against the stack's servers (`services/stack.py up`: Prefect and MLflow servers) and a
Dask cluster started once by hand, as docs/runs.md says (`dask scheduler`; `dask worker ADDRESS --nthreads 1
--preload services.quiet_worker`). Such workers have imported TensorFlow before a sweep starts and keep
each shape's traced model from one sweep to the next (tasks/model/pool.py). Measured side by side in one
run, on the same servers:

- the sweep on a local cluster of its own (`--workers 2`), with 1 and with 2 epochs a trial;
- on the long-lived cluster (`--dask-address`): its first sweep (TensorFlow imported, nothing traced), the
  same sweep again (the shapes traced), and again with 2 epochs a trial (a trial's fixed cost);
- the peer (NeuralForecast's AutoLSTM), on the same space and step budget.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from bench.fanout import (LIMITS, PEER_PYTHON, SMALL_BASE, SMALL_SPACE, SMALL_STEPS, SMALL_TRIALS, fixed_verdict,
                          peer_sweep, run_sweep)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))  # the real servers the tests start, started the same way here
from servers import DaskCluster, free_port  # noqa: E402

WORKERS = 2
SETTLE = 30  # s after `up` returned that the stack's footprint is taken: what it starts in the background has started


@contextlib.contextmanager
def team_servers(folder: Path):
    """The stack (services/stack.py `up`, on SQLite) in `folder`; yields it."""
    from services import stack

    servers = stack.Stack(home=folder / ".stack", prefect_port=free_port(), mlflow_port=free_port(),
                          mlruns=folder / "mlruns")
    stack.up(servers, ROOT / "prefect.yaml", project=ROOT)
    try:
        yield servers
    finally:
        stack.down(servers.home)


def footprint(servers) -> dict:
    """The stack's processes SETTLE s after `up` returned: how many, the memory each holds alone (USS) added
    up, and the CPU seconds they have taken."""
    import psutil

    time.sleep(SETTLE)
    found = []
    for pid in servers.pids.values():
        with contextlib.suppress(psutil.Error):
            found += [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    uss = cpu = 0.0
    for proc in found:
        with contextlib.suppress(psutil.Error):
            uss += proc.memory_full_info().uss
            times = proc.cpu_times()
            cpu += times.user + times.system
    return {"processes": len(found), "uss_mb": uss / 2**20, "cpu_s": cpu}


def run(measure, cli, data: Path, folder: Path) -> dict:
    folder = folder / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    fixed = [*SMALL_BASE, "train.epochs=2"]
    sweep = lambda env, name, base, options=(): run_sweep(measure, cli, data, env, SMALL_SPACE, folder,  # noqa: E731
                                                          name, base, WORKERS, SMALL_TRIALS, options)
    out = {}
    with team_servers(folder) as servers:
        out["stack"] = footprint(servers)
        env = os.environ | servers.env()
        out["own"] = sweep(env, "bench-cluster-own", SMALL_BASE)
        out["own_fixed"] = sweep(env, "bench-cluster-own-fixed", fixed)["fixed_median"]
        # Its preload imports the fit unit before a worker joins the scheduler: ready once the workers have joined.
        with DaskCluster(folder, WORKERS, env, preload="services.quiet_worker") as cluster:
            attached = ("--dask-address", cluster.address)
            out["first"] = sweep(env, "bench-cluster-first", SMALL_BASE, attached)
            out["again"] = sweep(env, "bench-cluster-again", SMALL_BASE, attached)
            out["again_fixed"] = sweep(env, "bench-cluster-again-fixed", fixed, attached)["fixed_median"]
            # Dask restarts a worker that stops answering the scheduler and runs its trial again (it happened once,
            # in a bench run on 2026-12-04; not in a scratch run of 4 sweeps after it): counted, its wait is in the times.
            out["worker_restarts"] = cluster.log_path.read_text().count("failed to heartbeat")
    if PEER_PYTHON.exists():
        out["peer"] = peer_sweep(measure, data)
    return out


def report(c: dict, measured: str) -> str:
    peer = c.get("peer")
    rows = [(f"`sweep --workers {WORKERS}`, a local cluster of its own", c["own"]),
            ("`sweep --dask-address`, the cluster's first sweep", c["first"]),
            ("`sweep --dask-address`, the same sweep again", c["again"])]
    lines = [
        "### Sweeps on servers and workers that stay up\n",
        measured.rstrip() + "\n",
        f"The sweep above (8 trials, one epoch each, {SMALL_STEPS} steps at batch 32) against the stack's "
        "Prefect and MLflow servers (`services/stack.py up`, SQLite), on a local cluster of its own and on a Dask "
        f"cluster of {WORKERS} workers started once (`dask worker ADDRESS --nthreads 1 --preload services.quiet_worker`), "
        "whose workers keep each shape's traced model between sweeps:\n",
        "| way | wall s | sum of trials' train_seconds | per-trial overhead, median (max) s |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {r['seconds']:.0f} | {r['train_seconds']:.0f} | {r['overhead_median']:.2f} ({r['overhead_max']:.2f}) |"
          for name, r in rows),
        (f"| NeuralForecast {peer['neuralforecast']} `AutoLSTM` (bench/peer.py) | {peer['wall']:.0f} | | |" if peer
         else "| NeuralForecast `AutoLSTM`: not measured (no .venv-peer; `make bench` builds it) | | | |"),
        "",
    ]
    if peer:
        lines.append("Against the peer (target ≤ " + str(LIMITS["two_vs_peer"]) + "): "
                     + "; ".join(f"{name.split(', ')[-1]} {r['seconds'] / peer['wall']:.2f}" for name, r in rows) + ".")
    lines.append(f"A trial's fixed cost (2 epochs a trial, as above): {fixed_verdict(c['own_fixed'])} on a cluster "
                 f"of its own, {fixed_verdict(c['again_fixed'])} on the long-lived one, its shapes traced.\n")
    if c.get("worker_restarts"):
        lines.append(f"Dask restarted a worker that had stopped answering {c['worker_restarts']} time(s) in these sweeps: "
                     "its trial's wait is in the sweep's wall time and in that trial's overhead.\n")
    foot = c["stack"]
    lines.append(f"The stack itself, {SETTLE} s after `up` returned: {foot['processes']} processes holding {foot['uss_mb']:.0f} MB "
                 f"of their own (USS), {foot['cpu_s']:.0f} s of CPU taken to start them.\n")
    return "\n".join(lines)
