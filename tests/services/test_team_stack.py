"""The team stack for real: PostgreSQL from the system's binaries, MLflow and Prefect servers on it with
authentication on and over HTTPS, the worker and the reaper, started from a folder only its owner may
enter; clients connect only through `client.env`'s variables, each as a person's own account.

The load tests print their wall times (`pytest tests/services/test_team_stack.py -s -k load`): the numbers
in BENCHMARKS.md come from that output.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient
from servers import free_port

from services import accounts, credentials, postgres, tls
from services import stack as stack_mod
from tasks.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
MODEL, EXPERIMENT = "team-model", "team-load"
TINY = {"data": {"target": "OT"}, "window": {"input_length": 24, "horizon": 6}, "model": {"layers": 1, "units": 8},
        "train": {"epochs": 2}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "tracking": {"experiment": EXPERIMENT}, "registry": {"model_name": MODEL},
        "promotion": {"require_beat_repeat": False}}
CONCURRENT = 8
WRITERS, READER = ("alice", "bob"), "carol"
PASSWORDS: dict[str, str] = {}  # the team stack's people's accounts, made by the `team` fixture
# What this process's own MLflow client reads to reach the team stack (set by _mlflow, restored after).
CLIENT_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_SERVER_CERT_PATH")
slow = [pytest.mark.slow, pytest.mark.integration]


def _client_env(team, account: str = "alice", password: str | None = None) -> dict[str, str]:
    """A process that knows nothing of the stack but what `client.env` exports (as on another machine),
    and a person's account."""
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                    for line in (team.home / credentials.CLIENT_ENV).read_text().splitlines())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    return base | exported | {"MLFLOW_TRACKING_USERNAME": account, "MLFLOW_TRACKING_PASSWORD": password or PASSWORDS[account],
                              "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def _cli(team, *args: str, timeout: float = 900, account: str = "alice", **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=_client_env(team, account),
                          cwd=team.home.parent, capture_output=True, text=True, timeout=timeout, **kwargs)


def _mlflow(team, account: str = "alice") -> MlflowClient:
    env = _client_env(team, account)
    os.environ |= {k: env[k] for k in CLIENT_VARIABLES if k in env}
    return MlflowClient(tracking_uri=team.mlflow_uri, registry_uri=team.mlflow_uri)


def _prefect(team, method: str, path: str, **kwargs):
    auth = tuple(_client_env(team)["PREFECT_API_AUTH_STRING"].split(":", 1))
    response = httpx.request(method, f"{team.prefect_api}{path}", auth=auth, timeout=30, verify=team.verify, **kwargs)
    response.raise_for_status()
    return response.json()


def _unscheduled(folder: Path) -> Path:
    """prefect.yaml without its schedules: no 02:00 retrain on ETTh1 during a test."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        deployment.pop("schedules", None)
    (folder / "prefect.yaml").write_text(yaml.safe_dump(spec))
    return folder / "prefect.yaml"


def _remove(folder: Path) -> None:
    """A test's project folder, and the cluster that lives outside it when root started it."""
    cluster = folder / ".stack" / "postgres"
    if cluster.is_symlink():
        shutil.rmtree(cluster.resolve(), ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team(valid_workbook):
    """The team stack, started once for this module, in a folder only its owner may enter (mode 0700, as
    `mktemp -d` makes it): as root, PostgreSQL runs as the `postgres` user, which cannot enter it. On
    HTTPS, with a certificate the user gives (issued by a CA of their own, the chain in one file)."""
    folder = Path(tempfile.mkdtemp(prefix="lstm-team-"))
    (folder / "station.xlsx").write_bytes(valid_workbook.read_bytes())
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    given = folder / "given-tls"
    tls.make_certificate(given, ["localhost", "127.0.0.1"])
    (given / "chain.pem").write_bytes((given / tls.CERT).read_bytes() + (given / tls.OWN_CA).read_bytes())
    stack = stack_mod.Stack(folder / ".stack", free_port(), free_port(), folder / "mlruns", auth=True,
                            db="postgresql", db_port=free_port(), heartbeat=30, dead_after=75, tls=True,
                            cert=str(given / "chain.pem"), key=str(given / tls.KEY))
    saved = {k: os.environ.get(k) for k in CLIENT_VARIABLES}
    try:
        stack_mod.up(stack, _unscheduled(folder), project=ROOT)
        PASSWORDS.update({name: accounts.add(stack, name, write=name in WRITERS) for name in (*WRITERS, READER)})
        yield stack
    finally:
        stack_mod.down(stack.home)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        _remove(folder)


@pytest.mark.parametrize("flags, needed", [([], ["--auth"]), (["--auth"], ["--tls", "--insecure-off-host"])])
def test_a_non_loopback_host_without_auth_or_tls_is_refused(tmp_path, flags, needed):
    done = subprocess.run([sys.executable, "-m", "flows.cli", "stack", "up", "--host", "0.0.0.0", *flags,
                           "--home", str(tmp_path / ".stack")], env=os.environ | {"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--host 0.0.0.0" in done.stderr and all(flag in done.stderr for flag in needed)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".stack").exists()


def test_plain_http_off_host_is_taken_only_when_asked_for_by_name():
    stack_mod.check(stack_mod.Stack(host="0.0.0.0", auth=True, insecure_off_host=True))
    stack_mod.check(stack_mod.Stack(host="0.0.0.0", auth=True, tls=True))


def test_the_prefect_internals_the_stack_serves_prefect_with():
    """`prefect server start` has no TLS options, so the stack runs Prefect's app under uvicorn as Prefect's
    own background server does: the factory `create_app`, told by PREFECT__SERVER_FINAL that it is final."""
    from prefect.server.api.server import create_app

    assert "PREFECT__SERVER_FINAL" in inspect.getsource(create_app)
    assert "prefect.server.api.server:create_app" in inspect.getsource(
        importlib.import_module("prefect.cli._server_utils"))


def test_a_certificate_made_here_is_trusted_through_its_ca_for_the_hosts_names(tmp_path):
    from cryptography import x509

    tls.make_certificate(tmp_path, tls.host_names("0.0.0.0"))
    ca, server = (x509.load_pem_x509_certificate((tmp_path / name).read_bytes()) for name in (tls.OWN_CA, tls.CERT))
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {socket.getfqdn(), "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert stat.S_IMODE((tmp_path / tls.KEY).stat().st_mode) == 0o600
    with pytest.raises(InputError, match="not a certificate and its key"):
        tls.prepare(tmp_path / "home", "127.0.0.1", str(tmp_path / tls.OWN_CA), str(tmp_path / tls.KEY))


@pytest.mark.slow
@pytest.mark.integration
def test_a_stack_for_other_machines_serves_https_on_all_interfaces_and_lets_in_only_with_credentials(tmp_path):
    """--host 0.0.0.0 --auth --tls (on SQLite, a certificate made on the first start): both servers on every
    interface, HTTPS only; requests that name the machine as teammates do (its name in the Host header and
    as the name the certificate is checked for, sent here over loopback) need the credentials."""
    import psutil

    stack = stack_mod.Stack(tmp_path / ".stack", free_port(), free_port(), tmp_path / "mlruns", host="0.0.0.0",
                            auth=True, tls=True)
    stack_mod.up(stack, _unscheduled(tmp_path), project=ROOT)
    try:
        ports = {stack.prefect_port, stack.mlflow_port}
        assert {c.laddr.ip for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port in ports} == {"0.0.0.0"}
        env = _client_env(stack, "dora", accounts.add(stack, "dora"))
        assert env["MLFLOW_TRACKING_URI"] == f"https://{stack.public_host}:{stack.mlflow_port}"
        assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == env["PREFECT_API_SSL_CERT_FILE"] == stack.verify
        mlflow = (f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                  (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]), stack.mlflow_port)
        prefect = (f"{stack.prefect_api}/deployments/name/retrain/retrain",
                   tuple(env["PREFECT_API_AUTH_STRING"].split(":", 1)), stack.prefect_port)
        for url, auth, port in (mlflow, prefect):
            named = {"headers": {"Host": f"{stack.public_host}:{port}"}, "extensions": {"sni_hostname": stack.public_host}}
            with httpx.Client(verify=stack.verify, timeout=30) as client:
                assert client.get(url, **named).status_code == 401
                assert client.get(url, auth=auth, **named).status_code == 200
                ui = client.get(f"https://127.0.0.1:{port}/", auth=auth, **named)  # the UI, over HTTPS too
                assert ui.status_code == 200 and "<html" in ui.text.lower()
            with pytest.raises(httpx.HTTPError):  # no plain HTTP
                httpx.get(url.replace("https://", "http://"), auth=auth, timeout=30)
    finally:
        stack_mod.down(stack.home)


def test_secrets_are_generated_once_and_private(tmp_path):
    first = credentials.load(tmp_path)
    assert credentials.load(tmp_path) == first
    assert len(first["mlflow_admin_password"]) >= 12  # MLflow refuses shorter admin passwords
    path = credentials.write_client_env(tmp_path, credentials.prefect_auth(first))
    for written in (tmp_path / credentials.FILE, path):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_database_urls_name_the_database_and_driver_and_hide_the_password():
    server = "postgresql://ml:s3cret@db.internal:5432"
    assert postgres.database_url(server, "prefect", driver="asyncpg") == "postgresql+asyncpg://ml:s3cret@db.internal:5432/prefect"
    assert postgres.redact(server) == "postgresql://ml:***@db.internal:5432"
    with pytest.raises(Exception, match="not postgresql://"):
        postgres.database_url("mysql://ml:s3cret@db:3306", "mlflow")


@pytest.mark.parametrize("server", ["mlflow", "prefect"])
@pytest.mark.slow
@pytest.mark.integration
def test_a_request_without_credentials_is_refused_and_one_with_them_is_served(team, server):
    env = _client_env(team)
    if server == "mlflow":
        url, auth = f"{team.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1", (
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        request = {"method": "GET"}
    else:
        url, auth = f"{team.prefect_api}/flows/filter", tuple(env["PREFECT_API_AUTH_STRING"].split(":", 1))
        request = {"method": "POST", "json": {}}
    request |= {"timeout": 30, "verify": team.verify}
    assert httpx.request(url=url, **request).status_code == 401
    assert httpx.request(url=url, auth=(auth[0], "wrong-password"), **request).status_code == 401
    assert httpx.request(url=url, auth=auth, **request).status_code == 200


@pytest.mark.slow
@pytest.mark.integration
def test_the_stack_runs_from_a_folder_only_its_owner_may_enter(team):
    """Issue 22: as root, initdb (run as `postgres`) could not enter a `mktemp -d` folder. The folder's
    permissions stay as they were; the cluster's files belong to the server's user."""
    folder = team.home.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    data = team.home / "postgres" / "data"
    assert (data / "PG_VERSION").exists() and data.resolve().stat().st_uid == (
        pwd.getpwnam(postgres.SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid())


def test_a_database_port_taken_is_one_line_and_exit_code_2():
    """PostgreSQL that cannot start (its port taken) ends `stack up` with one line, no traceback, nothing left running."""
    folder = Path(tempfile.mkdtemp(prefix="lstm-taken-"))
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            done = subprocess.run([sys.executable, "-m", "flows.cli", "stack", "up", "--db", "postgresql",
                                   "--db-port", str(taken.getsockname()[1]), "--prefect-port", str(free_port()),
                                   "--mlflow-port", str(free_port())], cwd=folder,
                                  env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "PostgreSQL did not start" in lines[0] and "--db-port" in lines[0], lines
        assert stack_mod.status(folder / ".stack") == []
    finally:
        stack_mod.down(folder / ".stack")
        _remove(folder)


@pytest.mark.slow
@pytest.mark.integration
def test_every_account_reads_everything_and_only_writers_write(team):
    from mlflow.exceptions import MlflowException

    alice = _mlflow(team, "alice")
    experiment = alice.create_experiment("team-accounts")
    run = alice.create_run(experiment).info.run_id
    _mlflow(team, "bob").log_metric(run, "by_bob", 1.0)  # a writer writes in another writer's experiment
    _mlflow(team, "bob").create_registered_model("team-accounts-model")
    carol = _mlflow(team, READER)
    assert carol.get_run(run).data.metrics == {"by_bob": 1.0}
    assert carol.get_registered_model("team-accounts-model").name == "team-accounts-model"
    for write in (lambda: carol.log_metric(run, "by_carol", 1.0),
                  lambda: carol.set_registered_model_tag("team-accounts-model", "by", "carol")):
        with pytest.raises(MlflowException, match="403"):
            write()


@pytest.mark.slow
@pytest.mark.integration
def test_the_admin_account_only_manages_accounts(team):
    """No process of the stack but MLflow's server, and nothing client.env hands out, holds the admin's
    password: the worker and the reaper write as the stack's own account."""
    admin = credentials.load(team.home)["mlflow_admin_password"]
    assert admin not in (team.home / credentials.CLIENT_ENV).read_text()
    for name in ("worker", "reaper"):
        environ = Path(f"/proc/{team.pids[name]}/environ").read_bytes().decode().split("\0")
        assert f"MLFLOW_TRACKING_USERNAME={credentials.STACK_ACCOUNT}" in environ and admin not in "".join(environ)
    assert {a.name: a.role for a in accounts.accounts(team)} == {
        "admin": "admin", credentials.STACK_ACCOUNT: "writer", "alice": "writer", "bob": "writer", "carol": "reader"}


@pytest.mark.slow
@pytest.mark.integration
def test_stack_user_add_list_remove(team):
    def user(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.cli", "stack", "user", *args, "--home", str(team.home)],
                              env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)

    added = user("add", "erin", "--write")
    assert added.returncode == 0, added.stderr
    password = re.search(r"MLFLOW_TRACKING_PASSWORD=(\S+)", added.stdout).group(1)
    url = f"{team.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(url, auth=("erin", password), timeout=30, verify=team.verify).status_code == 200
    assert re.search(r"^erin +writer$", user("list").stdout, re.M)
    for refused in (user("add", "erin"), user("remove", "admin"), user("remove", "nobody"), user("add", "bad name")):
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "Traceback" not in refused.stderr
    assert user("remove", "erin").returncode == 0
    assert "erin" not in user("list").stdout


def _python_for(user: str, folder: Path) -> tuple[str, dict[str, str]]:
    """A Python `user` can run with this suite's packages, and the variables it needs: this one if the user
    may reach it; else (pyenv's under /root, which only root may enter) a venv in `folder` of a copy of
    this Python's own installation (no packages), whose site folder adds this one's."""
    if subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "pass"], capture_output=True).returncode == 0:
        return sys.executable, {}
    version, base, copy = f"python{sys.version_info.major}.{sys.version_info.minor}", Path(sys.base_prefix), folder / "python"
    shutil.copytree(base / "lib" / version, copy / "lib" / version, ignore=shutil.ignore_patterns("site-packages", "test"))
    for library in (base / "lib").glob("libpython*.so*"):
        shutil.copy2(library, copy / "lib")
    (copy / "bin").mkdir()
    shutil.copy2(base / "bin" / version, copy / "bin")
    env = {"LD_LIBRARY_PATH": str(copy / "lib")}  # a shared build finds its library by an absolute path under /root
    subprocess.run(["chown", "-R", f"{user}:", str(copy)], check=True)
    subprocess.run(["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), str(copy / "bin" / version),
                    "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
    site = next((folder / "venv").glob("lib/python*/site-packages"))
    (site / "suite.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return str(folder / "venv" / "bin" / "python"), env


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="making a user takes root; run by an ordinary user, the team "
                                              "stack's other tests are this one")
def test_an_ordinary_user_starts_the_team_stack_from_a_folder_only_they_may_enter():
    """A user made here starts `stack up --db postgresql --auth` in a copy of the project inside a folder
    of mode 0700 that they own: every process, PostgreSQL too, runs as them, its files in `.stack/postgres`."""
    import psutil

    user = f"lstm-test-{os.getpid()}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    folder = Path(tempfile.mkdtemp(prefix="lstm-user-"))
    project, python = folder / "project", None
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "PYTHONPATH": str(project), "LANG": "C.UTF-8"}

    def stack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", user, "--", python, "-m", "flows.cli", "stack", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=600)

    try:
        for part in ("flows", "tasks", "services", "configs"):
            shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
        _unscheduled(project)
        subprocess.run(["chown", "-R", f"{user}:", str(folder)], check=True)
        python, needs = _python_for(user, folder)
        env |= needs
        up = stack("up", "--db", "postgresql", "--auth", "--db-port", str(free_port()),
                   "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()))
        assert up.returncode == 0, up.stderr[-3000:]
        started = stack_mod.Stack.load(project / ".stack")
        uid = pwd.getpwnam(user).pw_uid
        assert {name: psutil.Process(pid).uids().real for name, pid in started.pids.items()} == dict.fromkeys(
            ("postgres", "prefect-server", "mlflow-server", "worker", "reaper"), uid)
        cluster = project / ".stack" / "postgres"
        assert not cluster.is_symlink() and (cluster / "data").stat().st_uid == uid
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == uid
        assert stack("user", "add", "zoe", "--write").returncode == 0
    finally:
        if python:
            stack("down")
        subprocess.run(["userdel", user])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.integration
def test_everything_runs_and_listens_on_loopback_only(team):
    import psutil

    assert {name for name, _, alive in stack_mod.status(team.home) if alive} == {
        "postgres", "prefect-server", "mlflow-server", "worker", "reaper"}
    ports = {team.db_port, team.prefect_port, team.mlflow_port}
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports}
    assert {port for _, port in listening} == ports and {ip for ip, _ in listening} == {"127.0.0.1"}
    for private in (credentials.FILE, credentials.CLIENT_ENV, "mlflow-auth.ini"):
        assert stat.S_IMODE((team.home / private).stat().st_mode) == 0o600


@pytest.mark.slow
@pytest.mark.integration
def test_a_sweep_on_a_dask_scheduler_and_two_workers_that_reach_only_the_authenticated_servers(team):
    """A real `dask scheduler` and two `dask worker` processes given only `client.env`: their only way to
    the tracking store is the authenticated MLflow server, and to Prefect its authenticated API."""
    from servers import DaskCluster

    cluster = DaskCluster(team.home.parent, workers=2, env=_client_env(team))
    try:
        space = team.home.parent / "space.yaml"
        space.write_text("model.units: [4, 8]\n")
        done = _cli(team, "sweep", "station.xlsx", "--space", str(space), "--dask-address", cluster.address,
                    "--name", "team-sweep", "--config", "tiny.yaml", "--set", "tracking.experiment=team-sweep")
        assert done.returncode == 0, done.stderr[-3000:]
        assert any(cluster.run(lambda: "tasks.runs.fit" in sys.modules).values())  # the workers fitted
    finally:
        cluster.stop()
    client = _mlflow(team)
    parent = client.search_runs([client.get_experiment_by_name("team-sweep").experiment_id],
                                "tags.sweep_name = 'team-sweep' and tags.run_type = 'sweep'")[0]
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((r.info.run_name, r.info.status) for r in trials) == [("u4", "FINISHED"), ("u8", "FINISHED")]
    assert parent.info.status == "FINISHED" and "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def _timed_concurrently(commands: list[list[str]], team) -> tuple[float, list[subprocess.CompletedProcess]]:
    """The commands at once, the i-th as the account WRITERS[i % 2]: two accounts writing at once."""
    start = time.monotonic()
    with ThreadPoolExecutor(len(commands)) as pool:
        done = list(pool.map(lambda i: _cli(team, *commands[i], account=WRITERS[i % 2]), range(len(commands))))
    return time.monotonic() - start, done


def _server_errors(team) -> list[str]:
    """Lines of the servers' logs that show a failure: a traceback, or PostgreSQL's deadlocks and crashes."""
    found = []
    for name in ("mlflow-server", "prefect-server", "postgres"):
        for line in (team.home / f"{name}.log").read_text(errors="replace").splitlines():
            if "Traceback" in line or "deadlock detected" in line or "FATAL" in line or "PANIC" in line:
                found.append(f"{name}: {line}")
    return found


@pytest.mark.slow
@pytest.mark.integration
def test_load_concurrent_trainings_are_all_recorded(team):
    data, config = team.home.parent / "station.xlsx", team.home.parent / "tiny.yaml"
    seconds, done = _timed_concurrently([["train", str(data), "--config", str(config)]] * CONCURRENT, team)
    print(f"\nteam stack load: {CONCURRENT} concurrent `lstm-pipeline train` (tiny) on PostgreSQL with auth, TLS, two accounts: {seconds:.1f} s wall")
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done if d.returncode]
    client = _mlflow(team)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], "tags.run_type = 'train'")
    assert len(runs) == CONCURRENT and {r.info.status for r in runs} == {"FINISHED"}
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, CONCURRENT + 1))
    assert sum("champion" in client.get_model_version(MODEL, v.version).aliases for v in versions) == 1
    # Each run's flow run is on the stack's Prefect server, completed.
    states = {_prefect(team, "GET", f"/flow_runs/{r.data.tags['prefect_flow_run_id']}")["state"]["type"] for r in runs}
    assert states == {"COMPLETED"}
    assert _server_errors(team) == []


@pytest.mark.slow
@pytest.mark.integration
def test_load_concurrent_forced_promotions_leave_one_champion(team):
    versions = [str(v) for v in range(1, CONCURRENT + 1)]
    client = _mlflow(team)
    before = client.get_model_version_by_alias(MODEL, "champion").version  # crowned by the trainings' gates
    seconds, done = _timed_concurrently([["promote", "--version", v, "--force", "--reason", f"load {v}",
                                          "--set", f"registry.model_name={MODEL}"] for v in versions], team)
    print(f"\nteam stack load: {CONCURRENT} concurrent `lstm-pipeline promote --force` on PostgreSQL with auth, TLS, two accounts: {seconds:.1f} s wall")
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done if d.returncode]
    holders = [v for v in versions if "champion" in client.get_model_version(MODEL, v).aliases]
    assert len(holders) == 1
    # Each promotion's own record on its own version (tags written by that process alone). Forcing the
    # version that holds `champion` already changes nothing, so when its turn comes first it records nothing.
    assert all(client.get_model_version(MODEL, v).tags["champion_reason"] == f"forced: load {v}"
               for v in versions if v != before)
    assert _server_errors(team) == []


@pytest.mark.slow
@pytest.mark.integration
def test_load_concurrent_forced_promotions_leave_a_complete_audit(team):
    """After the 8 concurrent forced promotions: one audit record each, none lost or overwritten, numbered
    in one sequence (the decisions were serialized by the Prefect limit), the last naming the champion."""
    client = _mlflow(team)
    changes = sorted((json.loads(value) for key, value in client.get_registered_model(MODEL).tags.items()
                      if key.startswith("audit.")), key=lambda c: c["seq"])
    champion = [c for c in changes if c["alias"] == "champion"]
    forced = [c for c in champion if c["reason"].startswith("forced: load ")]
    before = [c for c in champion if c["seq"] < forced[0]["seq"]][-1]["version"]  # the trainings' champion
    everyone = sorted(str(v) for v in range(1, CONCURRENT + 1))
    # One record per promotion that changed the champion: all but `before`'s, if its turn came first.
    recorded = sorted(c["version"] for c in forced)
    assert recorded == everyone or (recorded == [v for v in everyone if v != before]
                                    and forced[0]["previous"] == before)
    assert all(c["reason"] == f"forced: load {c['version']}" for c in forced)
    # Every alias move names the account it was made as: the promotion of version v ran as WRITERS[(v - 1) % 2].
    assert all(c["account"] == WRITERS[(int(c["version"]) - 1) % 2] for c in forced)
    assert {c["account"] for c in changes} == set(WRITERS)
    assert len({c["seq"] for c in changes}) == len(changes)
    assert champion[-1]["version"] == client.get_model_version_by_alias(MODEL, "champion").version


@pytest.mark.slow
@pytest.mark.integration
def test_a_killed_training_is_crashed_by_prefect_and_killed_in_mlflow(team):
    """SIGKILL a training mid-run, as a lost machine would: nothing on its side can report it. Prefect's
    automation marks its flow run Crashed after `dead_after` s of silence; the reaper then marks its run KILLED."""
    data, config = team.home.parent / "station.xlsx", team.home.parent / "tiny.yaml"
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "train", str(data), "--config", str(config),
                                "--set", "train.epochs=5000", "--set", "train.patience=0",
                                "--set", "tracking.experiment=team-killed"],
                               env=_client_env(team), cwd=team.home.parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    client = _mlflow(team)
    run = None
    deadline = time.monotonic() + 300
    while run is None and time.monotonic() < deadline:  # training has begun: an epoch is recorded
        experiment = client.get_experiment_by_name("team-killed")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        run = runs[0] if runs and client.get_metric_history(runs[0].info.run_id, "loss") else None
        time.sleep(2)
    try:
        assert run is not None and run.info.status == "RUNNING", "the training did not start"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    flow_run_id = run.data.tags["prefect_flow_run_id"]
    deadline = time.monotonic() + team.dead_after + 120
    while time.monotonic() < deadline:
        state = _prefect(team, "GET", f"/flow_runs/{flow_run_id}")["state"]["type"]
        status = client.get_run(run.info.run_id).info.status
        if state == "CRASHED" and status == "KILLED":
            break
        time.sleep(3)
    assert (state, status) == ("CRASHED", "KILLED")
    assert "reaper" in client.get_run(run.info.run_id).data.tags["failure"]


@pytest.mark.slow
@pytest.mark.integration
def test_down_stops_postgresql_and_up_again_finds_every_run_version_and_alias(team):
    client = _mlflow(team)
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    before = {"runs": sorted(r.info.run_id for r in client.search_runs(list(experiments.values()))),
              "versions": sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")),
              "champion": client.get_model_version_by_alias(MODEL, "champion").version}
    postmaster = team.pids["postgres"]
    stack_mod.down(team.home)
    assert not stack_mod._alive(postmaster) and not (team.home / "postgres" / "data" / "postmaster.pid").exists()
    stack_mod.up(team, _unscheduled(team.home.parent), project=ROOT)
    client = _mlflow(team)
    after = {"runs": sorted(r.info.run_id for r in client.search_runs(list(experiments.values()))),
             "versions": sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")),
             "champion": client.get_model_version_by_alias(MODEL, "champion").version}
    assert after == before
