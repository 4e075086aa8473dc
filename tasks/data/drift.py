"""Comparing new data with the data the champion was trained on: schema and target distribution shift."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

QUANTILES = np.linspace(0, 1, 11)  # decile edges
PSI_ALERT = 0.25  # the usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a significant shift


def profile(series: pd.DataFrame, target: str, train_rows: tuple[int, int]) -> dict:
    """What later data is compared with: columns, frequency and the target's train-split distribution."""
    values = series[target].to_numpy()[slice(*train_rows)]
    return {"columns": [series.index.name, *series.columns], "target": target,
            "train_end": str(series.index[train_rows[1] - 1]), "mean": float(values.mean()), "std": float(values.std()),
            "quantiles": np.quantile(values, QUANTILES).tolist()}


@dataclass(frozen=True)
class DriftReport:
    columns_added: list[str]
    columns_removed: list[str]
    mean_shift_in_std: float  # (new mean - reference mean) / reference std
    std_ratio: float
    psi: float  # population stability index over the reference deciles
    shifted: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self, reference: str, new: str) -> str:
        verdict = "**shifted**" if self.shifted else "stable"
        return "\n".join([
            f"# Data drift: {verdict}", "", f"Reference: {reference}  ", f"New data: {new}", "",
            "| measure | value |", "|---|---|",
            f"| columns added | {', '.join(self.columns_added) or '-'} |",
            f"| columns removed | {', '.join(self.columns_removed) or '-'} |",
            f"| mean shift (reference std) | {self.mean_shift_in_std:+.2f} |",
            f"| std ratio | {self.std_ratio:.2f} |",
            f"| PSI (deciles) | {self.psi:.3f} (alert above {PSI_ALERT}) |",
        ])


def compare(reference: dict, new: dict, new_values: np.ndarray) -> DriftReport:
    """Schema difference and distribution shift of `new_values` against the reference profile."""
    edges = np.unique(reference["quantiles"])
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.full(len(edges) - 1, 1 / (len(edges) - 1))
    actual = np.histogram(new_values, bins=edges)[0] / max(len(new_values), 1)
    actual, expected = np.clip(actual, 1e-6, None), np.clip(expected, 1e-6, None)
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))
    added = [c for c in new["columns"] if c not in reference["columns"]]
    removed = [c for c in reference["columns"] if c not in new["columns"]]
    std = reference["std"] or 1.0
    return DriftReport(added, removed, float((new_values.mean() - reference["mean"]) / std),
                       float(new_values.std() / std), psi, psi > PSI_ALERT or bool(removed))


@task
def report_drift(reference: dict | None, series: pd.DataFrame, target: str, reference_name: str, new_name: str) -> DriftReport | None:
    """Compare with the champion's training data and publish the result as a Prefect artifact."""
    if reference is None:
        return None
    new = profile(series, target, (0, len(series)))
    # Shift is judged on the rows the champion has not seen (all rows, if the series was replaced).
    # train_end is kept as text: a timestamp, or a step number for a series without a time column.
    unseen = series.loc[series.index > series.index.dtype.type(reference["train_end"]), target]
    report = compare(reference, new, (unseen if len(unseen) else series[target]).to_numpy())
    create_markdown_artifact(report.markdown(reference_name, new_name), key="data-drift",
                             description=f"{new_name} vs the champion's training data")
    return report
