"""Shared fixtures: one Prefect test server, one MLflow store and one workbook catalogue per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> dict[str, Path]:
    """Good and malformed workbooks made from a real ETTh1 excerpt (tests/fixtures/make_workbooks.py)."""
    from make_workbooks import build_catalogue

    return build_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="session")
def valid_workbook(catalogue) -> Path:
    return catalogue["valid"]


REPO = Path(__file__).resolve().parents[1]


def worktree_files() -> set[str]:
    """`git status` of the repository, ignored files included, less Python's and pytest's caches and the
    virtual environments (Prefect's server unpacks its UI into site-packages the first time it starts)."""
    import subprocess

    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--",
                          ".", ":!.venv", ":!.venv-peer"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if "__pycache__" not in line and ".pytest_cache" not in line}


@pytest.fixture(scope="session", autouse=True)
def worktree_before() -> set[str] | None:
    """The repository's state before the first test (None without git): tests/test_worktree.py, the last
    module, compares with it."""
    import shutil

    return worktree_files() if shutil.which("git") and (REPO / ".git").exists() else None


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """Every test's MLflow calls go to a throwaway SQLite store, never to ./mlruns."""
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    yield store


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server and database for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def cli_env(prefect_server) -> dict[str, str]:
    """Environment for `lstm-pipeline` subprocesses: the session's MLflow store (inherited) and Prefect
    test server, so that each command does not start a Prefect server of its own (~10 s)."""
    from prefect.settings import PREFECT_API_URL

    return os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONWARNINGS": "ignore"}


@pytest.fixture
def tiny_settings():
    """Small enough to train in seconds on the 720-row fixture."""
    from tasks.settings import parse_settings

    return parse_settings({
        "data": {"target": "OT"},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "window": {"input_length": 24, "horizon": 6},
        "model": {"layers": 2, "units": 8},
        "train": {"epochs": 2, "batch_size": 32, "patience": 0},
    })


@pytest.fixture(scope="session")
def champion_model(prefect_server, valid_workbook):
    """(settings, data, TrainResult) of a tiny model trained once; the gate at the end of training made
    its version 1 the champion. Tests read it; none moves its aliases."""
    from flows.train import train_flow
    from tasks.settings import parse_settings

    settings = parse_settings({
        "data": {"target": "OT"}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
        "train": {"epochs": 2, "batch_size": 32, "patience": 0, "learning_rate": 0.01},
        "tracking": {"experiment": "champion-test"}, "registry": {"model_name": "champion-test-model"},
        # With no champion yet, any finite challenger passes, whether or not 2 epochs beat Repeat.
        "promotion": {"require_beat_repeat": False},
    })
    return settings, valid_workbook, train_flow(str(valid_workbook), settings)
