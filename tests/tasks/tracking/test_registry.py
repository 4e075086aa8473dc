"""The registry's audit trail and lock names, as plain functions (tests/flows/test_registry_load.py runs them
against real stores and processes)."""

import pytest
from filelock import FileLock, Timeout
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.tracking.locks import TEMPORARY_API, limit_name, lock_path, registry_lock
from tasks.tracking.registry import DROP, ROLLBACK, SET, Change, alias_trail


def change(seq: int, action: str, version: str | None, previous: str | None, alias: str = "champion") -> Change:
    return Change(seq, alias, action, version, previous, f"2026-01-01T00:00:{seq:02d}+00:00", "me@here", "test")


def test_each_rollback_undoes_one_change_and_never_cycles():
    promotions = [change(1, SET, "1", None), change(2, SET, "2", "1"), change(3, SET, "3", "2")]
    assert alias_trail(promotions, "champion") == ["1", "2", "3"]
    once = [*promotions, change(4, ROLLBACK, "2", "3")]
    assert alias_trail(once, "champion") == ["1", "2"]
    twice = [*once, change(5, ROLLBACK, "1", "2")]
    assert alias_trail(twice, "champion") == ["1"]  # a third rollback has nowhere to go


def test_a_forced_promotion_after_a_rollback_is_one_more_change():
    changes = [change(1, SET, "1", None), change(2, SET, "2", "1"), change(3, ROLLBACK, "1", "2"),
               change(4, SET, "3", "1")]
    assert alias_trail(changes, "champion") == ["1", "3"]


def test_the_holder_from_before_the_history_is_the_first_step_and_other_aliases_are_apart():
    changes = [change(1, SET, "5", "4"), change(2, SET, "6", None, alias="challenger"),
               change(3, DROP, None, "6", alias="challenger")]
    assert alias_trail(changes, "champion") == ["4", "5"]
    assert alias_trail(changes, "challenger") == []


def test_lock_names():
    assert limit_name("team/model 1") == "mlflow-registry-team-model-1"
    assert lock_path("m", "sqlite:////data/store/mlflow.db").as_posix() == "/data/store/mlflow.db.registry-m.lock"
    server = lock_path("m", "http://tracking:5000")
    assert server.name.startswith("lstm-pipeline-registry-") and server != lock_path("m", "http://other:5000")


def test_a_command_with_its_own_temporary_prefect_server_takes_the_file_lock(monkeypatch):
    """A global concurrency limit on a server that lives for one command serializes nothing: two local
    `train` commands, each with its own temporary server, would change the registry at the same time."""
    url = "http://127.0.0.1:1/api"  # never contacted: the file lock is taken without asking the server
    monkeypatch.setenv(TEMPORARY_API, url)
    with temporary_settings({PREFECT_API_URL: url}), registry_lock("temp-server-model"):
        with pytest.raises(Timeout):
            FileLock(lock_path("temp-server-model"), timeout=0).acquire()


def test_an_audit_record_names_an_account_only_of_a_tracking_server(monkeypatch):
    import json

    import mlflow

    from tasks.tracking.registry import account

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    before = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri("sqlite:///local.db")
        assert account() is None  # a local store: no server took the change under an account
        mlflow.set_tracking_uri("https://tracking.example:5000")
        assert account() == "alice"
    finally:
        mlflow.set_tracking_uri(before)
    old = {"seq": 1, "alias": "champion", "action": SET, "version": "1", "previous": None, "at": "t", "by": "me@here",
           "reason": "r"}  # a record written before accounts
    assert Change(**json.loads(json.dumps(old))).account is None
