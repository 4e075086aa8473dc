"""The command line's shared parts: the Typer app, its options, and how bad input and unreachable servers end
a command (one readable line per problem, exit code 2; a tracking server that does not answer, exit code 1)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from services import console, tempserver
from tasks.errors import InputError, NothingFinished

# Quiet TensorFlow's C++ start-up chatter, and keep Prefect's temporary server from trying to send
# telemetry (it fails loudly on machines without internet). Both must be set before the imports.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stacked-LSTM forecasting: validate workbooks, train, promote and forecast.")

Data = Annotated[Path, typer.Argument(help="Workbook (.xlsx, .xlsm, .xls) or .csv / .parquet file")]
Sheet = Annotated[Optional[str], typer.Option("--sheet", help="Sheet name (default: the first sheet)")]
TimeCol = Annotated[Optional[str], typer.Option("--time-col", help="Time column (default: auto-detect); "
                                                                   "'none': row order is time")]
Target = Annotated[Optional[str], typer.Option("--target", help="Column to forecast (default: auto-detect); several "
                                                               "series: A,B or 'all' (wide format)")]
HeaderRow = Annotated[Optional[int], typer.Option("--header-row", help="Excel row of the header (default: 1)")]
SeriesId = Annotated[Optional[str], typer.Option("--series", help="Long format (an id column such as store or "
                                                                  "sensor): the id of the series to use; several: "
                                                                  "A,B or 'all'")]


@contextmanager
def user_errors():
    """InputError -> its problems on stderr and exit code 2. A tracking server that does not answer ->
    one line and exit code 1: not bad input, and worth trying again once the server is up. Neither
    shows a traceback, here or in Prefect's log of the failed task and flow."""
    console.explained_without_traceback()
    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.secho("stopped (Ctrl-C); runs that had not finished are marked KILLED", err=True, fg=typer.colors.RED)
        raise typer.Exit(130) from None
    except (NothingFinished, tempserver.ServerDidNotStart) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except Exception as exc:
        from tasks.tracking.store import (
            unreachable,  # imports MLflow: only on the failure path
        )

        reason = unreachable(exc)
        if reason is None:
            raise
        typer.secho(f"error: {reason}; start it (or unset MLFLOW_TRACKING_URI to record runs in ./mlruns), "
                    "then run the command again", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


def data_overrides(sheet, time_col, target, header_row, series=None) -> list[str]:
    given = {"data.sheet": sheet, "data.time_column": time_col, "data.target": target, "data.header_row": header_row,
             "data.series": series}
    # Quoted so YAML keeps names such as "2024" or "yes" as text.
    return [f"{k}={v}" if k == "data.header_row" else f"{k}={repr(str(v))}" for k, v in given.items() if v is not None]


Config = Annotated[Optional[Path], typer.Option(help="YAML config file (settings; --set overrides them)")]
Sets = Annotated[list[str], typer.Option("--set", help="Override: section.key=value")]
Workers = Annotated[int, typer.Option(min=1, help="Dask worker processes of the local cluster (fits at once)")]
DaskAddress = Annotated[Optional[str], typer.Option(help="An existing Dask scheduler, e.g. tcp://HOST:8786 "
                                                         "(its workers need a tracking server: MLFLOW_TRACKING_URI)")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' notices and warnings too")]
           = False) -> None:
    """Quiet the libraries' notices (services/console.py) unless --verbose. While the stack is up, flows
    started here use its servers (unless the variables are set already)."""
    from services.stack import active_env

    console.setup(verbose)
    for key, value in active_env().items():
        os.environ.setdefault(key, value)


def runs_line(run_id: str) -> str:
    """Where the MLflow UI lists the run (a sweep's or backtest's with its child runs under it)."""
    from mlflow.tracking import MlflowClient

    from tasks.tracking.store import runs_page

    return f"runs: {runs_page(MlflowClient().get_run(run_id).info.experiment_id)}"
