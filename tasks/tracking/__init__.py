"""Every MLflow call of the product, by job: `store` (which tracking store, experiments), `runs` (a run and
what it logs), `models` (the logged pyfunc), `registry` (versions, aliases and their audit trail) and
`locks` (one registry change at a time per model).

Nothing happens at import: the store is chosen when `store.connect` runs. Calls name their run
explicitly (run_id) rather than relying on MLflow's thread-local active run, because Prefect may run tasks
on worker threads, and sweeps and backtests on other processes.
"""
