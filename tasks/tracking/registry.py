"""The model registry: versions, the `champion`/`challenger` aliases, and who moved them, when and why."""

from __future__ import annotations

import getpass
import re
import socket

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import InputError, Problem


def register_model(model_uri: str, name: str, run_id: str) -> str:
    """A new version of the registered model; returns its version number. A second call for the same run
    (a retried task) returns the version the first one made instead of registering another."""
    made = MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if made:
        return str(min(int(v.version) for v in made))
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    return str(version.version)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def register_version(model_uri: str, name: str, run_id: str) -> str:
    """Register a training run's model and name it the `challenger`; returns the version."""
    version = register_model(model_uri, name, run_id)
    move_alias(name, "challenger", version, f"new version from training run {run_id}")
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
    """Who changes the registry, for its audit tags."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        MlflowClient().set_model_version_tag(name, version, key, str(value))


def _append_log(name: str, version: str, line: str) -> None:
    log = MlflowClient().get_model_version(name, version).tags.get("alias_log")
    set_version_tags(name, version, {"alias_log": f"{log}\n{line}" if log else line})


def move_alias(name: str, alias: str, version: str, reason: str, tags: dict[str, str] | None = None) -> None:
    """Point `alias` at `version`. Who, when and why go on the version's tags (`{alias}_by`, `{alias}_at`,
    `{alias}_reason`, plus `tags`) and, one line per change, into the `alias_log` tag of this version and
    of the one that held the alias before: the registry's audit trail."""
    before = alias_run(name, alias)
    when, who = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"), actor()
    MlflowClient().set_registered_model_alias(name, alias, version)
    set_version_tags(name, version, {f"{alias}_by": who, f"{alias}_at": when, f"{alias}_reason": reason, **(tags or {})})
    _append_log(name, version, f"{when} {alias} set by {who}: {reason}")
    if before and before[0] != version:
        _append_log(name, before[0], f"{when} {alias} moved to version {version} by {who}: {reason}")


def drop_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)
