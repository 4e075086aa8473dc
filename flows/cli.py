"""`lstm-pipeline`: the command line. Bad input ends in one readable line per problem and exit code 2."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from tasks.errors import InputError

# Quiet TensorFlow's C++ start-up chatter; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stacked-LSTM forecasting: validate workbooks, train, promote and forecast.")

Data = Annotated[Path, typer.Argument(help="Workbook (.xlsx, .xlsm, .xls) or .csv / .parquet file")]
Sheet = Annotated[Optional[str], typer.Option("--sheet", help="Sheet name (default: the first sheet)")]
TimeCol = Annotated[Optional[str], typer.Option("--time-col", help="Time column (default: auto-detect)")]
Target = Annotated[Optional[str], typer.Option("--target", help="Column to forecast (default: auto-detect)")]
HeaderRow = Annotated[Optional[int], typer.Option("--header-row", help="Excel row of the header (default: 1)")]


@contextmanager
def user_errors():
    """InputError -> its problems on stderr and exit code 2, no traceback."""
    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def _data_overrides(sheet, time_col, target, header_row) -> list[str]:
    given = {"data.sheet": sheet, "data.time_column": time_col, "data.target": target, "data.header_row": header_row}
    # Quoted so YAML keeps names such as "2024" or "yes" as text.
    return [f"{k}={v}" if k == "data.header_row" else f"{k}={repr(str(v))}" for k, v in given.items() if v is not None]


@app.command()
def validate(data: Data, sheet: Sheet = None, time_col: TimeCol = None, target: Target = None,
             header_row: HeaderRow = None,
             config: Annotated[Optional[Path], typer.Option(help="YAML config file")] = None,
             set_: Annotated[list[str], typer.Option("--set", help="Override: section.key=value")] = []) -> None:
    """Ingest and validate only; print a summary (rows, span, frequency, gaps)."""
    from tasks.ingest import read_table
    from tasks.settings import load_settings
    from tasks.validate import validate_table

    with user_errors():
        settings = load_settings(config, [*set_, *_data_overrides(sheet, time_col, target, header_row)])
        raw = read_table(data, settings.data)
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
        from flows.train import train_flow

        result = train_flow(str(data), settings)
    typer.echo(f"run_id: {result.run_id}")
    typer.echo(f"model: {result.model_name} version {result.version}")
    typer.echo(f"test_mse: {result.metrics['test_mse']:.4f} (repeat {result.metrics['repeat_test_mse']:.4f}, "
               f"seasonal naive {result.metrics['seasonal_naive_test_mse']:.4f})")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
