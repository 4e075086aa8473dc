"""Prefect's temporary server for one command (services/tempserver.py): started for real, used by a real
flow, and gone when its command ends, whether it returns, is killed with SIGKILL or is ended by
`timeout`. The kill tests run `lstm-pipeline train` without PREFECT_API_URL, as a user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from tasks.tracking.locks import TEMPORARY_API

BIN = Path(sys.executable).parent
TINY = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
        "window.horizon=6", "model.layers=1", "model.units=4", "train.patience=0",
        "tracking.experiment=tempserver", "registry.model_name=tempserver-model"]


def _own_env(tmp_path: Path) -> dict[str, str]:
    """No Prefect server configured, so that the command starts its own; a store of this test's."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return env | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYTHONWARNINGS": "ignore"}


class ServerWatch:
    """The temporary Prefect server processes below `root` (found by their command line), seen while it runs."""

    def __init__(self, root: subprocess.Popen):
        self.root, self.servers, self.done = root, {}, threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.done.is_set() and self.root.poll() is None:
            try:
                for p in psutil.Process(self.root.pid).children(recursive=True):
                    command = " ".join(p.cmdline())
                    # Ours, or Prefect's own temporary server (what the command started before issue 14).
                    if "services.tempserver" in command or "prefect.server.api.server:create_app" in command:
                        self.servers.setdefault(p.pid, p)
            except psutil.Error:
                pass
            time.sleep(0.1)

    def wait_for_server(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.servers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.servers, "the command started no temporary server"

    def alive_after(self, seconds: float) -> list[int]:
        """The servers still running `seconds` after the command ended (zombies count as ended)."""
        self.done.set()
        deadline = time.monotonic() + seconds
        while True:
            alive = [pid for pid, p in self.servers.items()
                     if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def _train(valid_workbook, tmp_path, *sets: str, prefix: tuple = ()) -> tuple[subprocess.Popen, ServerWatch, object]:
    out = tempfile.TemporaryFile("w+")
    argv = [*prefix, str(BIN / "lstm-pipeline"), "train", str(valid_workbook),
            *(a for s in [*TINY, *sets] for a in ("--set", s))]
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_own_env(tmp_path), cwd=tmp_path)
    return proc, ServerWatch(proc), out


def _wait_for(out, text: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        out.seek(0)
        if text in out.read():
            return
        time.sleep(0.3)
    out.seek(0)
    raise AssertionError(f"{text!r} not seen in the command's output:\n{out.read()[-3000:]}")


@pytest.mark.slow
def test_a_training_killed_with_sigkill_leaves_no_server(valid_workbook, tmp_path):
    proc, watch, out = _train(valid_workbook, tmp_path, "train.epochs=500")
    _wait_for(out, "epoch 1/500", proc)  # the server is up and serving the flow
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert watch.alive_after(15) == [], "the temporary server outlived its SIGKILLed command"


@pytest.mark.slow
def test_a_training_ended_by_timeout_leaves_no_server(valid_workbook, tmp_path):
    # `timeout` sends SIGTERM, which ends Python at once: no finally blocks, no atexit handlers.
    # Epochs enough for any machine to be still training when the timeout comes (500 took < 60 s on one).
    proc, watch, out = _train(valid_workbook, tmp_path, "train.epochs=100000", prefix=("timeout", "60"))
    watch.wait_for_server()
    assert proc.wait(240) == 124  # timed out, not finished
    assert watch.alive_after(15) == [], "the temporary server outlived its command ended by timeout"


@pytest.mark.slow
def test_a_first_run_prints_no_library_noise_and_leaves_no_server(valid_workbook, tmp_path):
    """The first `train` on a new machine's state (new MLflow store): one server, no traceback, none of
    the notices services/console.py names, its summary lines; and nothing left running after it returns."""
    proc, watch, out = _train(valid_workbook, tmp_path, "train.epochs=2")
    assert proc.wait(600) == 0
    out.seek(0)
    text = out.read()
    assert watch.alive_after(0) == [], "the temporary server outlived its command"
    assert len(watch.servers) == 1
    for noise in ("Traceback", "Warning:", "absl::InitializeLog", "oneDNN", "ran out of data", "retracing",
                  "interpreted in multiple ways", "Downloading artifacts", "Error logging to API", "View at http"):
        assert noise not in text, f"{noise!r} in the console:\n{text}"
    assert "run_id: " in text and "\nlstm: " in text


@pytest.mark.slow
def test_a_flow_runs_on_the_temporary_server_and_it_stops():
    """The internals this module relies on (Prefect's `create_app(ephemeral=...)` and
    `refresh_global_settings_context`): a flow's client must talk to the server started here. In a
    process of its own: the session's Prefect test server would override the settings in this one."""
    code = "\n".join([
        "import os",
        "from prefect import flow",
        "from prefect.client.orchestration import get_client",
        "from prefect.settings import PREFECT_API_URL",
        "from services.tempserver import TemporaryServer",
        "@flow",
        "def where() -> str:",
        "    with get_client(sync_client=True) as client:",
        "        return str(client.api_url)",
        "server = TemporaryServer()",
        "server.connect()",
        "url = os.environ['PREFECT_API_URL']",
        "print('settings', PREFECT_API_URL.value() == url)",
        "print('flow', where().rstrip('/') == url)",
        "server.stop()",
        "print('stopped', server.process.returncode is not None)",
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_URL")}
    # The flow's log lines would be sent at the process's exit, to the server stopped before it.
    env |= {"PREFECT_LOGGING_TO_API_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stdout.splitlines() if line.split()[0] in ("settings", "flow", "stopped")] == \
        ["settings True", "flow True", "stopped True"]


@pytest.mark.slow
def test_a_command_marks_its_own_server_as_temporary_for_the_registry_lock():
    """tasks/tracking/locks.py takes the file lock when the Prefect API is the command's own server, which
    it knows by this mark; without it, two local commands would each hold a limit on their own server."""
    code = ("import os; from services import tempserver; connect = tempserver.start(); "
            "print('marked', os.environ.get(tempserver.TEMPORARY_API) == os.environ['PREFECT_API_URL'] is not None)")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", TEMPORARY_API)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "marked True" in done.stdout
