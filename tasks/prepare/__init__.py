"""Stages 3-5, preparing a series for the model: chronological split, train-split scaler, windows."""
