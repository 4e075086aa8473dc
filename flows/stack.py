"""The local stack for scheduled retraining: a Prefect server, an MLflow tracking server, a process work
pool with a worker, and the deployments of prefect.yaml, all on 127.0.0.1.

State (ports, process ids) and logs live in `.stack/`; `down` stops exactly the processes `up` started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.errors import InputError, Problem

POOL = "local-process"  # the work pool named in prefect.yaml
HOST = "127.0.0.1"


@dataclass
class Stack:
    home: Path = Path(".stack")  # state.json, logs, the Prefect server's database
    prefect_port: int = 4200
    mlflow_port: int = 5000
    mlruns: Path = Path("mlruns")  # the MLflow server's SQLite store and artifacts
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def prefect_api(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    def env(self) -> dict[str, str]:
        """What makes a process use this stack's servers."""
        return {"PREFECT_API_URL": self.prefect_api, "MLFLOW_TRACKING_URI": self.mlflow_uri}

    def save(self) -> None:
        state = asdict(self) | {"home": str(self.home), "mlruns": str(self.mlruns)}
        (self.home / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack | None:
        path = Path(home) / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        return cls(Path(state["home"]), state["prefect_port"], state["mlflow_port"], Path(state["mlruns"]), state["pids"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (exited, not yet reaped) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _start(stack: Stack, name: str, args: list[str], env: dict[str, str]) -> None:
    log = open(stack.home / f"{name}.log", "ab")
    # Own session: `down` can signal the process and all its children as one group.
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    stack.pids[name] = process.pid


def _wait(stack: Stack, name: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        if not _alive(stack.pids[name]):
            break
        time.sleep(0.5)
    tail = (stack.home / f"{name}.log").read_text(errors="replace")[-2000:]
    down(stack.home)
    raise RuntimeError(f"{name} did not come up at {url}; its log ends:\n{tail}")


def base_env(stack: Stack) -> dict[str, str]:
    return os.environ | stack.env() | {
        "PREFECT_HOME": str((stack.home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A schedule removed from prefect.yaml is removed from the server on redeploy.
        "PREFECT_DEPLOYMENTS_CLEAR_SCHEDULES_ON_EMPTY": "true",
    }


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def deploy(stack: Stack, prefect_file: Path = Path("prefect.yaml"), project: Path = Path(".")) -> str:
    """(Re)apply every deployment of `prefect_file` to the stack's server; returns Prefect's output.

    Entry points and the worker's working directory are the `project` folder."""
    done = subprocess.run(_prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(Path(prefect_file).resolve())),
                          env=base_env(stack), capture_output=True, text=True, timeout=300, cwd=project)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def up(stack: Stack, prefect_file: Path = Path("prefect.yaml"), project: Path = Path(".")) -> Stack:
    """Start everything that is not running yet, then deploy."""
    running = Stack.load(stack.home)
    if running and all(_alive(p) for p in running.pids.values()):
        raise InputError([Problem(f"the stack is already up ({running.prefect_api}, {running.mlflow_uri})",
                                  "run `lstm-pipeline stack down` first")])
    stack.home.mkdir(parents=True, exist_ok=True)
    stack.mlruns.mkdir(parents=True, exist_ok=True)
    env = base_env(stack)
    store = stack.mlruns.resolve()
    _start(stack, "prefect-server", _prefect("server", "start", "--host", HOST, "--port", str(stack.prefect_port)), env)
    _start(stack, "mlflow-server", [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(stack.mlflow_port),
                                    "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                                    "--artifacts-destination", str(store / "artifacts"), "--workers", "1"], env)
    stack.save()
    _wait(stack, "prefect-server", f"{stack.prefect_api}/health")
    _wait(stack, "mlflow-server", f"{stack.mlflow_uri}/health")
    subprocess.run(_prefect("work-pool", "create", POOL, "--type", "process", "--overwrite"),
                   env=env, check=True, capture_output=True, timeout=120)
    _start(stack, "worker", _prefect("worker", "start", "--pool", POOL, "--type", "process"), env)
    stack.save()
    deploy(stack, prefect_file, project)
    return stack


def status(home: Path = Path(".stack")) -> list[tuple[str, int, bool]]:
    """(process, pid, alive) for every process the stack started; empty when it is down."""
    stack = Stack.load(home)
    return [(name, pid, _alive(pid)) for name, pid in stack.pids.items()] if stack else []


def down(home: Path = Path(".stack"), grace: float = 15) -> list[str]:
    """Stop the processes `up` started (their whole process groups); returns their names."""
    stack = Stack.load(home)
    if stack is None:
        return []
    for name in ("worker", "mlflow-server", "prefect-server"):  # consumers first
        pid = stack.pids.get(name)
        if pid is None or not _alive(pid):
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    (Path(home) / "state.json").unlink(missing_ok=True)
    return list(stack.pids)


def active_env(home: Path = Path(".stack")) -> dict[str, str]:
    """The stack's server addresses if it is up, so commands run against it; {} otherwise."""
    stack = Stack.load(home)
    if stack and stack.pids and all(_alive(p) for p in stack.pids.values()):
        return stack.env()
    return {}
