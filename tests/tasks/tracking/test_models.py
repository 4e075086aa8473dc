"""The logged model's requirements check, done beside training, ahead of `log_model`."""

import mlflow.utils.requirements_utils as requirements_utils

from tasks.tracking import models


def test_the_requirements_check_beside_training_leaves_mlflow_its_distribution_map(monkeypatch):
    # The check ahead of `log_model` saves time only because MLflow keeps the map from modules to
    # distributions that its first check builds (a module global): this fails if MLflow renames it or stops
    # keeping it.
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(models, "_checked", False)
    callback = models.requirements_check_callback()
    for batch in range(3):
        callback.on_train_batch_end(batch)
    models.check_requirements()  # as log_model does: waits for the check the callback started, if still running
    assert models._checked
    assert "mlflow" in requirements_utils._MODULES_TO_PACKAGES["mlflow"]
