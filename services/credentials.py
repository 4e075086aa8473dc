"""The stack's secrets, generated once and kept only in `.stack/` (mode 0600): the database password,
MLflow's admin password and session key, the password of the stack's own MLflow account, Prefect's auth
string; and `client.env`, the variables that let a shell, a worker or a Dask worker on any machine use the
stack (with a person's own MLflow account, services/accounts.py)."""

from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path

MLFLOW_ADMIN = "admin"  # manages accounts, nothing else
STACK_ACCOUNT = "lstm-stack"  # the stack's worker and reaper, and commands run in the project folder
PREFECT_USER = "lstm"
FILE, CLIENT_ENV = "secrets.json", "client.env"


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file nobody but its owner can read, from its first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed with looser bits
    with os.fdopen(fd, "w") as out:
        out.write(text)


def load(home: Path) -> dict[str, str]:
    """The stack's secrets; the missing ones are generated and saved."""
    path = Path(home) / FILE
    kept = json.loads(path.read_text()) if path.exists() else {}
    fresh = {"db_password": secrets.token_urlsafe(24), "mlflow_admin_password": secrets.token_urlsafe(24),
             "flask_secret_key": secrets.token_urlsafe(32), "stack_account_password": secrets.token_urlsafe(24),
             "prefect_auth_string": f"{PREFECT_USER}:{secrets.token_urlsafe(24)}"}
    merged = fresh | kept
    if merged != kept:
        save(home, merged)
    return merged


def save(home: Path, values: dict[str, str]) -> None:
    write_private(Path(home) / FILE, json.dumps(values, indent=2))


def prefect_auth(values: dict[str, str]) -> dict[str, str]:
    """The variable Prefect's clients read the server's auth string from."""
    return {"PREFECT_API_AUTH_STRING": values["prefect_auth_string"]}


def stack_account(values: dict[str, str]) -> dict[str, str]:
    """The variables MLflow's clients read their credentials from, for the stack's own account."""
    return {"MLFLOW_TRACKING_USERNAME": STACK_ACCOUNT, "MLFLOW_TRACKING_PASSWORD": values["stack_account_password"]}


def write_client_env(home: Path, env: dict[str, str]) -> Path:
    """`client.env`: `export` lines to source in a shell (`. .stack/client.env`) or to copy to another machine."""
    path = Path(home) / CLIENT_ENV
    write_private(path, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return path
