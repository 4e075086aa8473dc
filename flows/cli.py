"""`lstm-pipeline`: the command line. Bad input ends in one readable line per problem and exit code 2;
a tracking server that does not answer, in one line and exit code 1."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from tasks.errors import InputError

# Quiet TensorFlow's C++ start-up chatter, and keep Prefect's temporary server from trying to send
# telemetry (it fails loudly on machines without internet). Both must be set before the imports.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stacked-LSTM forecasting: validate workbooks, train, promote and forecast.")

Data = Annotated[Path, typer.Argument(help="Workbook (.xlsx, .xlsm, .xls) or .csv / .parquet file")]
Sheet = Annotated[Optional[str], typer.Option("--sheet", help="Sheet name (default: the first sheet)")]
TimeCol = Annotated[Optional[str], typer.Option("--time-col", help="Time column (default: auto-detect)")]
Target = Annotated[Optional[str], typer.Option("--target", help="Column to forecast (default: auto-detect)")]
HeaderRow = Annotated[Optional[int], typer.Option("--header-row", help="Excel row of the header (default: 1)")]


@contextmanager
def user_errors():
    """InputError -> its problems on stderr and exit code 2. A tracking server that does not answer ->
    one line and exit code 1: not bad input, and worth trying again once the server is up. Neither
    shows a traceback, here or in Prefect's log of the failed task and flow."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_NoTraceback())
    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    except Exception as exc:
        reason = _unreachable(exc)
        if reason is None:
            raise
        typer.secho(f"error: {reason}; start it (or unset MLFLOW_TRACKING_URI to record runs in ./mlruns), "
                    "then run the command again", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


def _unreachable(exc: BaseException) -> str | None:
    from tasks.tracking.store import unreachable  # imports MLflow: only on the failure path

    return unreachable(exc)


class _NoTraceback(logging.Filter):
    """Keeps Prefect's one-line log of a failure that `user_errors` explains, without its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (isinstance(error, InputError) or _unreachable(error)):
            record.exc_info = record.exc_text = None
        return True


def _data_overrides(sheet, time_col, target, header_row) -> list[str]:
    given = {"data.sheet": sheet, "data.time_column": time_col, "data.target": target, "data.header_row": header_row}
    # Quoted so YAML keeps names such as "2024" or "yes" as text.
    return [f"{k}={v}" if k == "data.header_row" else f"{k}={repr(str(v))}" for k, v in given.items() if v is not None]


@app.command()
def validate(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
             header_row: HeaderRow = None,
             config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
             set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """Ingest, clean (only what data.sort / data.fill_gaps ask) and validate; print a summary."""
    from tasks.clean import clean_table
    from tasks.ingest import read_table
    from tasks.settings import load_settings
    from tasks.validate import validate_table

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row)])
        raw = clean_table(read_table(data, settings.data), settings.data)
        _, summary = validate_table(raw, settings, str(data))
    typer.echo(f"valid: {summary}")


@app.command()
def train(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
          header_row: HeaderRow = None,
          config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
          set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = [],
          preset: Annotated[Optional[str], typer.Option(help="Start from a preset: 'seed' = the original script")] = None) -> None:
    """Train on DATA: tracked in MLflow, model registered; prints the run id and model version."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row)], preset)
        server = _start_prefect_server()
        try:
            from flows.train import train_flow  # TensorFlow, MLflow: ~10 s of imports, beside the server's start
        finally:
            server.join()
        result = train_flow(str(data), settings)
    typer.echo(f"run_id: {result.run_id}")
    typer.echo(f"model: {result.model_name} version {result.version}")
    typer.echo(f"test_mse: {result.metrics['test_mse']:.4f} (repeat {result.metrics['repeat_test_mse']:.4f}, "
               f"seasonal naive {result.metrics['seasonal_naive_test_mse']:.4f})")
    typer.echo(f"promotion: {result.promotion}")


def _start_prefect_server() -> threading.Thread:
    """With no PREFECT_API_URL, a flow's first call starts Prefect's temporary server and waits for it
    (5-10 s). Started here, in the background, the wait overlaps the imports; `join` before the flow."""
    from prefect.settings import PREFECT_API_URL

    thread = threading.Thread(target=lambda: None)
    if not PREFECT_API_URL.value():
        # Imported here, not in the thread: an import holds the GIL, and would only delay the server's
        # process, which then starts on the other core while this one imports TensorFlow.
        from prefect.server.api.server import SubprocessASGIServer

        # The instance the flow's client will find, already up.
        thread = threading.Thread(target=SubprocessASGIServer().start, daemon=True)
    thread.start()
    return thread


@app.command()
def forecast(data: Data,
             model: Annotated[str, typer.Option(help="Model URI: models:/NAME@ALIAS or models:/NAME/VERSION")]
             = "models:/lstm-forecaster@champion",
             out: Annotated[Optional[Path], typer.Option(help="Forecast table, .csv or .xlsx (default: DATA's name + "
                                                             "-forecast.csv, here); the plot goes beside it (.png)")] = None,
             sheet: Sheet = None, header_row: HeaderRow = None,
             config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
             set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """Forecast the H steps after the end of DATA with a registered model, with prediction intervals."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, None, None, header_row)])
        from flows.forecast import forecast_flow

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
            sheet: Sheet = None, header_row: HeaderRow = None,
            config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
            set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """The champion/challenger gate on DATA; or --version N --force; or --rollback."""
    from tasks.errors import Problem
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, None, None, header_row)])
        name = settings.registry.model_name
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
            from flows.promote import promote_flow

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


stack_app = typer.Typer(help="The local stack: Prefect server, MLflow server, worker and deployments.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
StackHome = Annotated[Path, typer.Option("--home", help="Where state, logs and the Prefect database live")]


@stack_app.command("up")
def stack_up(prefect_port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
             mlflow_port: Annotated[int, typer.Option(help="MLflow server port")] = 5000,
             home: StackHome = Path(".stack"),
             prefect_file: Annotated[Path, typer.Option(help="Deployments to apply")] = Path("prefect.yaml")) -> None:
    """Start the servers, the work pool and a worker on 127.0.0.1, and deploy prefect.yaml."""
    from flows import stack

    with user_errors():
        started = stack.up(stack.Stack(home, prefect_port, mlflow_port), prefect_file)
    _print_stack(started)


@stack_app.command("status")
def stack_status(home: StackHome = Path(".stack")) -> None:
    """What runs, with its process id, and where the UIs are."""
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
    """Stop exactly what `stack up` started."""
    from flows import stack

    stopped = stack.down(home)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the stack was not running")


def _print_stack(s) -> None:
    typer.echo(f"Prefect UI:  http://127.0.0.1:{s.prefect_port}\nMLflow UI:   {s.mlflow_uri}\n"
               f"commands run here now use these servers (PREFECT_API_URL={s.prefect_api}, MLFLOW_TRACKING_URI={s.mlflow_uri})")


@app.callback()
def _use_running_stack() -> None:
    """While the stack is up, flows started here use its servers (unless the variables are set already)."""
    from flows.stack import active_env

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
