"""Serving and loading the registered model as users do: `lstm-pipeline serve` from a plain shell, a process
without Prefect, and a fresh environment built from the model's own requirements; each answers exactly as
the in-process pyfunc does."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


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


BEFORE_LAYOUT = "6c3454a"  # the last commit whose tasks/ was one flat folder (issue 19 gave it subpackages)


@pytest.fixture(scope="module")
def model_of_the_flat_layout(valid_workbook, cli_env, tmp_path_factory) -> str:
    """A model registered by `lstm-pipeline train` as the code stood before tasks/ had subpackages: that
    code (from git) runs the command, so the model's entry file imports `tasks.pyfunc` and its copy of
    the code has the flat layout."""
    old = tmp_path_factory.mktemp("flat-layout")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_LAYOUT, "tasks", "flows"],
                             capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(old, filter="data")
    name = "flat-layout-model"
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train", str(valid_workbook), "--target", "OT",
         "--set", "split.train=0.6", "--set", "split.val=0.2", "--set", "split.test=0.2",
         "--set", "window.input_length=24", "--set", "window.horizon=6", "--set", "model.layers=1",
         "--set", "train.epochs=1", "--set", f"registry.model_name={name}", "--set", "tracking.experiment=flat-layout"],
        cwd=old, env=cli_env | {"PYTHONPATH": str(old)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return f"models:/{name}/1"


def test_a_model_registered_before_the_layout_forecasts_and_serves(model_of_the_flat_layout, valid_workbook,
                                                                   tmp_path):
    """Loaded here (this package is `tasks`: tasks/pyfunc.py stands for the old module) and served by
    `lstm-pipeline serve` (its own copy of the code first on the path), it forecasts alike."""
    from tasks.tracking import store

    store.connect()
    code = Path(mlflow.artifacts.download_artifacts(model_of_the_flat_layout, dst_path=str(tmp_path))) / "code" / "tasks"
    assert (code / "pyfunc_entry.py").exists() and not (code / "registry").exists()  # the flat layout's model
    model = mlflow.pyfunc.load_model(model_of_the_flat_layout)
    latest = latest_rows(valid_workbook)
    expected = model.predict(latest)
    port = free_port()
    command = [str(BIN / "lstm-pipeline"), "serve", "--model", model_of_the_flat_layout, "--port", str(port)]
    with serving(command, without_venv_on_path(), tmp_path / "serve.log", port) as url:
        assert_same_forecast(invoke(url, latest), expected)
