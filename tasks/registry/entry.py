"""The logged model's code, as MLflow's models-from-code loads it: MLflow runs this file (nothing imports it),
with the model's copy of `tasks/` on the path, and serves the object given to `set_model`."""

from mlflow.models import set_model

from tasks.registry.pyfunc import LSTMForecaster

set_model(LSTMForecaster())
