"""`stack up|status|down`: the local or team stack of servers; `stack user add|remove|list`: people's
accounts on the team stack's MLflow server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.app import app, user_errors

stack_app = typer.Typer(help="The local or team stack: Prefect and MLflow servers, worker, deployments, reaper.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
StackHome = Annotated[Path, typer.Option("--home", help="Where state, logs, secrets and the databases live")]


@stack_app.command("up")
def stack_up(prefect_port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
             mlflow_port: Annotated[int, typer.Option(help="MLflow server port")] = 5000,
             home: StackHome = Path(".stack"),
             prefect_file: Annotated[Path, typer.Option(help="Deployments to apply")] = Path("prefect.yaml"),
             db: Annotated[Optional[str], typer.Option(help="sqlite (one user) or postgresql (a team); "
                                                            "default: what this stack used last, else sqlite")] = None,
             db_url: Annotated[Optional[str], typer.Option(help="An existing PostgreSQL server instead of the stack's "
                                                                "own: postgresql://USER:PASSWORD@HOST:PORT")] = None,
             db_port: Annotated[int, typer.Option(help="Port of the stack's own PostgreSQL (127.0.0.1)")] = 5433,
             host: Annotated[str, typer.Option(help="Interface the servers listen on; 0.0.0.0 for other "
                                                    "machines (needs --auth, and --tls)")] = "127.0.0.1",
             auth: Annotated[bool, typer.Option("--auth", help="MLflow basic auth and Prefect's auth string, "
                                                               "secrets generated into --home")] = False,
             tls: Annotated[bool, typer.Option("--tls", help="Both servers on HTTPS, with --cert/--key or a "
                                                             "certificate made for this host on the first start")] = False,
             cert: Annotated[Optional[Path], typer.Option(help="The servers' certificate (PEM, with its chain); "
                                                               "implies --tls")] = None,
             key: Annotated[Optional[Path], typer.Option(help="The certificate's private key (PEM)")] = None,
             insecure_off_host: Annotated[bool, typer.Option("--insecure-off-host", help="Let a --host other than "
                                                             "loopback serve plain HTTP (passwords readable on the "
                                                             "network)")] = False,
             dead_after: Annotated[int, typer.Option(help="Seconds without a heartbeat before a flow run is "
                                                          "marked Crashed")] = 300) -> None:
    """Start the servers, the work pool, a worker and the reaper, and deploy prefect.yaml."""
    from services import stack

    with user_errors():
        saved = stack.Stack.load(home)
        db = db or ("postgresql" if db_url else saved.db if saved else "sqlite")
        started = stack.up(stack.Stack(home, prefect_port, mlflow_port, host=host, auth=auth, db=db, db_port=db_port,
                                       dead_after=dead_after, tls=tls or bool(cert or key),
                                       cert=str(cert) if cert else None, key=str(key) if key else None,
                                       insecure_off_host=insecure_off_host), prefect_file, db_url=db_url)
    _print_stack(started)


@stack_app.command("status")
def stack_status(home: StackHome = Path(".stack")) -> None:
    """What runs, with its process id, where the UIs are and how other shells and machines connect."""
    from services import stack

    processes = stack.status(home)
    if not processes:
        typer.echo("the stack is down (start it with `lstm-pipeline stack up`)")
        raise typer.Exit(1)
    for name, pid, alive in processes:
        typer.echo(f"{name:15} pid {pid:<8} {'running' if alive else 'STOPPED (see ' + str(home / (name + '.log')) + ')'}")
    _print_stack(stack.Stack.load(home))


@stack_app.command("down")
def stack_down(home: StackHome = Path(".stack")) -> None:
    """Stop exactly what `stack up` started (PostgreSQL too); runs, versions and aliases stay."""
    from services import stack

    stopped = stack.down(home)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the stack was not running")


user_app = typer.Typer(help="People's accounts on the team stack's MLflow server (a stack up with --auth).",
                       no_args_is_help=True)
stack_app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(name: Annotated[str, typer.Argument(help="The account's name, e.g. alice")],
             write: Annotated[bool, typer.Option("--write", help="May write: log runs, register versions, move "
                                                                 "aliases (default: reads only)")] = False,
             home: StackHome = Path(".stack")) -> None:
    """Make an account; its password is generated and shown this once."""
    from services import accounts, stack

    with user_errors():
        password = accounts.add(stack.running_with_auth(home), name, write)
    typer.echo(f"account {name} ({'writer' if write else 'reader'}) made; its password, shown this once, in the two "
               f"variables its owner sets after sourcing client.env:\n"
               f"export MLFLOW_TRACKING_USERNAME={name} MLFLOW_TRACKING_PASSWORD={password}")


@user_app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="The account's name")], home: StackHome = Path(".stack")) -> None:
    """Remove an account (what it recorded stays)."""
    from services import accounts, stack

    with user_errors():
        accounts.remove(stack.running_with_auth(home), name)
    typer.echo(f"account {name} removed")


@user_app.command("list")
def user_list(home: StackHome = Path(".stack")) -> None:
    """Every account and what it may do."""
    from services import accounts, stack

    with user_errors():
        found = accounts.accounts(stack.running_with_auth(home))
    for account in found:
        typer.echo(f"{account.name:24} {account.role}")


def _print_stack(s) -> None:
    from services.credentials import CLIENT_ENV

    typer.echo(f"Prefect UI:  {s.scheme}://{s.public_host}:{s.prefect_port}\nMLflow UI:   {s.scheme}://{s.public_host}:{s.mlflow_port}\n"
               f"database:    {s.db}{' (authentication on)' if s.auth else ''}\n"
               + (f"TLS:         clients trust {s.verify}\n" if s.tls else "") +
               f"commands run in this folder use these servers (PREFECT_API_URL={s.prefect_api}, "
               f"MLFLOW_TRACKING_URI={s.mlflow_uri})")
    typer.echo(f"elsewhere (other shells, workers, Dask workers, teammates' machines): "
               f". {(s.home / CLIENT_ENV).resolve()}"
               + ("   (it holds Prefect's auth string: copy it only over a safe channel)\n"
                  "accounts:    one per person, `lstm-pipeline stack user add NAME [--write]`" if s.auth else ""))
