"""A Dask worker preload that quiets a worker's fits as `lstm-pipeline` quiets the command (flows/console.py)
and imports TensorFlow as the worker starts, before its first fit. The local cluster of a sweep or
backtest loads it unless `--verbose`; workers started by hand can too: `dask worker ADDRESS --preload flows.quiet_worker`."""

from __future__ import annotations

from flows import console


def dask_setup(worker) -> None:
    console.setup(verbose=False)
    console.explained_without_traceback()
    console.import_tensorflow()
