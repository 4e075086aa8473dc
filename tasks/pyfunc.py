"""Where models registered before tasks/ had subpackages find their code: the entry file logged with
each of them runs `from tasks.pyfunc import LSTMForecaster`, and in this process `tasks` is this package,
not the model's copy. tests/flows/test_serving.py loads and serves such a model."""

from tasks.registry.pyfunc import LSTMForecaster

__all__ = ["LSTMForecaster"]
