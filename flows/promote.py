"""The promotion flow: the champion/challenger gate on the newest data (also the last step of training)."""

from __future__ import annotations

import pandas as pd
from prefect import flow

from tasks.errors import InputError
from tasks.registry.promote import (GateResult, gate_candidates, needed_columns, promote_model, read_gate_data,
                                    score_gate)
from tasks.settings import Settings
from tasks.tracking import store


@flow(name="promote", log_prints=True)
def promote_flow(model_name: str, data: str, settings: Settings = Settings(), version: str | None = None) -> GateResult:
    """Score the challenger (`version`, else the `challenger` alias) and the champion on the same newest
    windows of `data`; `champion` moves only if the challenger wins, and two models that cannot be compared
    leave the challenger where it is (tasks/registry/promote.py says how)."""
    return run_gate(model_name, data, settings, version)


def run_gate(model_name: str, data: str, settings: Settings, version: str | None = None,
             series: pd.DataFrame | None = None) -> GateResult:
    """The gate's tasks, in the calling flow. `series`: the data already read and validated (training's),
    used when it holds every column both models read. Training and sweeps call this, not `promote_flow`:
    a subflow would send `series` to the Prefect API as a parameter, which refuses more than 512 KB
    (ETTh1's frame is 700 KB)."""
    store.connect()
    challenger, champion = gate_candidates(model_name, version)
    if series is None or not set(needed_columns(challenger, champion)) <= set(series.columns):
        try:
            series = read_gate_data(data, settings, challenger, champion)
        except InputError:
            if series is None:
                raise
            # DATA lacks a column the champion reads: the gate on training's frame says `not_compared`.
    verdict = score_gate(series, challenger, champion, settings)
    result = promote_model(model_name, challenger, champion, verdict, series, settings, data)
    print(f"{model_name} {result}")
    return result
