"""What runs beside the flows: the local and team stack (Prefect and MLflow servers, PostgreSQL, worker,
reaper, credentials, accounts, TLS), a command's temporary Prefect server, the Dask cluster of a fan-out, and what the
console shows of the libraries' notices."""
