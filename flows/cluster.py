"""The local Dask cluster of a sweep or backtest, started first thing: its workers import TensorFlow and
the pipeline (the flows/quiet_worker.py preload) while the command imports its own and Prefect's temporary
server starts, instead of after them."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from flows import console


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
                           preload=[] if console.verbose() else ["flows.quiet_worker"])
    try:
        cluster.scale(workers)  # returns at once; the nannies start the workers in the background
        yield cluster.scheduler_address
    finally:
        cluster.close()
