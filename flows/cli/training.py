"""`validate` and `train`: one workbook checked, or one model trained on it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli.app import (Config, Data, HeaderRow, SeriesId, Sets, Sheet, Target, TimeCol, app, data_overrides,
                           runs_line, user_errors)
from services import console, tempserver


@app.command()
def validate(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
             header_row: HeaderRow = None, series: SeriesId = None,
             config: Config = None,
             set_: Sets = []) -> None:
    """Ingest, clean (only what data.sort / data.fill_gaps ask) and validate; print a summary (of each series)."""
    from tasks.data.clean import clean_tables
    from tasks.data.ingest import read_tables
    from tasks.data.validate import validate_tables
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *data_overrides(sheet, time_col, target, header_row, series)])
        tables = clean_tables(read_tables(data, settings.data), settings.data)
        valid = validate_tables(tables, settings, str(data))
    if not tables.several:
        typer.echo(f"valid: {next(iter(valid.series.values()))[1]}")
        return
    typer.echo(f"valid: {len(valid.series)} series in {data}" + (f" ({len(valid.skipped)} left out)" if valid.skipped else ""))
    for series_id, (_, summary) in valid.series.items():
        typer.echo(f"  series {series_id}: {summary.rows} rows from {summary.start} to {summary.end}")
    for note in dict.fromkeys(n for _, summary in valid.series.values() for n in summary.notes):
        typer.echo(f"  note: {note}")
    for series_id, why in valid.skipped.items():
        typer.echo(f"  left out: series {series_id} (data.skip_bad_series): {why}")


@app.command()
def train(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
          header_row: HeaderRow = None, series: SeriesId = None,
          config: Config = None,
          set_: Sets = [],
          preset: Annotated[Optional[str], typer.Option(help="Start from a preset: 'seed' = the original script")] = None) -> None:
    """Train on DATA: tracked in MLflow, model registered; prints the run id and model version."""
    from tasks.settings import load_settings

    with user_errors():
        settings = load_settings(config, [*set_, *data_overrides(sheet, time_col, target, header_row, series)], preset)
        connect_prefect = tempserver.start()
        console.import_tensorflow()  # with MLflow below: ~8 s of imports, beside the server's start
        from flows.train import train_flow

        connect_prefect()
        result = train_flow(str(data), settings)
    typer.echo(f"run_id: {result.run_id}")
    typer.echo(f"model: {result.model_name} version {result.version}")
    typer.echo(f"test_mse: {result.metrics['test_mse']:.4f} (repeat {result.metrics['repeat_test_mse']:.4f}, "
               f"seasonal naive {result.metrics['seasonal_naive_test_mse']:.4f})")
    if each := [k for k in result.metrics if k.startswith("test_mse.")]:
        typer.echo(f"series: {len(each)}, one model (their figures: series.csv and series_forecasts.png on the run)")
    typer.echo(f"promotion: {result.promotion}")
    for line in _run_summary(result, settings):
        typer.echo(line)


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
    return [f"lstm: {what}", runs_line(result.run_id)]
