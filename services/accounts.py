"""One account per person on the team stack's MLflow server (its basic-auth app, `stack up --auth`).

Every account reads every experiment and registered model (the app's default permission, READ); the
accounts of the role `writers` also write them (EDIT on every experiment and every registered model:
runs, versions, aliases, tags). The admin account only manages accounts; the stack's worker and reaper
write as an account of their own, `lstm-stack`. Passwords are generated here and shown once; the server
keeps only their hashes. All through MLflow's REST API for users and roles (mlflow.server.auth.routes).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import requests

from services import credentials
from tasks.errors import InputError, Problem

WRITERS = "writers"
# Without MLflow's workspaces every resource is in this one, where role grants live
# (mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME).
WORKSPACE = "default"
GRANTS = (("experiment", "EDIT"), ("registered_model", "EDIT"))
USERS, ROLES = "/api/2.0/mlflow/users", "/api/3.0/mlflow/roles"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")  # also safe in the `export` line `add` prints


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # "admin" (manages accounts), "writer" or "reader"


def _call(stack, method: str, path: str, **fields) -> dict:
    """One request to the MLflow server as its admin; MLflow's refusal (a name taken, unknown) as InputError."""
    password = credentials.load(stack.home)["mlflow_admin_password"]
    response = requests.request(method, f"{stack.mlflow_uri}{path}", auth=(credentials.MLFLOW_ADMIN, password),
                                timeout=30, verify=stack.verify,
                                **({"params": fields} if method == "GET" else {"json": fields}))
    if response.status_code >= 400:
        try:
            said = response.json().get("message", response.text)
        except ValueError:
            said = response.text
        raise InputError([Problem(f"MLflow's server at {stack.mlflow_uri} refused: {said.strip()[:300]}",
                                  "see `lstm-pipeline stack user list`")])
    return response.json() if response.content else {}


def _writers_role(stack) -> int:
    """The id of the role `writers`, made with its grants the first time."""
    roles = _call(stack, "GET", f"{ROLES}/list", workspace=WORKSPACE)["roles"]
    found = next((r["id"] for r in roles if r["name"] == WRITERS), None)
    if found is not None:
        return found
    role = _call(stack, "POST", f"{ROLES}/create", workspace=WORKSPACE, name=WRITERS,
                 description="writes every experiment and registered model (lstm-pipeline stack user add --write)")["role"]
    for resource, permission in GRANTS:
        _call(stack, "POST", f"{ROLES}/permissions/add", role_id=role["id"], resource_type=resource,
              resource_pattern="*", permission=permission)
    return role["id"]


def accounts(stack) -> list[Account]:
    """Every account of the server, by name."""
    users = _call(stack, "GET", f"{USERS}/list")["users"]
    return sorted((Account(u["username"], "admin" if u["is_admin"] else
                           "writer" if any(r["name"] == WRITERS for r in u["roles"]) else "reader") for u in users),
                  key=lambda a: a.name)


def add(stack, name: str, write: bool = False) -> str:
    """A new account `name` (a writer with `write`); returns its password, which nobody can read back."""
    if not NAME.fullmatch(name):
        raise InputError([Problem(f"account name {name!r}: letters, digits and . _ @ - only, a letter or digit first",
                                  "e.g. alice or alice.smith")])
    if name in {a.name for a in accounts(stack)}:
        raise InputError([Problem(f"the account {name!r} exists", f"pick another name, or `stack user remove {name}` first")])
    password = secrets.token_urlsafe(18)
    _call(stack, "POST", f"{USERS}/create", username=name, password=password)
    if write:
        _call(stack, "POST", f"{ROLES}/assign", username=name, role_id=_writers_role(stack))
    return password


def remove(stack, name: str) -> None:
    if name in (credentials.MLFLOW_ADMIN, credentials.STACK_ACCOUNT):
        raise InputError([Problem(f"the account {name!r} is the stack's own", "remove a person's account")])
    if name not in {a.name for a in accounts(stack)}:
        raise InputError([Problem(f"there is no account {name!r}", "see `lstm-pipeline stack user list`")])
    _call(stack, "DELETE", f"{USERS}/delete", username=name)


def prepare(stack, password: str) -> None:
    """The stack's own account, a writer with `password` (made on the first `up`, its password kept in
    step with `.stack/secrets.json` on every one)."""
    if credentials.STACK_ACCOUNT in {a.name for a in accounts(stack)}:
        _call(stack, "PATCH", f"{USERS}/update-password", username=credentials.STACK_ACCOUNT, password=password)
        return
    _call(stack, "POST", f"{USERS}/create", username=credentials.STACK_ACCOUNT, password=password)
    _call(stack, "POST", f"{ROLES}/assign", username=credentials.STACK_ACCOUNT, role_id=_writers_role(stack))
