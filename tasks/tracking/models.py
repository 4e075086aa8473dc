"""The logged model: the pyfunc forecaster (Keras model, spec and this package's code), logged at once or from
the parts a trial keeps, and loading it back."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from tasks.errors import InputError, Problem

CODE_DIR = Path(__file__).resolve().parents[1]  # tasks/, shipped inside the model so it loads anywhere
ENTRY = CODE_DIR / "registry" / "entry.py"  # the models-from-code file MLflow runs to load the model

# The distributions the model's code imports when it loads (tasks/registry/pyfunc.py and what it imports), pinned to
# the versions it was trained with. A fresh environment built from these alone must load and serve it.
REQUIRED = ("mlflow", "tensorflow-cpu", "keras", "pandas", "numpy", "pandera[pandas]", "pydantic", "pyyaml")


def pip_requirements() -> list[str]:
    """`name==version` of each distribution in REQUIRED, as installed here."""
    from importlib.metadata import version

    return [f"{requirement}=={version(requirement.split('[')[0])}" for requirement in REQUIRED]


_checking = threading.Lock()
_checked = False


def check_requirements() -> None:
    """MLflow's check that this environment satisfies the pyfunc's requirements, which logging the model runs.
    Its first call in a process maps every installed distribution to its modules (1.2 s of Python here);
    MLflow keeps that map for later calls (tests/tasks/tracking/test_models.py fails if it stops)."""
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    global _checked
    with _checking:
        if not _checked:
            warn_dependency_requirement_mismatches(pip_requirements())
            _checked = True


def requirements_check_callback():
    """A Keras callback that starts `check_requirements` in a thread when training's first call into TF returns.
    Not before: tracing the steps is Python too, and the two would take turns on Python's lock. After it, the
    epochs run in TF's C++ with that lock released, so the check takes the idle core and `log_model` finds it
    done (or waits for it)."""
    import keras

    class StartRequirementsCheck(keras.callbacks.Callback):
        started = False

        def on_train_batch_end(self, batch, logs=None):
            if not self.started:
                self.started = True
                threading.Thread(target=check_requirements, name="mlflow-requirements-check", daemon=True).start()

    return StartRequirementsCheck()


PARTS = "model_parts"  # a trial's artifacts from which its pyfunc is logged if it is chosen (log_model_from_parts)


def save_parts(folder: Path, keras_model, spec: dict) -> None:
    """The pyfunc's artifacts as files: the Keras model and its spec."""
    keras_model.save(folder / "model.keras")
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))


def log_model(run_id: str, keras_model, spec: dict, input_example: pd.DataFrame, output_example: pd.DataFrame) -> str:
    """Log the pyfunc forecaster (Keras model + spec + this package's code) as a logged model of run
    `run_id`'s experiment, stored under that experiment's artifact root; returns its model URI."""
    with tempfile.TemporaryDirectory() as tmp:
        save_parts(Path(tmp), keras_model, spec)
        return _log_pyfunc(run_id, Path(tmp), input_example, output_example)


def log_parts(run_id: str, keras_model, spec: dict, input_example: pd.DataFrame, output_example: pd.DataFrame) -> None:
    """Keep what `log_model` would log, as plain artifacts of the run (PARTS): a fraction of its cost (no copy
    of the code, no environment, no check that the model loads), for a trial that may not be chosen. The
    examples go beside the model as pandas pickles, which keep every dtype and column name as they were.
    (Loading a pickle runs what it holds: only those who may log runs can write one, and they can log a
    model, whose code runs where it loads, anyway.)"""
    with tempfile.TemporaryDirectory() as tmp:
        save_parts(Path(tmp), keras_model, spec)
        input_example.to_pickle(Path(tmp, "input_example.pkl"))
        output_example.to_pickle(Path(tmp, "output_example.pkl"))
        MlflowClient().log_artifacts(run_id, tmp, PARTS)


def has_parts(run_id: str) -> bool:
    return bool(MlflowClient().list_artifacts(run_id, PARTS))


def log_model_from_parts(run_id: str) -> str:
    """Log the pyfunc of a run that kept its parts (`log_parts`), and tag the run with its URI; returns the URI."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(run_id, PARTS, tmp))
        uri = _log_pyfunc(run_id, folder, pd.read_pickle(folder / "input_example.pkl"),
                          pd.read_pickle(folder / "output_example.pkl"))
    client.set_tag(run_id, "model_uri", uri)
    return uri


def _log_pyfunc(run_id: str, parts: Path, input_example: pd.DataFrame, output_example: pd.DataFrame) -> str:
    """Logged from code (ENTRY), as MLflow 3 recommends for custom pyfuncs: loading runs that file instead of
    unpickling an object, so the model does not depend on this Python's pickle format."""
    from mlflow.models import infer_signature

    check_requirements()  # done already when the fit started it beside training (requirements_check_callback)
    client = MlflowClient()
    run = client.get_run(run_id)
    # Model.log would file the model under the process's active experiment (Default when none is set);
    # created here, it belongs to the run's experiment, with the run's params as Model.log would give it.
    logged = client.create_logged_model(run.info.experiment_id, name="model", source_run_id=run_id,
                                        params=run.data.params)
    info = mlflow.models.Model.log(
        artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id, model_id=logged.model_id,
        python_model=str(ENTRY),
        artifacts={"keras_model": str(parts / "model.keras"), "spec": str(parts / "spec.json")},
        code_paths=[str(CODE_DIR)],
        signature=infer_signature(input_example, output_example),
        input_example=input_example,
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


def load_pyfunc(uri: str):
    """The logged pyfunc at `uri` (loaded with this process's code), or InputError."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise InputError([Problem(f"cannot load model {uri}: {str(exc).splitlines()[0]}",
                                  "pass a registered model, e.g. models:/lstm-forecaster@champion")]) from exc
