"""`forecast`, `promote` and `serve`: what is done with registered models."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.app import Config, Data, HeaderRow, SeriesId, Sets, Sheet, app, data_overrides, user_errors
from services import console, tempserver
from tasks.errors import InputError, Problem


SHOWN_SERIES = 3  # series of a forecast printed on the console


@app.command()
def forecast(data: Data,
             model: Annotated[str, typer.Option(help="Model URI: models:/NAME@ALIAS or models:/NAME/VERSION")]
             = "models:/lstm-forecaster@champion",
             out: Annotated[Optional[Path], typer.Option(help="Forecast table, .csv or .xlsx (default: DATA's name + "
                                                             "-forecast.csv, here); the plot goes beside it (.png)")] = None,
             sheet: Sheet = None, header_row: HeaderRow = None, series: SeriesId = None,
             config: Config = None,
             set_: Sets = []) -> None:
    """Forecast the H steps after the end of DATA with a registered model, with prediction intervals."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *data_overrides(sheet, None, None, header_row, series)])
        connect_prefect = tempserver.start()
        console.import_tensorflow()
        from flows.forecast import forecast_flow

        connect_prefect()
        result = forecast_flow(str(data), model, str(out) if out else None, settings)
    typer.echo(f"model: {result.model}\nforecast: {result.table}  plot: {result.plot}\nrun_id: {result.run_id}")
    table, shown = result.forecast, SHOWN_SERIES
    ids = table["series"].unique() if "series" in table else []
    if len(ids) > shown:  # the console shows a few series; the file holds all of them
        table = table[table["series"].isin(ids[:shown])]
    typer.echo(table.to_string(index=False))
    if len(ids) > shown:
        typer.echo(f"... and {len(ids) - shown} more series, every one in {result.table}")


@app.command()
def promote(data: Annotated[Optional[Path], typer.Argument(help="Data for the gate: its newest rows are scored")] = None,
            version: Annotated[Optional[str], typer.Option(help="Version to promote (default: the 'challenger')")] = None,
            force: Annotated[bool, typer.Option("--force", help="Make --version the champion without the gate")] = False,
            rollback: Annotated[bool, typer.Option("--rollback", help="Give 'champion' back to the version it replaced")]
            = False,
            reason: Annotated[str, typer.Option(help="Why, recorded on the model version")] = "from the command line",
            sheet: Sheet = None, header_row: HeaderRow = None, series: SeriesId = None,
            config: Config = None,
            set_: Sets = []) -> None:
    """The champion/challenger gate on DATA; or --version N --force; or --rollback."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *data_overrides(sheet, None, None, header_row, series)])
        name = settings.registry.model_name
        console.import_tensorflow()
        from tasks.registry import promote as gate
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
