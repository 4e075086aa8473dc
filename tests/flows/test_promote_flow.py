"""The champion/challenger gate with real registered models on the same data; forced promotion; rollback."""

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow
from typer.testing import CliRunner

from flows.cli import app
from flows.promote import promote_flow
from flows.retrain import retrain_flow
from flows.train import train_flow
from tasks.errors import InputError
from tasks.registry.forecast import load_forecaster
from tasks.registry.promote import (CHALLENGER, CHAMPION, KEPT, NOT_COMPARED, PROMOTED, apply_decision, force_champion,
                                    judge, load_candidates, read_gate_data, rollback_champion)
from tasks.registry.pyfunc import forecast_next
from tasks.settings import parse_settings
from tasks.tracking import models, registry, runs
from tasks.tracking.registry import DROP, ROLLBACK, SET

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "gate-test-model"


@pytest.fixture(scope="module")
def settings():
    return parse_settings({
        "data": {"target": "OT"}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
        "train": {"epochs": 2, "batch_size": 32, "patience": 0, "learning_rate": 0.01},
        "tracking": {"experiment": "gate-test"}, "registry": {"model_name": NAME},
        "promotion": {"margin": 0.01, "require_beat_repeat": False},
    })


def log_variant(settings, data, change) -> tuple[str, str]:
    """Version 1's network with its weights changed by `change(model)`, logged to a run of its own:
    (run id, model URI)."""
    trained = load_forecaster(f"models:/{NAME}/1")
    model = keras.models.clone_model(trained.keras_model)
    model.set_weights(trained.keras_model.get_weights())
    change(model)
    example = pd.read_excel(data, engine="calamine").tail(24)[["date", "OT"]]
    run_id = runs.start_run(settings.tracking.experiment, "variant", "version 1, weights changed", {})
    uri = models.log_model(run_id, model, trained.spec, example, forecast_next(model, trained.spec, example))
    runs.end_run(run_id, ok=True)
    return run_id, uri


def register_variant(settings, data, change) -> str:
    """A variant (see `log_variant`) registered as a new version, without aliases."""
    run_id, uri = log_variant(settings, data, change)
    return registry.register_model(uri, NAME, run_id)


def shift_output(model):
    """Every forecast 3 train-standard-deviations too high: far worse than the trained model."""
    head = model.get_layer("head")
    head.bias.assign(head.bias.numpy() + 3.0)


def zero_weights(model):
    """With every weight zero the model holds the window's last value: exactly Repeat."""
    for weight in model.trainable_weights:
        weight.assign(np.zeros(weight.shape))


@pytest.fixture(scope="module")
def versions(prefect_server, valid_workbook, settings):
    """Version 1: trained (and made champion by the gate at the end of training, as the first version);
    2: version 1 shifted off target; 3: version 1 with zero weights (Repeat); 4: version 1 unchanged."""
    first = train_flow(str(valid_workbook), settings)
    return {"trained": first, "worse": register_variant(settings, valid_workbook, shift_output),
            "repeat": register_variant(settings, valid_workbook, zero_weights),
            "same": register_variant(settings, valid_workbook, lambda model: None)}


def champion() -> str:
    return registry.alias_run(NAME, CHAMPION)[0]


def version_tags(version: str) -> dict:
    return MlflowClient().get_model_version(NAME, version).tags


def test_training_names_the_new_version_challenger_and_the_first_becomes_champion(versions):
    first = versions["trained"]
    assert first.promotion.decision == PROMOTED and "no champion yet" in first.promotion.reason
    assert first.promotion.champion is None
    run = MlflowClient().get_run(first.run_id)
    assert run.data.tags["promotion_decision"] == PROMOTED
    assert "gate_challenger_mse" in run.data.metrics and "gate_champion_mse" not in run.data.metrics
    assert version_tags("1")["challenger_reason"] == f"new version from training run {first.run_id}"
    # The audit history: named challenger, crowned, and the challenger alias dropped, one record each.
    assert [(c.alias, c.action, c.version, c.previous) for c in registry.history(NAME)[:3]] == [
        (CHALLENGER, SET, "1", None), (CHAMPION, SET, "1", None), (CHALLENGER, DROP, None, "1")]


def test_gate_keeps_a_worse_challenger(versions, settings, valid_workbook):
    force_champion(NAME, "1", "test setup")
    result = promote_flow(NAME, str(valid_workbook), settings, versions["worse"])
    assert result.decision == KEPT and result.champion == "1"
    scores = result.scores
    assert scores["gate_challenger_mse"] > scores["gate_champion_mse"] > 0 and scores["gate_windows"] == 139
    # Gating a version by number leaves `challenger` where it is (here: nowhere, version 1 was promoted).
    assert champion() == "1" and registry.alias_run(NAME, CHALLENGER) is None
    # Recorded on the challenger's run and on its model version.
    run = MlflowClient().get_run(registry.model_version(NAME, versions["worse"]).run_id)
    assert run.data.tags["promotion_decision"] == KEPT
    assert run.data.metrics["gate_champion_mse"] == pytest.approx(scores["gate_champion_mse"])
    assert run.data.metrics["gate_challenger_mse"] == pytest.approx(scores["gate_challenger_mse"])
    tags = version_tags(versions["worse"])
    assert tags["promotion_decision"] == KEPT and tags["gate_champion_version"] == "1"
    assert float(tags["gate_challenger_mse"]) == pytest.approx(scores["gate_challenger_mse"], rel=1e-5)


def test_gate_promotes_a_better_challenger_on_the_same_data(versions, settings, valid_workbook):
    force_champion(NAME, versions["worse"], "test setup")
    result = promote_flow(NAME, str(valid_workbook), settings, "1")
    assert result.decision == PROMOTED and result.champion == versions["worse"]
    assert result.scores["gate_challenger_mse"] < result.scores["gate_champion_mse"]
    assert champion() == "1" and registry.alias_run(NAME, CHALLENGER) is None
    assert version_tags("1")["champion_reason"].startswith("promotion gate: ")
    last = registry.history(NAME)[-1]
    assert (last.alias, last.version, last.previous) == (CHAMPION, "1", versions["worse"])


def test_a_challenger_no_better_than_repeat_is_kept(versions, settings, valid_workbook):
    force_champion(NAME, versions["worse"], "test setup")
    strict = settings.model_copy(update={"promotion": settings.promotion.model_copy(update={"require_beat_repeat": True})})
    result = promote_flow(NAME, str(valid_workbook), strict, versions["repeat"])
    # Zero weights forecast exactly what Repeat does, so it does not beat Repeat, though it beats the champion.
    assert result.scores["gate_challenger_mse"] == pytest.approx(result.scores["gate_repeat_mse"], rel=1e-6)
    assert result.scores["gate_challenger_mse"] < result.scores["gate_champion_mse"]
    assert result.decision == KEPT and "does not beat Repeat" in result.reason and champion() == versions["worse"]


def test_a_gate_on_rows_the_models_were_trained_on_keeps_and_says_so(versions, settings, valid_workbook, tmp_path):
    force_champion(NAME, "1", "test setup")
    early = tmp_path / "early.csv"  # rows 0-499: training (train + validation splits) saw rows 0-575
    pd.read_excel(valid_workbook, engine="calamine").head(500).to_csv(early, index=False)
    result = promote_flow(NAME, str(early), settings, versions["repeat"])
    assert result.decision == KEPT and result.reason.startswith("too few rows to score fairly: 0 of the data's 500")
    assert result.scores == {} and champion() == "1"


def test_forced_promotion_and_rollback_are_recorded(versions):
    force_champion(NAME, "1", "test setup")
    assert force_champion(NAME, versions["repeat"], "hotfix: the trained one drifts") == "1"
    tags = version_tags(versions["repeat"])
    assert champion() == versions["repeat"] and registry.history(NAME)[-1].previous == "1"
    assert tags["champion_reason"] == "forced: hotfix: the trained one drifts"
    assert "@" in tags["champion_by"] and pd.Timestamp(tags["champion_at"]).tzname() == "UTC"

    assert rollback_champion(NAME, "hotfix reverted") == (versions["repeat"], "1")
    assert champion() == "1"
    assert version_tags("1")["champion_reason"] == f"rollback from version {versions['repeat']}: hotfix reverted"
    last = registry.history(NAME)[-1]
    assert (last.action, last.version, last.previous) == (ROLLBACK, "1", versions["repeat"])


def test_cli_force_and_rollback(versions):
    runner = CliRunner()
    force_champion(NAME, "1", "test setup")
    done = runner.invoke(app, ["promote", "--version", versions["worse"], "--force", "--set", f"registry.model_name={NAME}"])
    assert done.exit_code == 0, done.output
    assert champion() == versions["worse"] and f"champion is version {versions['worse']} (was 1)" in done.stdout
    done = runner.invoke(app, ["promote", "--rollback", "--reason", "wrong one", "--set", f"registry.model_name={NAME}"])
    assert done.exit_code == 0, done.output
    assert champion() == "1" and version_tags("1")["champion_reason"].endswith("wrong one")


@pytest.mark.parametrize("args, fragment", [
    (["--version", "99", "--force"], "no version 99 (versions present: 1, 2, 3, 4)"),
    (["--force"], "--force needs --version N"),
    (["--version", "99"], "the gate needs DATA"),
])
def test_cli_bad_requests_exit_2_and_leave_the_champion(versions, args, fragment):
    before = champion()
    done = CliRunner().invoke(app, ["promote", *args, "--set", f"registry.model_name={NAME}"])
    assert done.exit_code == 2 and fragment in done.stderr
    assert champion() == before


def test_bad_data_or_version_for_the_gate_is_input_error(versions, settings, catalogue, valid_workbook):
    before = champion(), registry.alias_run(NAME, CHALLENGER)
    with pytest.raises(InputError, match="hold text"):
        promote_flow(NAME, str(catalogue["text_in_numeric"]), settings, versions["worse"])
    with pytest.raises(InputError, match="no version 99"):
        promote_flow(NAME, str(valid_workbook), settings, "99")
    assert (champion(), registry.alias_run(NAME, CHALLENGER)) == before


def test_two_rollbacks_after_three_promotions_go_back_two_steps(versions):
    worse, repeat = versions["worse"], versions["repeat"]
    force_champion(NAME, repeat, "test setup")
    for version in ("1", worse, "1"):
        force_champion(NAME, version, "one of three promotions")
    assert rollback_champion(NAME, "first") == ("1", worse)
    assert rollback_champion(NAME, "second") == (worse, "1")
    # A third goes one step further back, to the setup's champion; following "the champion version 1
    # replaced" would cycle between 1 and `worse` instead.
    assert rollback_champion(NAME, "third") == ("1", repeat) and champion() == repeat


def test_a_champion_replaced_while_the_gate_scored_is_met_again(versions, settings, valid_workbook):
    force_champion(NAME, versions["worse"], "test setup")
    challenger, met = load_candidates(NAME, "1")
    series = read_gate_data.fn(str(valid_workbook), settings, challenger, met)
    verdict = judge(series, challenger, met, settings)
    assert verdict.decision == PROMOTED  # against `worse`
    force_champion(NAME, versions["same"], "another process, meanwhile")
    result = apply_decision(NAME, challenger, met, verdict, series, settings, str(valid_workbook))
    # Against the champion that now holds the alias (the same weights), version 1 is not better by the margin.
    assert result.decision == KEPT and result.champion == versions["same"] and champion() == versions["same"]
    assert result.reason.startswith(f"judged again: version {versions['same']} replaced {versions['worse']}")
    assert version_tags("1")["gate_champion_version"] == versions["same"]


# A tiny model of NAME with another horizon (12) than version 1's (6).
HORIZON_12 = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
              "window.horizon=12", "model.layers=1", "model.units=4", "train.epochs=1", "train.patience=0",
              f"registry.model_name={NAME}"]


def test_training_another_horizon_than_the_champion_exits_0_and_is_not_compared(versions, valid_workbook):
    force_champion(NAME, "1", "test setup")
    sets = [*HORIZON_12, "tracking.experiment=gate-test"]
    done = CliRunner().invoke(app, ["train", str(valid_workbook), *[a for s in sets for a in ("--set", s)]])
    assert done.exit_code == 0, done.output
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    version = lines["model"].removeprefix(f"{NAME} version ")
    assert lines["run_id"] == registry.model_version(NAME, version).run_id
    assert lines["promotion"].startswith(f"version {version} {NOT_COMPARED}: champion and challenger differ in horizon")
    tags = version_tags(version)
    assert tags["promotion_decision"] == NOT_COMPARED and "horizon: 6 vs 12" in tags["promotion_reason"]
    assert champion() == "1" and registry.alias_run(NAME, CHALLENGER)[0] == version


def test_a_retrain_whose_gate_cannot_compare_completes(versions, valid_workbook, tmp_path):
    """Completed is what the `forecast` deployment's trigger waits for (prefect.yaml)."""
    force_champion(NAME, "1", "test setup")
    (tmp_path / "station.xlsx").write_bytes(valid_workbook.read_bytes())
    state = retrain_flow(str(tmp_path), "*.xlsx", None, [*HORIZON_12, "tracking.experiment=gate-retrain"],
                         return_state=True)
    assert state.is_completed()
    done = state.result()
    assert done["status"] == "trained" and version_tags(done["version"])["promotion_decision"] == NOT_COMPARED


def test_a_registration_retried_after_a_failure_makes_one_version(versions, settings, valid_workbook, monkeypatch):
    run_id, uri = log_variant(settings, valid_workbook, lambda model: None)
    record, calls = registry._record, []

    def fails_once(*args, **kwargs):
        """The store goes away after the version is registered and the alias moved, before the audit record."""
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("tracking store unreachable")
        return record(*args, **kwargs)

    monkeypatch.setattr(registry, "_record", fails_once)

    @flow
    def register() -> str:
        return registry.register_version(uri, NAME, run_id)

    version = register()
    assert len(calls) == 2  # the task ran twice
    assert [str(v.version) for v in MlflowClient().search_model_versions(f"name='{NAME}' and run_id='{run_id}'")] == [version]
    assert registry.alias_run(NAME, CHALLENGER)[0] == version
    assert len([c for c in registry.history(NAME) if c.alias == CHALLENGER and c.version == version]) == 1


def test_cli_gate_on_data_keeps_a_worse_challenger(versions, valid_workbook, cli_env):
    """`lstm-pipeline promote DATA --version N`, as a user runs it: a real process, the gate on DATA."""
    import subprocess
    import sys
    from pathlib import Path

    force_champion(NAME, "1", "test setup")
    done = subprocess.run([str(Path(sys.executable).with_name("lstm-pipeline")), "promote", str(valid_workbook),
                           "--version", versions["worse"], "--set", f"registry.model_name={NAME}",
                           "--set", "promotion.require_beat_repeat=false"],
                          capture_output=True, text=True, timeout=600, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert f"{NAME} version {versions['worse']} {KEPT}" in done.stdout
    assert champion() == "1"
    assert version_tags(versions["worse"])["promotion_decision"] == KEPT
