"""``k2 deploy-connectors`` and ``k2 connectors``: the connector files of connect/ on Kafka Connect."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import DURATION, assignments
from .output import Progress, emit, format_option
from .settings import Settings

if TYPE_CHECKING:
    from k2.connect.deploy import ConnectClient


def _settings_map(settings: Settings) -> dict[str, str]:
    return {
        "catalog_uri": settings.catalog_uri,
        "bootstrap_servers": settings.bootstrap_servers,
        "registry_url": settings.registry_url,
        "connect_url": settings.connect_url,
    }


@click.command(name="deploy-connectors")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Fill a ${NAME} placeholder (repeatable).")
@click.option("--dry-run", is_flag=True, help="Fill and validate only; change nothing on the worker.")
@click.option("--timeout", type=DURATION, default="120s", show_default=True, help="How long to wait for RUNNING.")
@format_option()
@click.pass_obj
def deploy_connectors(
    settings: Settings, files: tuple[Path, ...], sets: tuple[str, ...], dry_run: bool, timeout: float, fmt: str
) -> None:
    """Deploy connector configs (default: every connect/*.json) to Kafka Connect, idempotently.

    Fills ${NAME} placeholders (--set NAME=VALUE, else K2_CONNECTOR_<NAME>, else connect/variables.toml),
    validates with Connect, creates or updates only what changed, then waits for the connector and all
    its tasks to be RUNNING. ${env:VAR} references (secrets) are resolved by the worker, never here.

    \b
    Examples:
      k2 deploy-connectors
      k2 deploy-connectors --dry-run --format json
      k2 deploy-connectors connect/k2-iceberg-trades.json --set COMMIT_INTERVAL_MS=5000
      k2 deploy-connectors --set CATALOG_URI=http://catalog:8181 --set S3_ENDPOINT=http://minio:9000
    """
    rows, failed = deploy_all(settings, files, assignments(sets, "--set"), dry_run, timeout, announce=fmt == "table")
    emit(rows, fmt, DEPLOY_COLUMNS)
    if failed:
        sys.exit(1)


DEPLOY_COLUMNS = ("connector", "result", "state", "file")


def deploy_all(
    settings: Settings,
    files: tuple[Path, ...],
    overrides: dict[str, str],
    dry_run: bool,
    timeout: float,
    announce: bool,
) -> tuple[list[dict[str, str]], bool]:
    """Deploy the connector files (default: connect/*.json) and wait for RUNNING: what `k2 deploy-connectors`
    and `k2 run` do. Returns one row per connector and whether any was refused (each refusal is printed)."""
    from k2.connect.deploy import (
        ConnectClient,
        connector_files,
        deploy,
        fill,
        load_connector,
        variable_values,
        wait_running,
    )
    from k2.connect.exceptions import InvalidConfig, MissingTables
    from k2.schemas.contract import load_topics

    topics = {key: spec.name for key, spec in load_topics().items()}
    values = variable_values(_settings_map(settings), topics, overrides, os.environ)
    connectors = [load_connector(path) for path in connector_files(list(files))]
    if not connectors:
        raise click.UsageError("no connector files found in connect/")
    filled = [(c, fill(c, values)) for c in connectors]  # every missing variable fails before any change
    client = ConnectClient(settings.connect_url)
    rows = []
    failed = False
    for connector, config in filled:
        try:
            outcome = deploy(client, connector, config, dry_run, settings.catalog_uri)
        except InvalidConfig as exc:
            failed = True
            for key, messages in sorted(exc.errors.items()):
                click.echo(f"Error: {connector.name}: {key}: {' '.join(messages)}", err=True)
            rows.append({"connector": connector.name, "result": "Invalid", "state": "", "file": str(connector.path)})
            continue
        except MissingTables as exc:
            failed = True
            click.echo(f"Error: {exc}", err=True)
            rows.append(
                {"connector": connector.name, "result": "Missing table", "state": "", "file": str(connector.path)}
            )
            continue
        state = ""
        if not dry_run:
            if announce:
                click.echo(f"{outcome} connector {connector.name}", err=True)
            wait_running(client, connector.name, timeout, Progress(), restarted=outcome == "Restarted")
            state = "RUNNING"
        rows.append({"connector": connector.name, "result": outcome, "state": state, "file": str(connector.path)})
    return rows, failed


@click.group()
def connectors() -> None:
    """Inspect and operate the connectors on Kafka Connect.

    Without NAME, pause/resume/restart/delete act only on the connectors defined in connect/*.json;
    a connector K2 does not define (another team's) is acted on only when named.

    \b
    Examples:
      k2 connectors status
      k2 connectors restart k2-iceberg-trades
      k2 connectors pause --dry-run --format json
      k2 connectors delete --yes
    """


def _ours() -> set[str]:
    from k2.connect.deploy import connector_files, load_connector

    return {load_connector(path).name for path in connector_files()}


def _targets(client: ConnectClient, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(connectors to act on, deployed connectors left alone). Named ones must exist on the worker."""
    deployed = client.names()
    if names:
        unknown = [n for n in names if n not in deployed]
        if unknown:
            raise click.ClickException(
                f"no connector {', '.join(unknown)} on {client.url}; deployed: {', '.join(sorted(deployed)) or 'none'}"
            )
        return list(dict.fromkeys(names)), []
    ours = _ours()
    return sorted(n for n in deployed if n in ours), sorted(n for n in deployed if n not in ours)


def _status_rows(settings: Settings, names: tuple[str, ...]) -> list[dict[str, object]]:
    from k2.connect.deploy import ConnectClient, trace_summary

    client = ConnectClient(settings.connect_url)
    ours = _ours()
    rows: list[dict[str, object]] = []
    for connector in names or sorted(client.names()):
        status = client.status(connector)
        if status is None:
            raise click.ClickException(
                f"no connector {connector!r} on {settings.connect_url}; deployed: {', '.join(client.names()) or 'none'}"
            )
        tasks = status.get("tasks", [])
        traces = [trace_summary(t["trace"]) for t in tasks if t.get("trace")]
        rows.append(
            {
                "connector": connector,
                "defined_in": "connect/" if connector in ours else "",
                "state": status["connector"]["state"],
                "tasks": ",".join(f"{t['id']}:{t['state']}" for t in tasks),
                "worker": status["connector"].get("worker_id", ""),
                "error": traces[0] if traces else "",
            }
        )
    return rows


@connectors.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@format_option()
@click.pass_obj
def status(settings: Settings, names: tuple[str, ...], fmt: str) -> None:
    """State of every connector on the worker (or each NAME) and its tasks.

    Exits 1 unless every connector defined in connect/*.json (or every NAME given) and all its tasks
    are RUNNING; other teams' connectors are listed but do not change the exit status.

    \b
    Examples:
      k2 connectors status
      k2 connectors status k2-iceberg-trades --format json
    """
    rows = _status_rows(settings, names)
    emit(rows, fmt, ("connector", "defined_in", "state", "tasks", "worker", "error"))
    judged = [r for r in rows if names or r["defined_in"]]
    if any(r["state"] != "RUNNING" or "FAILED" in str(r["tasks"]) for r in judged):
        sys.exit(1)


def _action(verb: str, method: str, path: str, help_text: str) -> click.Command:
    @click.argument("names", nargs=-1, metavar="[NAME]...")
    @click.option("--dry-run", is_flag=True, help=f"List the connectors that would {verb}; change nothing.")
    @format_option()
    @click.pass_obj
    def command(settings: Settings, names: tuple[str, ...], dry_run: bool, fmt: str, **extra: bool) -> None:
        from k2.connect.deploy import ConnectClient

        client = ConnectClient(settings.connect_url)
        targets, others = _targets(client, names)
        if others:
            click.echo(
                f"Leaving {len(others)} connector(s) K2 does not define alone: {', '.join(others)} "
                f"(name one to {verb} it)",
                err=True,
            )
        if not targets:
            click.echo(f"No connector to {verb}: none of connect/*.json is deployed on {client.url}.", err=True)
            emit([], fmt, ("connector", "action"))
            return
        click.echo(f"{'Would ' + verb if dry_run else verb.capitalize()}: {', '.join(targets)}", err=True)
        if verb == "delete" and not dry_run and not extra.get("yes"):
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"refusing to delete {', '.join(targets)} without --yes (input is not a terminal)"
                )
            click.confirm(f"Delete {len(targets)} connector(s) from {client.url}?", abort=True, err=True)
        for connector in targets:
            if not dry_run:
                client.action(method, path.format(name=connector))
        action = f"would {verb}" if dry_run else ACTIONS_DONE[verb]
        emit([{"connector": n, "action": action} for n in targets], fmt, ("connector", "action"))

    command.__doc__ = help_text
    if verb == "delete":
        command = click.option("--yes", is_flag=True, help="Delete without asking (needed when not on a terminal).")(
            command
        )
    return connectors.command(name=verb)(command)


ACTIONS_DONE = {"pause": "paused", "resume": "resumed", "restart": "restarted", "delete": "deleted"}
_BULK = "Without NAME: every connector of connect/*.json that is deployed (others are listed and left alone)."

_action(
    "pause",
    "PUT",
    "/connectors/{name}/pause",
    f"Pause connectors.\n\n{_BULK}\n\n\b\nExamples:\n  k2 connectors pause\n  k2 connectors pause k2-iceberg-trades",
)
_action(
    "resume",
    "PUT",
    "/connectors/{name}/resume",
    f"Resume paused connectors.\n\n{_BULK}\n\n\b\nExamples:\n  k2 connectors resume\n  k2 connectors resume --dry-run",
)
_action(
    "restart",
    "POST",
    "/connectors/{name}/restart?includeTasks=true",
    f"Restart connectors and their tasks.\n\n{_BULK}\n\n\b\nExamples:\n  k2 connectors restart k2-iceberg-trades",
)
_action(
    "delete",
    "DELETE",
    "/connectors/{name}",
    f"Delete connectors from the worker (their files stay in connect/). Asks first; --yes when not on a "
    f"terminal.\n\n{_BULK}\n\n\b\nExamples:\n  k2 connectors delete k2-iceberg-trades\n  k2 connectors delete --yes",
)
