"""`sweep` and `backtest`: many fits side by side on a Dask cluster, one MLflow child run each."""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.app import (Config, DaskAddress, Data, HeaderRow, SeriesId, Sets, Sheet, Target, TimeCol, Workers, app,
                           data_overrides, runs_line, user_errors)
from services import console, tempserver
from tasks.errors import InputError, Problem


@app.command()
def sweep(data: Data,
          space: Annotated[Path, typer.Option(help="Search space, YAML (see sweeps/example.yaml)")],
          trials: Annotated[Optional[int], typer.Option(min=1, help="Trials in all (default: the whole grid, or 20)")]
          = None,
          workers: Workers = 2, dask_address: DaskAddress = None,
          register: Annotated[Optional[str], typer.Option(help="'best': register the best trial's model and gate it")]
          = None,
          name: Annotated[Optional[str], typer.Option(help="Sweep name; the same name again continues that sweep")]
          = None,
          objective: Annotated[str, typer.Option(help="'val': the val split's MSE; 'backtest': the mean val MSE "
                                                      "over --folds backtest folds")] = "val",
          folds: Annotated[int, typer.Option(min=1, help="Folds per trial with --objective backtest")] = 3,
          fold_size: Annotated[Optional[int], typer.Option(min=1, help="Rows per fold (default: the test split's)")]
          = None,
          sheet: Sheet = None, time_col: TimeCol = None, target: Target = None, header_row: HeaderRow = None,
          series: SeriesId = None, config: Config = None, set_: Sets = []) -> None:
    """Many trainings at once on a Dask cluster: one MLflow child run per trial, chosen on val MSE."""
    from tasks.settings import load_settings

    with user_errors():
        if register not in (None, "best"):
            raise InputError([Problem(f"--register {register}: only 'best' is known", "--register best")])
        if objective not in ("val", "backtest"):
            raise InputError([Problem(f"--objective {objective}: use 'val' or 'backtest'", "--objective val")])
        settings = load_settings(config, [*set_, *data_overrides(sheet, time_col, target, header_row, series)])
        # The gate of --register best forecasts here; otherwise TensorFlow is only the workers'.
        with _fanout_flow("flows.sweep", "sweep_flow", workers, dask_address, tensorflow=register == "best") as flow:
            result = flow(str(data), str(space), settings, trials, workers, name, register == "best", objective,
                          folds, fold_size)
    best = result.best
    test = f"backtest_mse {best['backtest_mse']:.4f}" if "backtest_mse" in best else f"test_mse {best['test_mse']:.4f}"
    typer.echo(f"sweep {result.name}: run_id {result.run_id}; {len(result.table)} trials; best {best['name']} "
               f"val_mse {best['val_mse']:.4f} ({test}, run {best['run_id']})")
    if result.version:
        typer.echo(f"model: {settings.registry.model_name} version {result.version}\npromotion: {result.promotion}")
    typer.echo(runs_line(result.run_id))


@app.command()
def backtest(data: Data,
             folds: Annotated[int, typer.Option(min=1, help="Folds, each a model scored on its own rows")] = 5,
             fold_size: Annotated[Optional[int], typer.Option(min=1, help="Rows per fold (default: the test split's)")]
             = None,
             refit: Annotated[str, typer.Option(help="'every': a model per fold; 'once': one model for all folds")]
             = "every",
             workers: Workers = 2, dask_address: DaskAddress = None,
             sheet: Sheet = None, time_col: TimeCol = None, target: Target = None, header_row: HeaderRow = None,
             series: SeriesId = None, config: Config = None, set_: Sets = []) -> None:
    """Rolling-origin evaluation of one configuration: folds fitted side by side, one MLflow child run each."""
    from tasks.settings import load_settings

    with user_errors():
        if refit not in ("every", "once"):
            raise InputError([Problem(f"--refit {refit}: use 'every' or 'once'", "--refit every")])
        settings = load_settings(config, [*set_, *data_overrides(sheet, time_col, target, header_row, series)])
        with _fanout_flow("flows.backtest", "backtest_flow", workers, dask_address) as flow:
            result = flow(str(data), settings, folds, fold_size, refit, workers)
    s = result.scores
    typer.echo(f"run_id: {result.run_id}\nbacktest_mse: {s['backtest_mse']:.4f} ± {s['backtest_mse_std']:.4f} over "
               f"{s['folds_finished']:.0f} folds (repeat {s['repeat_backtest_mse']:.4f}, "
               f"seasonal naive {s['seasonal_naive_backtest_mse']:.4f})")
    typer.echo(result.table[["fold", "origin", "test_mse", "repeat_test_mse", "status"]].to_string(index=False))
    typer.echo(runs_line(result.run_id))


@contextmanager
def _fanout_flow(module: str, name: str, workers: int, dask_address: str | None, tensorflow: bool = False):
    """The flow on its Dask task runner: the cluster at `dask_address`, or a local one of `workers` started
    first, so that its workers' imports run beside the command's and beside the start of Prefect's
    temporary server (when no server is configured), whose address they inherit. The command imports
    TensorFlow only if it forecasts itself (`tensorflow`): the fits run on the workers, and on two cores a
    third import of it would slow theirs down."""
    import importlib

    from services import cluster

    connect_prefect = tempserver.start()
    with contextlib.ExitStack() as stack:
        address = dask_address or stack.enter_context(cluster.local_cluster(workers))
        if tensorflow:
            console.import_tensorflow()
        from flows.fanout import check_store_shared, task_runner

        check_store_shared(dask_address)
        flow = getattr(importlib.import_module(module), name)
        connect_prefect()
        yield flow.with_options(task_runner=task_runner(address))
