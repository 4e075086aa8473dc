"""The promotion flow: the champion/challenger gate on the newest data (also the last step of training)."""

from __future__ import annotations

from prefect import flow

from tasks import tracking
from tasks.promote import GateResult, gate_candidates, promote_model, read_gate_data, score_gate
from tasks.settings import Settings


@flow(name="promote", log_prints=True)
def promote_flow(model_name: str, data: str, settings: Settings = Settings(), version: str | None = None) -> GateResult:
    """Score the challenger (`version`, else the `challenger` alias) and the champion on the same newest
    windows of `data`; `champion` moves only if the challenger wins (tasks/promote.py says how)."""
    tracking.connect()
    challenger, champion = gate_candidates(model_name, version)
    series = read_gate_data(data, settings, challenger, champion)
    scores = score_gate(series, challenger, champion, settings)
    result = promote_model(model_name, challenger, champion, scores, settings.promotion, data)
    print(f"{model_name} {result}")
    return result
