"""The model registry: versions, the `champion`/`challenger` aliases, and who moved them, when and why."""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import os
import re
import socket
import sys
import uuid
from dataclasses import asdict, dataclass

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem
from tasks.tracking.locks import registry_lock

REGISTERED = re.compile(r"Successfully registered model |Registered model .* already exists|Created version ")


def register_model(model_uri: str, name: str, run_id: str) -> str:
    """A new version of the registered model; returns its version number. A second call for the same run
    (a retried task) returns the version the first one made instead of registering another."""
    made = MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if made:
        return str(min(int(v.version) for v in made))
    # MLflow prints what it registers on stderr ("Created version '2' of model ..."), which the command's
    # summary says too; anything else it writes there (its warnings) passes through.
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    sys.stderr.write("".join(line for line in printed.getvalue().splitlines(keepends=True)
                             if not REGISTERED.match(line)))
    return str(version.version)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def register_version(model_uri: str, name: str, run_id: str) -> str:
    """Register a training run's model and name it the `challenger`; returns the version. A retry after a
    failure anywhere in here registers nothing new and moves or records nothing twice."""
    version = register_model(model_uri, name, run_id)
    with registry_lock(name):
        change_alias(name, "challenger", version, f"new version from training run {run_id}")
    return version


def _registry_error(name: str, what: str) -> InputError:
    """`what` is missing from model `name`: the problem names the versions that do exist."""
    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
    present = f"versions present: {', '.join(map(str, versions))}" if versions else "no model of that name is registered"
    return InputError([Problem(f"model {name!r}: {what} ({present})", "check the name, version or alias (mlflow ui: Models)")])


def model_version(name: str, version: str):
    """A registered model version (MLflow's ModelVersion), or InputError."""
    try:
        return MlflowClient().get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise _registry_error(name, f"no version {version}") from None


def resolve_model_uri(uri: str):
    """The model version behind `models:/NAME@ALIAS` or `models:/NAME/VERSION`; None for other URIs
    (runs:/..., a folder), which are loaded as they are."""
    if not uri.startswith("models:/"):
        return None
    found = re.fullmatch(r"models:/([^/@]+)(?:@([^/@]+)|/(\d+))", uri)
    if found is None:
        raise InputError([Problem(f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION",
                                  "e.g. models:/lstm-forecaster@champion")])
    name, alias, version = found.groups()
    if version:
        return model_version(name, version)
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        raise _registry_error(name, f"no version has the alias {alias!r}") from None


def logged_model_id(version) -> str | None:
    """MLflow 3's id of the logged model behind a registered version (whose source is models:/<id>)."""
    source = version.source or ""
    return version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def alias_run(model_name: str, alias: str = "champion") -> tuple[str, str] | None:
    """(version, run_id) of the model version holding `alias`, or None."""
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return str(version.version), version.run_id


def actor() -> str:
    """Who changes the registry, for its audit records."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def account() -> str | None:
    """The tracking server's account the registry is changed as (MLflow's client sends these credentials,
    and the server took the change under them); None without one, or without a server."""
    if not mlflow.get_tracking_uri().startswith(("http://", "https://")):
        return None
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or None


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        MlflowClient().set_model_version_tag(name, version, key, str(value))


# The audit history: one registered-model tag per alias change, under a key of its own (sequence number and
# a random writer id), so that two writers add two records and neither can overwrite the other's.
AUDIT_PREFIX = "audit."
SET, ROLLBACK, DROP = "set", "rollback", "drop"


@dataclass(frozen=True)
class Change:
    """One alias change: `alias` went from version `previous` to `version` (None: the alias was dropped)."""

    seq: int
    alias: str
    action: str  # SET, ROLLBACK or DROP
    version: str | None
    previous: str | None
    at: str  # UTC, ISO 8601
    by: str  # user@host
    reason: str
    account: str | None = None  # the tracking server's account (records made before accounts have none)


def history(name: str) -> list[Change]:
    """Every recorded alias change of model `name`, oldest first."""
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except mlflow.exceptions.MlflowException:
        return []
    changes = [Change(**json.loads(value)) for key, value in tags.items() if key.startswith(AUDIT_PREFIX)]
    return sorted(changes, key=lambda c: (c.seq, c.at))


def _record(name: str, alias: str, action: str, version: str | None, previous: str | None, reason: str,
            seq: int) -> None:
    change = Change(seq, alias, action, version, previous, pd.Timestamp.now(tz="UTC").isoformat(), actor(), reason,
                    account())
    key = f"{AUDIT_PREFIX}{seq:06d}.{uuid.uuid4().hex[:8]}"
    MlflowClient().set_registered_model_tag(name, key, json.dumps(asdict(change)))


def change_alias(name: str, alias: str, version: str | None, reason: str, action: str = SET) -> None:
    """Point `alias` at `version` (None: drop it) and add the change to the audit history; who, when and why
    also go on the version's tags (`{alias}_by`, `{alias}_at`, `{alias}_reason`). Call it
    holding `locks.registry_lock(name)`. With nothing to change it does nothing, so a retried task neither
    moves nor records twice; and it completes the record of a change whose first try stopped after moving
    the alias."""
    changes = history(name)
    held = alias_run(name, alias)
    holder = held[0] if held else None
    recorded = next((c.version for c in reversed(changes) if c.alias == alias), None)
    if holder == version and recorded == version:
        return
    client = MlflowClient()
    if holder != version:
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)
    if version is not None:
        when = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
        set_version_tags(name, version, {f"{alias}_by": actor(), f"{alias}_at": when, f"{alias}_reason": reason})
    previous = holder if holder != version else recorded
    _record(name, alias, DROP if version is None else action, version, previous, reason,
            max((c.seq for c in changes), default=0) + 1)


def alias_trail(changes: list[Change], alias: str) -> list[str]:
    """The versions that held `alias`, as a stack: each change pushes its version, each rollback pops the
    change it undid. The last is the holder, the one before it what a rollback returns to; N rollbacks
    walk back N changes and end at the first holder, never in a cycle."""
    trail: list[str] = []
    for change in (c for c in changes if c.alias == alias):
        if change.action == DROP:
            trail = []
        elif change.action == ROLLBACK:
            trail = trail[:-1]
            if trail[-1:] != [change.version]:
                trail.append(change.version)
        else:
            if not trail and change.previous:  # the holder from before the audit history began
                trail.append(change.previous)
            trail.append(change.version)
    return trail
