"""Serving and loading the registered model as users do: `lstm-pipeline serve` from a plain shell, a process
without Prefect, and a fresh environment built from the model's own requirements; each answers exactly as
the in-process pyfunc does."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ping(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"no answer on {url}/ping within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def serving(command: list[str], env: dict, log: Path, port: int, timeout: float = 180):
    """The real server process until the block ends; stopped (with its workers) whatever the test does."""
    with open(log, "w") as out:
        # Its own process group, so that stopping it also stops the workers it starts.
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_ping(f"http://127.0.0.1:{port}", server, log, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


def without_venv_on_path() -> dict[str, str]:
    """This environment as a plain shell has it: the venv not activated (its bin/ not on PATH)."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p or ".").resolve() != BIN.resolve()]
    return os.environ | {"PATH": os.pathsep.join(path)}


@pytest.fixture
def served_champion(champion_model, tmp_path):
    """`lstm-pipeline serve` on the champion alias, started as a user would without activating the venv.
    MLFLOW_TRACKING_URI is inherited: the session's test store, where the alias is resolved."""
    settings, _, _ = champion_model
    uri, port = f"models:/{settings.registry.model_name}@champion", free_port()
    command = [str(BIN / "lstm-pipeline"), "serve", "--model", uri, "--port", str(port)]
    with serving(command, without_venv_on_path(), tmp_path / "serve.log", port) as url:
        yield uri, url


def latest_rows(data: Path) -> pd.DataFrame:
    return pd.read_excel(data, engine="calamine").tail(30)[["date", "OT"]]


def invoke(url: str, frame: pd.DataFrame) -> pd.DataFrame:
    """POST /invocations with `frame` as MLflow's `dataframe_split`; the predictions as a frame."""
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False, date_format="iso"))}
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return pd.DataFrame(json.loads(answer.read())["predictions"])


def assert_same_forecast(served: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(served.columns) == ["timestamp", "forecast", "lower", "upper"] and len(served) == 6
    assert (pd.to_datetime(served["timestamp"]) == expected["timestamp"]).all()
    pd.testing.assert_frame_equal(served.drop(columns="timestamp"), expected.drop(columns="timestamp"), rtol=1e-6)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not exited 30 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            pass  # the whole group is gone already
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def test_served_forecast_equals_pyfunc_predict(served_champion, champion_model):
    uri, url = served_champion
    latest = latest_rows(champion_model[1])
    assert_same_forecast(invoke(url, latest), mlflow.pyfunc.load_model(uri).predict(latest))


def test_the_model_loads_where_prefect_cannot_be_imported(champion_model, tmp_path):
    """The pyfunc's code imports no Prefect: loaded by a process outside the repository (its own copy of
    `tasks/` comes with the model) in which importing prefect fails."""
    settings, data, result = champion_model
    uri = f"models:/{settings.registry.model_name}/{result.version}"
    latest = latest_rows(data)
    latest.to_json(tmp_path / "input.json", orient="split", index=False, date_format="iso")
    script = (
        "import sys; sys.modules['prefect'] = None\n"
        "import mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({uri!r})\n"
        "import tasks; assert '/code/tasks/' in tasks.__file__.replace(chr(92), '/'), tasks.__file__\n"
        "frame = pd.read_json('input.json', orient='split', convert_dates=['date'])\n"
        "model.predict(frame).to_json('output.json', orient='split', index=False, date_format='iso')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    served = pd.read_json(tmp_path / "output.json", orient="split", convert_dates=["timestamp"])
    assert_same_forecast(served, mlflow.pyfunc.load_model(uri).predict(latest))


def test_the_registered_model_serves_from_an_environment_built_from_its_own_requirements(champion_model, tmp_path):
    """`mlflow models serve --env-manager virtualenv`: a new virtualenv (Python from pyenv) with only the
    model's requirements.txt installed; installs take minutes. (`mlflow models predict` would build the same
    environment but insists on installing its own copy of Python, which needs python.org.)"""
    settings, data, result = champion_model
    uri, port = f"models:/{settings.registry.model_name}/{result.version}", free_port()
    command = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "virtualenv", "--port", str(port),
               "--host", "127.0.0.1"]
    env = without_venv_on_path() | {"MLFLOW_ENV_ROOT": str(tmp_path / "envs")}
    env.pop("PYTHONPATH", None)
    with serving(command, env, tmp_path / "serve.log", port, timeout=1800) as url:
        latest = latest_rows(data)
        assert_same_forecast(invoke(url, latest), mlflow.pyfunc.load_model(uri).predict(latest))
