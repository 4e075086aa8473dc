"""Stages 6-7, the model: the stacked-LSTM network, its training, one whole fit, evaluation and intervals."""
