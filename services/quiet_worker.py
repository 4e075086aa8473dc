"""A Dask worker preload that quiets a worker's fits as `lstm-pipeline` quiets the command (services/console.py)
and imports TensorFlow and the fit unit as the worker starts, before its first fit. The local cluster of a sweep or
backtest loads it unless `--verbose`; workers started by hand can too: `dask worker ADDRESS --preload services.quiet_worker`."""

from __future__ import annotations

import gc

from services import console


def dask_setup(worker) -> None:
    console.setup(verbose=False)
    console.explained_without_traceback()
    console.import_tensorflow()
    import tasks.model.train  # noqa: F401 - Keras; and the fit unit with MLflow and Prefect: the first fit starts at once
    import tasks.runs.fit  # noqa: F401


def dask_teardown(worker) -> None:
    # As the command does at its exit (flows/cli/__init__.py main): the process's last garbage collection, with
    # TensorFlow loaded, takes seconds, and the cluster's close waits for it.
    gc.freeze()
