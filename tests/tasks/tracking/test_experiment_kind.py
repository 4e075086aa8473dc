"""Experiments say they hold model training, so that MLflow's UI can open them on the runs table."""

from mlflow.tracking import MlflowClient

from tasks.tracking.store import KIND, KIND_TAG, connect, experiment_id, runs_page


def test_new_and_untagged_experiments_are_model_training_and_a_chosen_kind_is_kept():
    connect()
    client = MlflowClient()
    assert client.get_experiment(experiment_id("kind-new")).tags[KIND_TAG] == KIND
    # Made by an earlier version of the product (no kind), or guessed by the UI: given ours.
    for name, tags in (("kind-none", {}), ("kind-inferred", {KIND_TAG: "genai_development_inferred"})):
        made = client.create_experiment(name, tags=tags)
        assert experiment_id(name) == made and client.get_experiment(made).tags[KIND_TAG] == KIND
    chosen = client.create_experiment("kind-chosen", tags={KIND_TAG: "forecasting"})
    assert experiment_id("kind-chosen") == chosen and client.get_experiment(chosen).tags[KIND_TAG] == "forecasting"


def test_the_runs_page_asks_the_ui_for_its_model_training_view(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000/")
    assert runs_page("7") == "http://tracking.example:5000/#/experiments/7?workflowType=machine_learning"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert runs_page("1").startswith("http://127.0.0.1:5000/#/experiments/1?")
