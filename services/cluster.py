"""The local Dask cluster of a sweep or backtest, started first thing: its workers import TensorFlow and
the pipeline (the services/quiet_worker.py preload) while the command imports its own and Prefect's temporary
server starts, instead of after them."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from services import console

SPAWN_TIMEOUT = 30.0  # seconds for the nannies to start the worker processes (not for the workers to be ready)


@contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """`workers` processes of one thread each (TensorFlow's own threads are set per fit, train.threads),
    which keep TensorFlow and their imports loaded from one fit to the next; yields the scheduler's
    address at once, while the workers are still starting, and closes the cluster at the end."""
    from distributed import LocalCluster

    # A worker that takes longer than the nanny's timeout to exit is stopped as it should be, with a
    # warning for each: nothing for a user to act on.
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0",
                           preload=[] if console.verbose() else ["services.quiet_worker"])
    try:
        cluster.scale(workers)  # returns at once; the nannies start the workers in the background
        # A worker process takes this process's stderr as it starts. Wait until they all exist: the
        # command then points its stderr elsewhere for a moment (the filter around TensorFlow's import,
        # services/console.py), and a worker started then would write into that for the rest of its life.
        deadline = time.monotonic() + SPAWN_TIMEOUT
        while not _spawned(cluster, workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _spawned(cluster, workers: int) -> bool:
    nannies = list(cluster.workers.values())
    return len(nannies) == workers and all(nanny.pid for nanny in nannies)
