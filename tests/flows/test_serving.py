"""`mlflow models serve` on the champion answers /invocations exactly as the pyfunc's predict does."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


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


@pytest.fixture
def served_champion(champion_model, tmp_path):
    """The real server process on the champion alias; stopped (with its workers) whatever the test does."""
    settings, _, _ = champion_model
    uri, port, log = f"models:/{settings.registry.model_name}@champion", free_port(), tmp_path / "serve.log"
    venv_bin = Path(sys.executable).parent
    command = [str(venv_bin / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
               "-p", str(port), "--host", "127.0.0.1"]
    # MLflow starts `uvicorn` by name, so the environment's bin/ must be on PATH, as in an activated venv.
    # MLFLOW_TRACKING_URI is inherited: the session's test store, where the alias is resolved.
    env = os.environ | {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as out:
        # Its own process group, so that stopping it also stops the workers it starts.
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_ping(f"http://127.0.0.1:{port}", server, log)
        yield uri, f"http://127.0.0.1:{port}"
    finally:
        stop(server)


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
    _, data, _ = champion_model
    latest = pd.read_excel(data, engine="calamine").tail(30)[["date", "OT"]]
    body = {"dataframe_split": json.loads(latest.to_json(orient="split", index=False, date_format="iso"))}
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        served = pd.DataFrame(json.loads(answer.read())["predictions"])

    expected = mlflow.pyfunc.load_model(uri).predict(latest)
    assert list(served.columns) == ["timestamp", "forecast", "lower", "upper"] and len(served) == 6
    assert (pd.to_datetime(served["timestamp"]) == expected["timestamp"]).all()
    pd.testing.assert_frame_equal(served.drop(columns="timestamp"), expected.drop(columns="timestamp"), rtol=1e-6)
