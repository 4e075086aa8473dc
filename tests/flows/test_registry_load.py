"""The registry under load, for real: eight `lstm-pipeline train` processes at once on one SQLite store,
then eight forced promotions at once (serialized by the Prefect global concurrency limit, and by the file
lock beside the store when no Prefect server is set). Each prints its wall time (BENCHMARKS.md)."""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

import pytest
from processes import Command, Train, store_client

from tasks.registry.promote import CHALLENGER, CHAMPION, KEPT, NOT_COMPARED, PROMOTED
from tasks.tracking import registry, store

pytestmark = [pytest.mark.slow, pytest.mark.integration]

AT_ONCE = 8
NAME = "load-model"


@contextmanager
def connected(uri: str):
    """This process's MLflow calls go to `uri` inside the block, and back to the session's store after."""
    before = os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = uri
    store.connect()
    try:
        yield
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = before
        store.connect()


def wait_all(commands: list[Command], timeout: float) -> list[tuple[int, str, str]]:
    results = [command.wait(timeout) for command in commands]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "database is locked" not in out + err
    return results


def assert_audit_matches_aliases(name: str) -> list[registry.Change]:
    """Every change is recorded once, in order (one writer at a time: sequence numbers 1..N, each record
    starting from the version the one before it left), and the history ends where the aliases are."""
    changes = registry.history(name)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    for alias in (CHAMPION, CHALLENGER):
        mine = [c for c in changes if c.alias == alias]
        assert [c.previous for c in mine] == [None, *(c.version for c in mine[:-1])], alias
        held = registry.alias_run(name, alias)
        assert (held[0] if held else None) == (mine[-1].version if mine else None), alias
    return changes


@pytest.fixture(scope="module")
def trained_at_once(cli_env, valid_workbook, tmp_path_factory):
    """The store (URI), the environment and the outputs of AT_ONCE trainings started together."""
    home = tmp_path_factory.mktemp("load")
    uri = f"sqlite:///{home}/mlflow.db"
    env = cli_env | {"MLFLOW_TRACKING_URI": uri}
    assignments = ["train.epochs=1", "tracking.experiment=load", f"registry.model_name={NAME}",
                   "promotion.require_beat_repeat=false"]
    started = time.monotonic()
    trainings = [Train(valid_workbook, *assignments, env=env, cwd=home) for _ in range(AT_ONCE)]
    results = wait_all(trainings, timeout=3000)
    print(f"\n{AT_ONCE} trainings at once on one SQLite store: {time.monotonic() - started:.0f} s wall")
    return uri, env, results


def test_eight_trainings_at_once_are_all_recorded_and_gated_one_at_a_time(trained_at_once):
    uri, _, results = trained_at_once
    printed = {line.split()[1] for _, out, _ in results for line in out.splitlines() if line.startswith("run_id:")}
    client = store_client(uri)
    runs = client.search_runs([client.get_experiment_by_name("load").experiment_id])
    assert len(printed) == AT_ONCE and {r.info.run_id for r in runs} == printed
    assert all(r.info.status == "FINISHED" for r in runs)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, AT_ONCE + 1))
    assert {v.run_id for v in versions} == printed
    decisions = {str(v.version): v.tags.get("promotion_decision") for v in versions}
    assert set(decisions.values()) <= {PROMOTED, KEPT, NOT_COMPARED} and None not in decisions.values()
    with connected(uri):
        changes = assert_audit_matches_aliases(NAME)
        champion = registry.alias_run(NAME, CHAMPION)[0]
    crowned = [c.version for c in changes if c.alias == CHAMPION]
    assert sorted(crowned) == sorted(v for v, d in decisions.items() if d == PROMOTED) and crowned[-1] == champion
    # Every gate met the champion of its moment: the one crowned just before it, in the audit's order.
    for change in changes:
        if change.alias == CHAMPION:
            assert client.get_model_version(NAME, change.version).tags["gate_champion_version"] == (change.previous or "none")


@pytest.mark.parametrize("lock", ["prefect-limit", "file-lock"])
def test_eight_forced_promotions_at_once_leave_one_champion_and_every_change_recorded(trained_at_once, lock):
    uri, env, _ = trained_at_once
    if lock == "file-lock":
        env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}

    def promote(version: int) -> Command:
        return Command("promote", "--version", str(version), "--force", "--reason", f"load {lock}",
                       "--set", f"registry.model_name={NAME}", env=env)

    started = time.monotonic()
    wait_all([promote(AT_ONCE)], timeout=900)  # alone, for comparison: a process's own start-up and work
    alone = time.monotonic() - started
    with connected(uri):
        before = len(registry.history(NAME))
    started = time.monotonic()
    results = wait_all([promote(v) for v in range(1, AT_ONCE + 1)], timeout=900)
    print(f"\n{AT_ONCE} forced promotions at once ({lock}): {time.monotonic() - started:.0f} s wall "
          f"(one alone: {alone:.0f} s)")
    said = [re.search(r"champion is version (\d+) \(was (\w+)\)", out).groups() for _, out, _ in results]
    with connected(uri):
        changes = assert_audit_matches_aliases(NAME)[before:]
    # One record per promotion that changed the champion, each from the version the process saw replaced.
    assert sorted((c.version, c.previous) for c in changes) == sorted((v, was) for v, was in said if v != was)
    assert all(c.alias == CHAMPION and c.reason == f"forced: load {lock}" for c in changes)
