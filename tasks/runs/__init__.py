"""Runs of many fits: a sweep's search space and record, a backtest's folds and scores."""
