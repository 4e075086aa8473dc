"""The logged model: the pyfunc forecaster (Keras model, spec and this package's code), and loading it back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from tasks.errors import InputError, Problem


CODE_DIR = Path(__file__).resolve().parents[1]  # tasks/, shipped inside the model so it loads anywhere


def log_model(run_id: str, keras_model, spec: dict, input_example: pd.DataFrame, output_example: pd.DataFrame) -> str:
    """Log the pyfunc forecaster (Keras model + spec + this package's code); returns its model URI."""
    import keras
    import numpy as np
    import pandera
    import tensorflow as tf
    from mlflow.models import infer_signature

    from tasks.pyfunc import LSTMForecaster

    with tempfile.TemporaryDirectory() as tmp:
        model_path, spec_path = Path(tmp, "model.keras"), Path(tmp, "spec.json")
        keras_model.save(model_path)
        spec_path.write_text(json.dumps(spec, indent=2))
        info = mlflow.models.Model.log(
            artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
            python_model=LSTMForecaster(),
            artifacts={"keras_model": str(model_path), "spec": str(spec_path)},
            code_paths=[str(CODE_DIR)],
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"tensorflow-cpu=={tf.__version__}",
                              f"keras=={keras.__version__}", f"pandas=={pd.__version__}",
                              f"numpy=={np.__version__}", f"pandera=={pandera.__version__}"],
        )
    return info.model_uri


def load_pyfunc(uri: str):
    """The logged pyfunc at `uri` (loaded with this process's code), or InputError."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise InputError([Problem(f"cannot load model {uri}: {str(exc).splitlines()[0]}",
                                  "pass a registered model, e.g. models:/lstm-forecaster@champion")]) from exc
