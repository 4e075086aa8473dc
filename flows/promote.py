"""The promotion flow: the champion/challenger gate on the newest data (also the last step of training)."""

from __future__ import annotations

from prefect import flow

from tasks.data.panel import Prepared
from tasks.errors import InputError
from tasks.registry.promote import (GateResult, gate_candidates, missing_inputs, promote_model, read_gate_data,
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
             prepared: Prepared | None = None) -> GateResult:
    """The gate's tasks, in the calling flow. `prepared`: the data already read and validated (training's),
    used when it holds every series and column both models read. Training and sweeps call this, not
    `promote_flow`: a subflow would send the data to the Prefect API as a parameter, which refuses more
    than 512 KB (ETTh1's frame is 700 KB)."""
    store.connect()
    challenger, champion = gate_candidates(model_name, version)
    if prepared is None or missing_inputs(prepared, challenger, champion):
        try:
            prepared = read_gate_data(data, settings, challenger, champion)
        except InputError:
            if prepared is None:
                raise
            # DATA lacks a column or series the champion reads: the gate on training's data says `not_compared`.
    verdict = score_gate(prepared, challenger, champion, settings)
    result = promote_model(model_name, challenger, champion, verdict, prepared, settings, data)
    print(f"{model_name} {result}")
    return result
