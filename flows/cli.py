"""`lstm-pipeline`: the command line. Bad input ends in one readable line per problem and exit code 2;
a tracking server that does not answer, in one line and exit code 1."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows import console, tempserver
from tasks.errors import InputError, NothingFinished, Problem

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
Target = Annotated[Optional[str], typer.Option("--target", help="Column to forecast (default: auto-detect)")]
HeaderRow = Annotated[Optional[int], typer.Option("--header-row", help="Excel row of the header (default: 1)")]
SeriesId = Annotated[Optional[str], typer.Option("--series", help="Long format (an id column such as store or "
                                                                  "sensor): the id of the series to use")]


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
        from tasks.tracking.store import unreachable  # imports MLflow: only on the failure path

        reason = unreachable(exc)
        if reason is None:
            raise
        typer.secho(f"error: {reason}; start it (or unset MLFLOW_TRACKING_URI to record runs in ./mlruns), "
                    "then run the command again", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


def _data_overrides(sheet, time_col, target, header_row, series=None) -> list[str]:
    given = {"data.sheet": sheet, "data.time_column": time_col, "data.target": target, "data.header_row": header_row,
             "data.series": series}
    # Quoted so YAML keeps names such as "2024" or "yes" as text.
    return [f"{k}={v}" if k == "data.header_row" else f"{k}={repr(str(v))}" for k, v in given.items() if v is not None]


@app.command()
def validate(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
             header_row: HeaderRow = None, series: SeriesId = None,
             config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
             set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """Ingest, clean (only what data.sort / data.fill_gaps ask) and validate; print a summary."""
    from tasks.clean import clean_table
    from tasks.ingest import read_table
    from tasks.settings import load_settings
    from tasks.validate import validate_table

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row, series)])
        raw = clean_table(read_table(data, settings.data), settings.data)
        _, summary = validate_table(raw, settings, str(data))
    typer.echo(f"valid: {summary}")


@app.command()
def train(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
          header_row: HeaderRow = None, series: SeriesId = None,
          config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
          set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = [],
          preset: Annotated[Optional[str], typer.Option(help="Start from a preset: 'seed' = the original script")] = None) -> None:
    """Train on DATA: tracked in MLflow, model registered; prints the run id and model version."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row, series)], preset)
        connect_prefect = tempserver.start()
        console.import_tensorflow()  # with MLflow below: ~8 s of imports, beside the server's start
        from flows.train import train_flow

        connect_prefect()
        result = train_flow(str(data), settings)
    typer.echo(f"run_id: {result.run_id}")
    typer.echo(f"model: {result.model_name} version {result.version}")
    typer.echo(f"test_mse: {result.metrics['test_mse']:.4f} (repeat {result.metrics['repeat_test_mse']:.4f}, "
               f"seasonal naive {result.metrics['seasonal_naive_test_mse']:.4f})")
    typer.echo(f"promotion: {result.promotion}")
    for line in _run_summary(result, settings):
        typer.echo(line)


Config = Annotated[Optional[Path], typer.Option(help="YAML config file: the settings every fit starts from")]
Sets = Annotated[list[str], typer.Option("--set", help="Override: section.key=value")]
Workers = Annotated[int, typer.Option(min=1, help="Dask worker processes of the local cluster (fits at once)")]
DaskAddress = Annotated[Optional[str], typer.Option(help="An existing Dask scheduler, e.g. tcp://HOST:8786 "
                                                         "(its workers need a tracking server: MLFLOW_TRACKING_URI)")]


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
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row, series)])
        with _fanout_flow("flows.sweep", "sweep_flow", workers, dask_address) as flow:
            result = flow(str(data), str(space), settings, trials, workers, name, register == "best", objective,
                          folds, fold_size)
    best = result.best
    test = f"backtest_mse {best['backtest_mse']:.4f}" if "backtest_mse" in best else f"test_mse {best['test_mse']:.4f}"
    typer.echo(f"sweep {result.name}: run_id {result.run_id}; {len(result.table)} trials; best {best['name']} "
               f"val_mse {best['val_mse']:.4f} ({test}, run {best['run_id']})")
    if result.version:
        typer.echo(f"model: {settings.registry.model_name} version {result.version}\npromotion: {result.promotion}")
    typer.echo(_runs_line(result.run_id))


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
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row, series)])
        with _fanout_flow("flows.backtest", "backtest_flow", workers, dask_address) as flow:
            result = flow(str(data), settings, folds, fold_size, refit, workers)
    s = result.scores
    typer.echo(f"run_id: {result.run_id}\nbacktest_mse: {s['backtest_mse']:.4f} ± {s['backtest_mse_std']:.4f} over "
               f"{s['folds_finished']:.0f} folds (repeat {s['repeat_backtest_mse']:.4f}, "
               f"seasonal naive {s['seasonal_naive_backtest_mse']:.4f})")
    typer.echo(result.table[["fold", "origin", "test_mse", "repeat_test_mse", "status"]].to_string(index=False))
    typer.echo(_runs_line(result.run_id))


@contextmanager
def _fanout_flow(module: str, name: str, workers: int, dask_address: str | None):
    """The flow on its Dask task runner: the cluster at `dask_address`, or a local one of `workers` started
    first, so that its workers' imports run beside the command's and beside the start of Prefect's
    temporary server (when no server is configured), whose address they inherit."""
    import importlib

    from flows import cluster

    connect_prefect = tempserver.start()
    with contextlib.ExitStack() as stack:
        address = dask_address or stack.enter_context(cluster.local_cluster(workers))
        console.import_tensorflow()
        from flows.fanout import check_store_shared, task_runner

        check_store_shared(dask_address)
        flow = getattr(importlib.import_module(module), name)
        connect_prefect()
        yield flow.with_options(task_runner=task_runner(address))


def _run_summary(result, settings) -> list[str]:
    """What the model is (did the weights kept beat those training started from? the run's tag
    `lstm_improved_on_start` says the same, from the same two metrics), and where the MLflow UI lists the run."""
    m = result.metrics
    if m["kept_val_loss"] < m["start_val_mse"]:
        what = (f"improved on the weights training started from (val_loss {m['kept_val_loss']:.4f}, "
                f"start {m['start_val_mse']:.4f})")
    elif settings.train.patience:
        what = f"no epoch beat the weights training started from (val_loss {m['start_val_mse']:.4f})"
        if settings.model.linear_skip and settings.window.mode == "direct":
            what += ": the model kept is the least-squares linear map of the window it started from"
    else:  # without early stopping the last epoch is kept, better or not
        what = (f"the last epoch's weights (kept: train.patience is 0) did not beat those training started from "
                f"(val_loss {m['kept_val_loss']:.4f}, start {m['start_val_mse']:.4f})")
    return [f"lstm: {what}", _runs_line(result.run_id)]


def _runs_line(run_id: str) -> str:
    """Where the MLflow UI lists the run (a sweep's or backtest's with its child runs under it)."""
    from mlflow.tracking import MlflowClient

    from tasks.tracking.store import runs_page

    return f"runs: {runs_page(MlflowClient().get_run(run_id).info.experiment_id)}"


@app.command()
def forecast(data: Data,
             model: Annotated[str, typer.Option(help="Model URI: models:/NAME@ALIAS or models:/NAME/VERSION")]
             = "models:/lstm-forecaster@champion",
             out: Annotated[Optional[Path], typer.Option(help="Forecast table, .csv or .xlsx (default: DATA's name + "
                                                             "-forecast.csv, here); the plot goes beside it (.png)")] = None,
             sheet: Sheet = None, header_row: HeaderRow = None, series: SeriesId = None,
             config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
             set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """Forecast the H steps after the end of DATA with a registered model, with prediction intervals."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, None, None, header_row, series)])
        connect_prefect = tempserver.start()
        console.import_tensorflow()
        from flows.forecast import forecast_flow

        connect_prefect()
        result = forecast_flow(str(data), model, str(out) if out else None, settings)
    typer.echo(f"model: {result.model}\nforecast: {result.table}  plot: {result.plot}\nrun_id: {result.run_id}")
    typer.echo(result.forecast.to_string(index=False))


@app.command()
def promote(data: Annotated[Optional[Path], typer.Argument(help="Data for the gate: its newest rows are scored")] = None,
            version: Annotated[Optional[str], typer.Option(help="Version to promote (default: the 'challenger')")] = None,
            force: Annotated[bool, typer.Option("--force", help="Make --version the champion without the gate")] = False,
            rollback: Annotated[bool, typer.Option("--rollback", help="Give 'champion' back to the version it replaced")]
            = False,
            reason: Annotated[str, typer.Option(help="Why, recorded on the model version")] = "from the command line",
            sheet: Sheet = None, header_row: HeaderRow = None, series: SeriesId = None,
            config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
            set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """The champion/challenger gate on DATA; or --version N --force; or --rollback."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, None, None, header_row, series)])
        name = settings.registry.model_name
        console.import_tensorflow()
        from tasks import promote as gate
        from tasks.tracking import store

        store.connect()
        if rollback and (force or version):
            raise InputError([Problem("--rollback takes no --version or --force", "run one or the other")])
        if rollback:
            before, after = gate.rollback_champion(name, reason)
            typer.echo(f"{name}: champion rolled back from version {before} to version {after}")
        elif force:
            if version is None:
                raise InputError([Problem("--force needs --version N", "name the version to make champion")])
            before = gate.force_champion(name, version, reason)
            typer.echo(f"{name}: champion is version {version} (was {before or 'none'})")
        else:
            if data is None:
                raise InputError([Problem("the gate needs DATA to score on", "lstm-pipeline promote DATA [--version N]")])
            connect_prefect = tempserver.start()
            from flows.promote import promote_flow

            connect_prefect()
            typer.echo(f"{name} {promote_flow(name, str(data), settings, version)}")


@app.command()
def serve(model: Annotated[str, typer.Option(help="Model URI: models:/NAME@ALIAS or models:/NAME/VERSION")]
          = "models:/lstm-forecaster@champion",
          port: Annotated[int, typer.Option(help="Port of the REST service")] = 5001,
          host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface)")] = "127.0.0.1") -> None:
    """Serve a registered model as a REST service (MLflow's scoring server: POST /invocations) from this
    environment, whether or not its venv is activated."""
    import subprocess

    with user_errors():
        from tasks.tracking import registry, store

        store.connect()
        found = registry.resolve_model_uri(model)  # an alias is resolved now: the version served is named
        exact = f"models:/{found.name}/{found.version}" if found else model
    typer.echo(f"serving {model} ({exact}) on http://{host}:{port}/invocations; Ctrl-C stops it")
    # MLflow starts `uvicorn` by name: this environment's scripts folder goes first on PATH. The child
    # resolves the model in the same store as this command.
    scripts = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": store.tracking_uri()}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", exact, "--env-manager", "local",
               "--port", str(port), "--host", host]
    try:
        raise typer.Exit(subprocess.call(command, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


stack_app = typer.Typer(help="The local or team stack: Prefect and MLflow servers, worker, deployments, reaper.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
StackHome = Annotated[Path, typer.Option("--home", help="Where state, logs, secrets and the databases live")]


@stack_app.command("up")
def stack_up(prefect_port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
             mlflow_port: Annotated[int, typer.Option(help="MLflow server port")] = 5000,
             home: StackHome = Path(".stack"),
             prefect_file: Annotated[Path, typer.Option(help="Deployments to apply")] = Path("prefect.yaml"),
             db: Annotated[Optional[str], typer.Option(help="sqlite (one user) or postgresql (a team); "
                                                            "default: what this stack used last, else sqlite")] = None,
             db_url: Annotated[Optional[str], typer.Option(help="An existing PostgreSQL server instead of the stack's "
                                                                "own: postgresql://USER:PASSWORD@HOST:PORT")] = None,
             db_port: Annotated[int, typer.Option(help="Port of the stack's own PostgreSQL (127.0.0.1)")] = 5433,
             host: Annotated[str, typer.Option(help="Interface the servers listen on; 0.0.0.0 for other "
                                                    "machines (needs --auth)")] = "127.0.0.1",
             auth: Annotated[bool, typer.Option("--auth", help="MLflow basic auth and Prefect's auth string, "
                                                               "secrets generated into --home")] = False,
             dead_after: Annotated[int, typer.Option(help="Seconds without a heartbeat before a flow run is "
                                                          "marked Crashed")] = 300) -> None:
    """Start the servers, the work pool, a worker and the reaper, and deploy prefect.yaml."""
    from flows import stack

    with user_errors():
        saved = stack.Stack.load(home)
        db = db or ("postgresql" if db_url else saved.db if saved else "sqlite")
        started = stack.up(stack.Stack(home, prefect_port, mlflow_port, host=host, auth=auth, db=db, db_port=db_port,
                                       dead_after=dead_after), prefect_file, db_url=db_url)
    _print_stack(started)


@stack_app.command("status")
def stack_status(home: StackHome = Path(".stack")) -> None:
    """What runs, with its process id, where the UIs are and how other shells and machines connect."""
    from flows import stack

    processes = stack.status(home)
    if not processes:
        typer.echo("the stack is down (start it with `lstm-pipeline stack up`)")
        raise typer.Exit(1)
    for name, pid, alive in processes:
        typer.echo(f"{name:15} pid {pid:<8} {'running' if alive else 'STOPPED (see ' + str(home / (name + '.log')) + ')'}")
    _print_stack(stack.Stack.load(home))


@stack_app.command("down")
def stack_down(home: StackHome = Path(".stack")) -> None:
    """Stop exactly what `stack up` started (PostgreSQL too); runs, versions and aliases stay."""
    from flows import stack

    stopped = stack.down(home)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the stack was not running")


def _print_stack(s) -> None:
    from flows.credentials import CLIENT_ENV

    typer.echo(f"Prefect UI:  http://{s.public_host}:{s.prefect_port}\nMLflow UI:   http://{s.public_host}:{s.mlflow_port}\n"
               f"database:    {s.db}{' (authentication on)' if s.auth else ''}\n"
               f"commands run in this folder use these servers (PREFECT_API_URL={s.prefect_api}, "
               f"MLFLOW_TRACKING_URI={s.mlflow_uri})")
    typer.echo(f"elsewhere (other shells, workers, Dask workers, teammates' machines): "
               f". {(s.home / CLIENT_ENV).resolve()}"
               + ("   (it holds the credentials: copy it only over a safe channel)" if s.auth else ""))


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' notices and warnings too")]
           = False) -> None:
    """Quiet the libraries' notices (flows/console.py) unless --verbose. While the stack is up, flows
    started here use its servers (unless the variables are set already)."""
    from flows.stack import active_env

    console.setup(verbose)
    for key, value in active_env().items():
        os.environ.setdefault(key, value)


def main() -> None:
    try:
        sys.exit(app())
    finally:
        # The exit frees what is alive now; frozen, it is spared the interpreter's last garbage collection,
        # which takes 1-3 s once TensorFlow is loaded. (atexit handlers still run: servers stop, logs flush.)
        gc.freeze()


if __name__ == "__main__":
    main()
