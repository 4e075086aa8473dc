"""The team stack's database: a PostgreSQL cluster of its own, made with the system's binaries
(Debian's `postgresql` package) in `.stack/postgres/` and started on loopback, or an existing server.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user (which the
Debian package creates), its commands run through `runuser`, and its files live in that user's home
(`~postgres/lstm-pipeline/<project>-<digest>`, `.stack/postgres` a link to it), since the project folder
may be one that user cannot enter (a `mktemp -d` folder, /root) and its permissions are never widened.
As anyone else, the cluster is in `.stack/postgres` and the server runs as that user.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from services import credentials
from tasks.errors import InputError, Problem, did_not_start

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


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise InputError([Problem(f"PostgreSQL does not run as root, and there is no {SYSTEM_USER!r} user to run it",
                                  f"install Debian's package, which creates it ({INSTALL}), run `stack up` as an "
                                  "ordinary user, or pass --db-url")]) from None


def _place(home: Path) -> None:
    """As root, make `home` a link to a folder of the cluster's user in its own home, where it may go
    whatever the permissions of the folders above `home`."""
    if home.is_symlink() and home.is_dir():
        return
    if home.is_dir():  # holds no cluster (the caller looked): what an attempt of old left, such as its pwfile
        shutil.rmtree(home)
    user = _system_user()
    if not Path(user.pw_dir).is_dir():
        raise InputError([Problem(f"PostgreSQL does not run as root, and the home folder of its user {SYSTEM_USER!r}, "
                                  f"{user.pw_dir}, does not exist", "create it, owned by that user, or pass --db-url")])
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    project = re.sub(r"[^\w.-]", "-", home.resolve().parent.parent.name)
    target = Path(user.pw_dir) / "lstm-pipeline" / f"{project}-{digest}"
    for folder in (target.parent, target):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)
    if home.is_symlink():  # a link whose folder was removed
        home.unlink()
    home.symlink_to(target)


def _run(args: list[str], what: str, todo: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's user; its failure is one line (tasks.errors.did_not_start)."""
    done = subprocess.run(_as_owner(args), capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode != 0:
        raise did_not_start(what, done.stderr or done.stdout, todo)
    return done


def init_cluster(home: Path, password: str) -> Path:
    """A new cluster in `home`/data (kept if it exists), returned: password logins only (scram-sha-256),
    also on loopback, since every local user can reach a loopback port."""
    data = home / "data"
    if (data / "PG_VERSION").exists():
        return data
    if os.geteuid() == 0:
        home.parent.mkdir(parents=True, exist_ok=True)
        _place(home)
    else:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data.exists():  # what a failed initdb left
        shutil.rmtree(data)
    # initdb reads the password from a file its user can open; it is removed right after.
    pwfile = home / "pwfile"
    credentials.write_private(pwfile, password + "\n")
    if os.geteuid() == 0:
        user = _system_user()
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        _run([str(bin_dir() / "initdb"), "-D", str(data.resolve()), "-U", ROLE, "--auth=scram-sha-256",
              f"--pwfile={pwfile.resolve()}", "-E", "UTF8", "--locale=C.UTF-8"],
             f"PostgreSQL's initdb could not make a cluster in {data.resolve()}", "pass --db-url for a server you have")
    finally:
        pwfile.unlink()
    return data


def start(data: Path, port: int, log: Path) -> int:
    """Start the cluster on 127.0.0.1:`port` (no Unix socket) and wait until it takes connections;
    returns the server's process id. The server writes its log to `log` through the descriptor it
    inherits, so the log may sit in a folder the server's user cannot enter."""
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    with open(log, "ab") as out:
        done = subprocess.run(_as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data.resolve()), "-w", "-t", "90",
                                         "-o", options, "start"]), stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    if done.returncode != 0:
        said = [line.split(":  ", 1)[-1] for line in log.read_text(errors="replace").splitlines() if "FATAL" in line]
        raise did_not_start(f"PostgreSQL did not start on 127.0.0.1:{port}", "\n".join([done.stderr, *said]),
                            f"see {log.resolve()}; if the port is taken, pass another --db-port")
    return int((data / "postmaster.pid").read_text().split()[0])


def stop(data: Path) -> None:
    """Fast shutdown: open sessions are ended, committed data stays. A server already gone is left be."""
    pg_ctl = [str(bin_dir() / "pg_ctl"), "-D", str(data.resolve())]
    if subprocess.run(_as_owner([*pg_ctl, "status"]), capture_output=True).returncode == 0:
        _run([*pg_ctl, "-m", "fast", "-w", "stop"], f"PostgreSQL in {data.resolve()} did not stop",
             "stop it with pg_ctl stop as its user")


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
