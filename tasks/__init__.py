"""The pipeline's logic, one subpackage per part: `data` (read, clean, validate), `prepare` (split,
normalize, window), `model` (build, train, one fit, evaluate), `report` (figures, summaries, tables),
`registry` (the registered model, promotion, forecasting with it), `runs` (sweeps and backtests) and
`tracking` (every MLflow call). `settings` and `errors` are what every part shares.

Each stage is a plain function, plus a thin Prefect task where a flow calls it."""
