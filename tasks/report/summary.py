"""Stage 9b, report: a Prefect markdown artifact that sums up a training run."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact


def summary_markdown(metrics: dict[str, float], run_id: str, model_name: str, version: str, title: str) -> str:
    rows = [("model", ""), ("repeat", "repeat_"), ("seasonal_naive", "seasonal_naive_")]
    table = ["| forecaster | test MSE | test MAE | RMSE (units) | MAE (units) | sMAPE % | MASE |", "|---|---|---|---|---|---|---|"]
    for name, prefix in rows:
        m = {k: metrics[f"{prefix}test_{k}"] for k in ("mse", "mae", "rmse_units", "mae_units", "smape", "mase")}
        table.append(f"| {name} | {m['mse']:.4f} | {m['mae']:.4f} | {m['rmse_units']:.3f} | {m['mae_units']:.3f} "
                     f"| {m['smape']:.2f} | {m['mase']:.3f} |")
    return "\n".join([f"# {title}", "", *table, "",
                      f"MLflow run `{run_id}`; registered `{model_name}` version **{version}**."])


@task
def publish_report(metrics: dict[str, float], run_id: str, model_name: str, version: str, title: str) -> str:
    markdown = summary_markdown(metrics, run_id, model_name, version, title)
    create_markdown_artifact(markdown, key="training-summary", description=title)
    return markdown
