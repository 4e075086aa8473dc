"""The champion/challenger gate with real registered models on the same data; forced promotion; rollback."""

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.promote import promote_flow
from flows.train import train_flow
from tasks.tracking import models, registry, runs
from tasks.errors import InputError
from tasks.forecast import load_forecaster
from tasks.promote import CHALLENGER, CHAMPION, KEPT, PROMOTED, force_champion, rollback_champion
from tasks.pyfunc import forecast_next
from tasks.settings import parse_settings

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


def register_variant(settings, data, change) -> str:
    """Version 1's network with its weights changed by `change(model)`, registered as a new version."""
    trained = load_forecaster(f"models:/{NAME}/1")
    model = keras.models.clone_model(trained.keras_model)
    model.set_weights(trained.keras_model.get_weights())
    change(model)
    example = pd.read_excel(data, engine="calamine").tail(24)[["date", "OT"]]
    run_id = runs.start_run(settings.tracking.experiment, "variant", "version 1, weights changed", {})
    uri = models.log_model(run_id, model, trained.spec, example, forecast_next(model, trained.spec, example))
    runs.end_run(run_id, ok=True)
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
    2: version 1 shifted off target; 3: version 1 with zero weights (Repeat)."""
    first = train_flow(str(valid_workbook), settings)
    return {"trained": first, "worse": register_variant(settings, valid_workbook, shift_output),
            "repeat": register_variant(settings, valid_workbook, zero_weights)}


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
    assert "champion set by" in version_tags("1")["alias_log"]


def test_gate_keeps_a_worse_challenger(versions, settings, valid_workbook):
    force_champion(NAME, "1", "test setup")
    result = promote_flow(NAME, str(valid_workbook), settings, versions["worse"])
    assert result.decision == KEPT and result.champion == "1"
    scores = result.scores
    assert scores["gate_challenger_mse"] > scores["gate_champion_mse"] > 0 and scores["gate_windows"] == 139
    assert champion() == "1" and registry.alias_run(NAME, CHALLENGER)[0] == versions["worse"]
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
    tags = version_tags("1")
    assert tags["previous_champion"] == versions["worse"] and tags["champion_reason"].startswith("promotion gate: ")
    assert f"champion moved to version 1" in version_tags(versions["worse"])["alias_log"]


def test_a_challenger_no_better_than_repeat_is_kept(versions, settings, valid_workbook):
    force_champion(NAME, versions["worse"], "test setup")
    strict = settings.model_copy(update={"promotion": settings.promotion.model_copy(update={"require_beat_repeat": True})})
    result = promote_flow(NAME, str(valid_workbook), strict, versions["repeat"])
    # Zero weights forecast exactly what Repeat does, so it does not beat Repeat, though it beats the champion.
    assert result.scores["gate_challenger_mse"] == pytest.approx(result.scores["gate_repeat_mse"], rel=1e-6)
    assert result.scores["gate_challenger_mse"] < result.scores["gate_champion_mse"]
    assert result.decision == KEPT and "does not beat Repeat" in result.reason and champion() == versions["worse"]


def test_forced_promotion_and_rollback_are_recorded(versions):
    force_champion(NAME, "1", "test setup")
    assert force_champion(NAME, versions["repeat"], "hotfix: the trained one drifts") == "1"
    tags = version_tags(versions["repeat"])
    assert champion() == versions["repeat"] and tags["previous_champion"] == "1"
    assert tags["champion_reason"] == "forced: hotfix: the trained one drifts"
    assert "@" in tags["champion_by"] and pd.Timestamp(tags["champion_at"]).tzname() == "UTC"

    assert rollback_champion(NAME, "hotfix reverted") == (versions["repeat"], "1")
    assert champion() == "1"
    assert version_tags("1")["champion_reason"] == f"rollback from version {versions['repeat']}: hotfix reverted"
    assert f"champion moved to version 1 by" in version_tags(versions["repeat"])["alias_log"]


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
    (["--version", "99", "--force"], "no version 99 (versions present: 1, 2, 3)"),
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
