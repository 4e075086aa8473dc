"""The stack for scheduled retraining: a Prefect server, an MLflow tracking server, a process work pool
with a worker, the deployments of prefect.yaml, and the reaper of dead runs (services/reaper.py).

One user: everything on 127.0.0.1, MLflow on SQLite under mlruns/, Prefect on SQLite in `.stack/`.
A team: both servers on PostgreSQL (`db="postgresql"`: the stack's own cluster in `.stack/postgres/`, or
an existing server), and, to be reached from other machines, a non-loopback `host`, which needs `auth`:
MLflow's basic-auth app with one account per person (services/accounts.py) and Prefect's auth string,
with secrets generated into `.stack/` (0600).

State (ports, process ids, settings) and logs live in `.stack/`; `down` stops exactly what `up` started.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services import accounts, credentials, postgres, tls
from tasks.errors import InputError, Problem, did_not_start

POOL = "local-process"  # the work pool named in prefect.yaml
HOST = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONSUMERS = ("worker", "reaper")  # stopped first; they talk to the servers


@dataclass
class Stack:
    home: Path = Path(".stack")  # state.json, logs, secrets, the Prefect database or the PostgreSQL cluster
    prefect_port: int = 4200
    mlflow_port: int = 5000
    mlruns: Path = Path("mlruns")  # the MLflow server's artifacts (and its SQLite store)
    pids: dict[str, int] = field(default_factory=dict)
    host: str = HOST  # the interface both servers listen on
    auth: bool = False  # MLflow basic auth and Prefect's auth string
    tls: bool = False  # both servers on HTTPS (services/tls.py)
    cert: str | None = None  # the certificate and key the user gave (None: made for this host in home/tls)
    key: str | None = None
    insecure_off_host: bool = False  # a non-loopback host without TLS, asked for by name
    db: str = "sqlite"  # or "postgresql"
    db_port: int = 5433  # the stack's own PostgreSQL, on 127.0.0.1 (not used with an existing server)
    heartbeat: int = 60  # seconds between a flow run's heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY)
    # A flow run silent this long is marked Crashed. Above Prefect's own default heartbeat (180 s), so
    # that runs of clients which do not set the stack's frequency are not taken for dead.
    dead_after: int = 300

    @property
    def local_host(self) -> str:
        """Where processes on this machine reach the servers."""
        return HOST if self.host in ("0.0.0.0", "::") else self.host

    @property
    def public_host(self) -> str:
        """Where other machines reach the servers."""
        return socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def prefect_api(self) -> str:
        return f"{self.scheme}://{self.local_host}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"{self.scheme}://{self.local_host}:{self.mlflow_port}"

    @property
    def verify(self) -> str | bool:
        """What a client verifies the servers' certificate with (`requests`' and httpx's `verify`)."""
        return str(tls.trust(self.home).resolve()) if self.tls else True

    def env(self, host: str | None = None) -> dict[str, str]:
        """What makes a process anywhere use this stack's servers, reached at `host` (default: from this
        machine); with auth, MLflow's credentials are the person's own (services/accounts.py)."""
        host = host or self.local_host
        env = {"PREFECT_API_URL": f"{self.scheme}://{host}:{self.prefect_port}/api",
               "MLFLOW_TRACKING_URI": f"{self.scheme}://{host}:{self.mlflow_port}",
               "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.heartbeat)}
        if self.tls:  # the certificate MLflow's client (requests) and Prefect's (httpx, websockets) trust
            env |= {"MLFLOW_TRACKING_SERVER_CERT_PATH": self.verify, "PREFECT_API_SSL_CERT_FILE": self.verify}
        return env | (credentials.prefect_auth(credentials.load(self.home)) if self.auth else {})

    def own_env(self) -> dict[str, str]:
        """`env()` for the stack's own processes and commands run in its folder: with auth, as its own account."""
        return self.env() | (credentials.stack_account(credentials.load(self.home)) if self.auth else {})

    def save(self) -> None:
        state = asdict(self) | {"home": str(self.home), "mlruns": str(self.mlruns)}
        (self.home / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack | None:
        """The stack last started in `home` (its pids are empty once it is down), or None."""
        path = Path(home) / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        return cls(**state | {"home": Path(state["home"]), "mlruns": Path(state["mlruns"])})


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


def _healthy(url: str, verify: str | bool = True) -> bool:
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def _start(stack: Stack, name: str, args: list[str], env: dict[str, str]) -> None:
    log = open(stack.home / f"{name}.log", "ab")
    # Own session: `down` can signal the process and all its children as one group.
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    stack.pids[name] = process.pid


def _wait(stack: Stack, name: str, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(url, stack.verify):
            return
        if not _alive(stack.pids[name]):
            break
        time.sleep(0.5)
    log = stack.home / f"{name}.log"
    raise did_not_start(f"{name} did not come up at {url}", log.read_text(errors="replace"), f"see {log.resolve()}")


def base_env(stack: Stack) -> dict[str, str]:
    return os.environ | stack.own_env() | {
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
        raise did_not_start(f"prefect deploy of {prefect_file} failed", done.stderr or done.stdout,
                            "check the file (`prefect --no-prompt deploy --all` with the stack's client.env shows it all)")
    return done.stdout


def check(stack: Stack) -> None:
    """Refuse settings that would open the stack to other machines without authentication, or without
    TLS unless asked for by name."""
    if stack.host not in LOOPBACK and not stack.auth:
        raise InputError([Problem(f"--host {stack.host} lets other machines reach the stack, and it has no "
                                  "authentication", f"add --auth (or keep the default --host {HOST})")])
    if stack.host not in LOOPBACK and not (stack.tls or stack.insecure_off_host):
        raise InputError([Problem(f"--host {stack.host} lets other machines reach the stack over plain HTTP, where "
                                  "passwords cross the network readable", "add --tls (or --insecure-off-host to "
                                  "accept that on a network you trust)")])
    if stack.db not in ("sqlite", "postgresql"):
        raise InputError([Problem(f"--db {stack.db}: unknown database", "use sqlite or postgresql")])


def _stores(stack: Stack, secrets: dict[str, str]) -> dict[str, str]:
    """The database URLs: MLflow's tracking store and registry, MLflow's users, Prefect's (None: its
    SQLite default in PREFECT_HOME). The stack's own PostgreSQL is started here."""
    if stack.db == "sqlite":
        store = stack.mlruns.resolve()
        return {"mlflow": f"sqlite:///{store}/mlflow.db", "mlflow_auth": f"sqlite:///{stack.home.resolve()}/mlflow-auth.db",
                "prefect": None}
    server = secrets.get("db_url")
    if server is None:
        data = postgres.init_cluster(stack.home / "postgres", secrets["db_password"])
        stack.pids["postgres"] = postgres.start(data, stack.db_port, stack.home / "postgres.log")
        server = postgres.local_url(stack.db_port, secrets["db_password"])
    postgres.create_databases(server)
    return {"mlflow": postgres.database_url(server, "mlflow", driver="psycopg"),
            "mlflow_auth": postgres.database_url(server, "mlflow_auth", driver="psycopg"),
            "prefect": postgres.database_url(server, "prefect", driver="asyncpg")}


def _server_envs(stack: Stack, secrets: dict[str, str], stores: dict[str, str]) -> tuple[dict, dict]:
    """The environments of the Prefect and the MLflow server. Database URLs and secrets go through the
    environment or 0600 files, never the command line, which every local user can read."""
    env = base_env(stack)
    prefect = env | ({"PREFECT_API_DATABASE_CONNECTION_URL": stores["prefect"]} if stores["prefect"] else {})
    # Job execution off: MLflow 3's server otherwise starts a job runner and seven huey consumers for its GenAI
    # jobs (scorers, evaluation, prompt optimization), which the product never submits; with them the stack
    # took 13 processes, 2.3 GB and 85 s of CPU to start (BENCHMARKS.md, "Servers and workers that stay up").
    mlflow = env | {"MLFLOW_BACKEND_STORE_URI": stores["mlflow"], "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if stack.host not in LOOPBACK:
        from mlflow.server.security_utils import get_default_allowed_hosts

        # The UI, in a teammate's browser, calls the API at this machine's name; MLflow answers only Host
        # headers it knows (against DNS rebinding): loopback and private IPs by default, and this name.
        prefect["PREFECT_UI_API_URL"] = f"{stack.scheme}://{stack.public_host}:{stack.prefect_port}/api"
        allowed = [*get_default_allowed_hosts(), stack.public_host, f"{stack.public_host}:*"]
        mlflow["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(allowed)
    if stack.auth:
        prefect["PREFECT_SERVER_API_AUTH_STRING"] = secrets["prefect_auth_string"]
        config = stack.home / "mlflow-auth.ini"
        # auth_cache_ttl_seconds: checking the password's scrypt hash costs 0.1-0.2 s of CPU, and without
        # the cache every request pays it (a training makes well over a hundred). A changed password may
        # go on working that long on the other worker.
        credentials.write_private(config, "[mlflow]\ndefault_permission = READ\n"
                                          f"database_uri = {stores['mlflow_auth']}\n"
                                          f"admin_username = {credentials.MLFLOW_ADMIN}\n"
                                          "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                                          "auth_cache_ttl_seconds = 60\n")
        mlflow |= {"MLFLOW_AUTH_CONFIG_PATH": str(config.resolve()),
                   "MLFLOW_AUTH_ADMIN_PASSWORD": secrets["mlflow_admin_password"],
                   "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets["flask_secret_key"]}
    return prefect, mlflow


def up(stack: Stack, prefect_file: Path = Path("prefect.yaml"), project: Path = Path("."),
       db_url: str | None = None) -> Stack:
    """Start everything, then deploy. `db_url`: an existing PostgreSQL server, remembered in `.stack/`."""
    check(stack)
    running = Stack.load(stack.home)
    if running and running.pids:
        if _is_up(running):
            raise InputError([Problem(f"the stack is already up ({running.prefect_api}, {running.mlflow_uri})",
                                      "run `lstm-pipeline stack down` first")])
        down(stack.home)  # what is left of a stack that half died
    stack.home.mkdir(parents=True, exist_ok=True)
    stack.mlruns.mkdir(parents=True, exist_ok=True)
    secrets = credentials.load(stack.home)
    if db_url:
        postgres.database_url(db_url, "postgres")  # InputError for a URL that is not PostgreSQL's
        secrets["db_url"] = db_url
        credentials.save(stack.home, secrets)
    # The certificate first: a pair that is not one is refused before anything starts.
    certificate = tls.prepare(stack.home, stack.host, stack.cert, stack.key) if stack.tls else None
    try:
        _launch(stack, secrets, certificate)
        credentials.write_client_env(stack.home, stack.env(stack.public_host))
        deploy(stack, prefect_file, project)
    except BaseException:
        stack.save()
        down(stack.home)  # nothing half started is left behind
        raise
    return stack


def _launch(stack: Stack, secrets: dict[str, str], certificate: tuple[Path, Path] | None) -> None:
    """Database, servers (on HTTPS with `certificate`, a certificate and its key), work pool, the dead-run
    automation, worker and reaper; `stack.pids` fills as they start."""
    stores = _stores(stack, secrets)
    prefect_env, mlflow_env = _server_envs(stack, secrets, stores)
    ssl_options = ["--ssl-certfile", str(certificate[0]), "--ssl-keyfile", str(certificate[1])] if certificate else []
    # Prefect's server app under uvicorn, as `prefect server start --background` runs it, since `prefect
    # server start` has no TLS options; create_app and PREFECT__SERVER_FINAL are internal to Prefect
    # (tests/services/test_team_stack.py fails if they change).
    _start(stack, "prefect-server", [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                                     "--host", stack.host, "--port", str(stack.prefect_port), *ssl_options],
           prefect_env | {"PREFECT__SERVER_FINAL": "1"})
    _start(stack, "mlflow-server", [sys.executable, "-m", "mlflow", "server", "--host", stack.host,
                                    "--port", str(stack.mlflow_port),
                                    "--artifacts-destination", str(stack.mlruns.resolve() / "artifacts"),
                                    "--workers", "2" if stack.db == "postgresql" else "1",
                                    *(["--uvicorn-opts", shlex.join(ssl_options)] if ssl_options else []),
                                    *(["--app-name", "basic-auth"] if stack.auth else [])], mlflow_env)
    stack.save()
    _wait(stack, "prefect-server", f"{stack.prefect_api}/health")
    _wait(stack, "mlflow-server", f"{stack.mlflow_uri}/health")
    if stack.auth:
        accounts.prepare(stack, secrets["stack_account_password"])
    env = base_env(stack)
    for args in (_prefect("work-pool", "create", POOL, "--type", "process", "--overwrite"),
                 [sys.executable, "-c", f"from services.reaper import apply_automation; apply_automation({stack.dead_after})"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise did_not_start(f"{' '.join(args[2:5])} failed", done.stderr or done.stdout,
                                f"see the servers' logs in {stack.home.resolve()}")
    _start(stack, "worker", _prefect("worker", "start", "--pool", POOL, "--type", "process"), env)
    _start(stack, "reaper", [sys.executable, "-m", "services.reaper"], env)
    stack.save()


def status(home: Path = Path(".stack")) -> list[tuple[str, int, bool]]:
    """(process, pid, alive) for every process the stack started; empty when it is down."""
    stack = Stack.load(home)
    return [(name, pid, _alive(pid)) for name, pid in stack.pids.items()] if stack else []


def down(home: Path = Path(".stack"), grace: float = 15) -> list[str]:
    """Stop the processes `up` started (their whole process groups), PostgreSQL last; returns their names."""
    stack = Stack.load(home)
    if stack is None or not stack.pids:
        return []
    for name in (*CONSUMERS, "mlflow-server", "prefect-server"):
        pid = stack.pids.get(name)
        if pid is None or not _alive(pid):
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    if "postgres" in stack.pids:
        postgres.stop(Path(home) / "postgres" / "data")
    stopped, stack.pids = list(stack.pids), {}
    stack.save()
    return stopped


def _is_up(stack: Stack | None) -> bool:
    return bool(stack and stack.pids and all(_alive(p) for p in stack.pids.values()))


def running_with_auth(home: Path = Path(".stack")) -> Stack:
    """The stack up in `home` with authentication (whose accounts `stack user` manages), or InputError."""
    stack = Stack.load(home)
    if not _is_up(stack):
        raise InputError([Problem(f"no stack is up in {Path(home).resolve()}", "start it: lstm-pipeline stack up --auth ...")])
    if not stack.auth:
        raise InputError([Problem("the stack is up without authentication, so it has no accounts",
                                  "`lstm-pipeline stack down`, then `stack up --auth ...`")])
    return stack


def active_env(home: Path = Path(".stack")) -> dict[str, str]:
    """The stack's server addresses (and credentials) if it is up, so commands run against it; {} otherwise."""
    stack = Stack.load(home)
    if _is_up(stack):
        return stack.own_env()
    return {}
