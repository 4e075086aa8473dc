"""The team stack's database: a PostgreSQL cluster of its own, made with the system's binaries
(Debian's `postgresql` package) in `.stack/postgres/` and started on loopback, or an existing server.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user (which the
Debian package creates) and its commands run through `runuser`; as anyone else, to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from tasks.errors import InputError, Problem

ROLE = "lstm_pipeline"  # the superuser initdb creates in the stack's own cluster
SYSTEM_USER = "postgres"  # who owns the cluster when the stack is started by root
DATABASES = ("mlflow", "mlflow_auth", "prefect")  # tracking store + registry, MLflow's users, Prefect
INSTALL = "apt-get install -y postgresql  (or: make postgresql)"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    raise InputError([Problem("PostgreSQL's server programs (initdb, pg_ctl) are not installed",
                              f"install them: {INSTALL}; or pass --db-url for a server you have")])


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *args] if os.geteuid() == 0 else args


def _own(*paths: Path) -> None:
    """As root, hand `paths` to the cluster's user (the data folder must belong to whoever runs the server)."""
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(_as_owner(args), capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def init_cluster(home: Path, password: str) -> Path:
    """A new cluster in `home`/data (kept if it exists), returned: password logins only (scram-sha-256),
    also on loopback, since every local user can reach a loopback port."""
    data = home / "data"
    if (data / "PG_VERSION").exists():
        return data
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _own(home)
    if os.geteuid() == 0 and subprocess.run(_as_owner(["test", "-w", str(home)])).returncode != 0:
        raise InputError([Problem(f"PostgreSQL does not run as root, and its user {SYSTEM_USER!r} cannot reach "
                                  f"{home.resolve()}: a folder above it is private (such as /root)",
                                  "keep the project in a folder other users may enter, or pass --db-url")])
    # initdb reads the password from a file its user can open; it is removed right after.
    pwfile = home / "pwfile"
    pwfile.touch(mode=0o600)
    pwfile.write_text(password + "\n")
    _own(pwfile)
    try:
        _run([str(bin_dir() / "initdb"), "-D", str(data.resolve()), "-U", ROLE, "--auth=scram-sha-256",
              f"--pwfile={pwfile.resolve()}", "-E", "UTF8", "--locale=C.UTF-8"])
    finally:
        pwfile.unlink()
    return data


def start(data: Path, port: int, log: Path) -> int:
    """Start the cluster on 127.0.0.1:`port` (no Unix socket) and wait until it takes connections;
    returns the server's process id."""
    log.touch()
    _own(log)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    try:
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data.resolve()), "-l", str(log.resolve()), "-w", "-t", "90",
              "-o", options, "start"])
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\nits log ends:\n{log.read_text(errors='replace')[-2000:]}") from None
    return int((data / "postmaster.pid").read_text().split()[0])


def stop(data: Path) -> None:
    """Fast shutdown: open sessions are ended, committed data stays. A server already gone is left be."""
    pg_ctl = [str(bin_dir() / "pg_ctl"), "-D", str(data.resolve())]
    if subprocess.run(_as_owner([*pg_ctl, "status"]), capture_output=True).returncode == 0:
        _run([*pg_ctl, "-m", "fast", "-w", "stop"])


def local_url(port: int, password: str) -> str:
    return f"postgresql://{ROLE}:{quote(password, safe='')}@127.0.0.1:{port}"


def database_url(server: str, database: str, driver: str = "") -> str:
    """`server` (postgresql://USER:PASSWORD@HOST:PORT[/...]) with `database` as its path, and
    `driver` added to the scheme (Prefect's server needs `+asyncpg`)."""
    parts = urlsplit(server)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise InputError([Problem(f"--db-url {redact(server)!r} is not postgresql://USER:PASSWORD@HOST:PORT",
                                  "e.g. --db-url postgresql://mlops:secret@db.internal:5432")])
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def redact(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def create_databases(server: str) -> None:
    """Create the stack's databases on `server` where they do not exist yet."""
    import psycopg
    from psycopg import sql

    try:
        # autocommit: CREATE DATABASE cannot run inside a transaction
        connection = psycopg.connect(database_url(server, "postgres"), connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        raise InputError([Problem(f"cannot connect to PostgreSQL at {redact(server)}: {str(exc).strip()}",
                                  "check the URL, the password and that the server is up")]) from None
    with connection:
        present = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in present:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
