"""The gate's decision and windows, as plain functions on numbers (the flow tests use real models)."""

import pandas as pd
import pytest

from tasks.registry.promote import KEPT, PROMOTED, comparable, decide, first_unseen_row, gate_origins
from tasks.settings import PromotionSettings, parse_settings

GATE = PromotionSettings(margin=0.1, require_beat_repeat=True)


@pytest.mark.parametrize("scores, expected, fragment", [
    ({"gate_challenger_mse": 0.8, "gate_champion_mse": 1.0, "gate_repeat_mse": 2.0}, PROMOTED, "< champion's 1"),
    # Better, but not by the 10% margin.
    ({"gate_challenger_mse": 0.95, "gate_champion_mse": 1.0, "gate_repeat_mse": 2.0}, KEPT, "is not below"),
    ({"gate_challenger_mse": 1.2, "gate_champion_mse": 1.0, "gate_repeat_mse": 2.0}, KEPT, "is not below"),
    # Far better than the champion, but no better than holding the last value.
    ({"gate_challenger_mse": 0.5, "gate_champion_mse": 1.0, "gate_repeat_mse": 0.5}, KEPT, "does not beat Repeat"),
    ({"gate_challenger_mse": 0.5, "gate_repeat_mse": 2.0}, PROMOTED, "no champion yet"),
    ({"gate_challenger_mse": 3.0, "gate_repeat_mse": 2.0}, KEPT, "does not beat Repeat"),
    ({"gate_challenger_mse": float("nan"), "gate_repeat_mse": 2.0}, KEPT, "not finite"),
])
def test_decision(scores, expected, fragment):
    decision, reason = decide(scores, GATE)
    assert decision == expected and fragment in reason


def test_repeat_requirement_can_be_switched_off():
    scores = {"gate_challenger_mse": 3.0, "gate_repeat_mse": 2.0}
    assert decide(scores, PromotionSettings(require_beat_repeat=False))[0] == PROMOTED


def test_gate_windows_are_the_newest_holdout_rows():
    settings = parse_settings({"split": {"train": 0.6, "val": 0.2, "test": 0.2}, "window": {"input_length": 24, "horizon": 6}})
    # Default holdout: as many rows as the test split (144 of 720); targets of the last origin end at row 719.
    assert gate_origins(720, settings, lookback=24, horizon=6) == range(576, 715)
    rows_30 = settings.model_copy(update={"promotion": PromotionSettings(holdout=30)})
    assert gate_origins(720, rows_30, lookback=24, horizon=6) == range(690, 715)
    # Lookback never reaches before row 0: of 40 rows, the first origin with 24 rows before it.
    assert gate_origins(40, rows_30, lookback=24, horizon=6) == range(24, 35)


def test_gate_windows_start_after_the_models_training_data():
    settings = parse_settings({"split": {"train": 0.6, "val": 0.2, "test": 0.2}, "window": {"input_length": 24, "horizon": 6}})
    # A champion trained on rows up to 649: only targets from row 650 on are scored.
    assert gate_origins(720, settings, lookback=24, horizon=6, unseen=650) == range(650, 715)
    assert len(gate_origins(720, settings, lookback=24, horizon=6, unseen=716)) == 0


def test_first_unseen_row_is_the_row_after_seen_through():
    index = pd.date_range("2024-01-01", periods=10, freq="h")
    assert first_unseen_row(index, {"seen_through": "2024-01-01T03:00:00"}) == 4
    assert first_unseen_row(index, {"seen_through": "2023-12-31T00:00:00"}) == 0
    assert first_unseen_row(index, {"seen_through": "2024-02-01T00:00:00"}) == 10


def test_models_with_other_targets_or_horizons_are_not_compared():
    spec = {"target": "OT", "horizon": 6, "frequency": "h", "seen_through": "2024-01-01T00:00:00"}
    assert comparable(spec, None) == [] and comparable(spec, dict(spec)) == []
    reasons = comparable(spec, spec | {"horizon": 24})
    assert len(reasons) == 1 and "horizon" in reasons[0]
    # A model logged before specs said where training data ended cannot be scored fairly.
    legacy = {k: v for k, v in spec.items() if k != "seen_through"}
    assert "training data ended" in comparable(spec, legacy)[0]


@pytest.mark.parametrize("bad", [{"holdout": 3}, {"holdout": 1.5}, {"margin": 1.0}])
def test_promotion_settings_are_checked(bad):
    from tasks.errors import InputError

    with pytest.raises(InputError):
        parse_settings({"window": {"input_length": 24, "horizon": 6}, "promotion": bad})


def test_models_of_several_series_are_compared_only_on_the_same_series():
    spec = {"target": None, "horizon": 6, "frequency": "h", "seen_through": "2016-07-01T00:00:00"}
    both = spec | {"series": {"OT": {}, "HUFL": {}}}
    assert comparable(both, spec | {"series": {"HUFL": {}, "OT": {}}}) == []  # their order does not matter
    assert comparable(both, spec | {"series": {"OT": {}}}) == [
        "champion and challenger forecast other series (OT vs OT, HUFL); the gate compares them on the same ones"]
    assert comparable(both, spec | {"target": "OT"}) == ["the challenger forecasts several series, the champion one"]
    long = spec | {"target": "value", "id_column": "store", "series": {"OT": {}, "HUFL": {}}}
    assert comparable(both | {"id_column": None}, long) == [
        "the champion reads a long sheet (ids in 'store'), the challenger a wide sheet (a column per series)"]
