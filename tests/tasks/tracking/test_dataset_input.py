"""The training data as a dataset input when many runs log the same workbook at once."""

import threading

import pandas as pd
from mlflow import MlflowClient

from tasks.tracking.runs import log_dataset


def test_runs_that_log_the_same_new_dataset_at_once_all_keep_it(tmp_path):
    # MLflow's store looks for the dataset, then inserts it: two runs of one experiment that log a new
    # dataset at the same moment both insert, and one failed with "UNIQUE constraint failed: datasets..."
    # (a sweep's trial lost this way in CI). Eight runs of a new experiment race here, in twelve rounds.
    client = MlflowClient()
    series = pd.DataFrame({"OT": [1.0, 2.0, 3.0]}, index=pd.date_range("2016-07-01", periods=3, freq="h", name="date"))
    source = str(tmp_path / "book.xlsx")
    for round_ in range(12):
        experiment = client.create_experiment(f"dataset-race-{tmp_path.name}-{round_}")
        runs = [client.create_run(experiment).info.run_id for _ in range(8)]
        start, errors = threading.Barrier(len(runs)), []

        def log(run_id: str) -> None:
            start.wait()
            try:
                log_dataset(run_id, series, source, f"digest{round_}".ljust(36, "0"), "OT")
            except Exception as error:  # noqa: BLE001 - the test reports every failure
                errors.append(repr(error)[:200])

        threads = [threading.Thread(target=log, args=(run_id,)) for run_id in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert all(len(client.get_run(run_id).inputs.dataset_inputs) == 1 for run_id in runs)
