"""``k2 deploy-connectors`` and ``k2 connectors``: the connector files of connect/ on Kafka Connect."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .options import assignments
from .output import Progress, emit, format_option
from .settings import Settings


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
@click.option("--timeout", type=float, default=120, show_default=True, help="Seconds to wait for RUNNING.")
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
    from k2.connect.deploy import ConnectClient, connector_files, deploy, fill, load_connector, variable_values
    from k2.connect.exceptions import InvalidConfig
    from k2.schemas.contract import load_topics

    topics = {key: spec.name for key, spec in load_topics().items()}
    values = variable_values(_settings_map(settings), topics, assignments(sets, "--set"), os.environ)
    connectors = [load_connector(path) for path in connector_files(list(files))]
    if not connectors:
        raise click.UsageError("no connector files found in connect/")
    filled = [(c, fill(c, values)) for c in connectors]  # every missing variable fails before any change
    client = ConnectClient(settings.connect_url)
    rows = []
    failed = False
    for connector, config in filled:
        try:
            outcome = deploy(client, connector, config, dry_run)
        except InvalidConfig as exc:
            failed = True
            for key, messages in sorted(exc.errors.items()):
                click.echo(f"Error: {connector.name}: {key}: {' '.join(messages)}", err=True)
            rows.append({"connector": connector.name, "result": "Invalid", "state": "", "file": str(connector.path)})
            continue
        state = ""
        if not dry_run:
            if fmt == "table":
                click.echo(f"{outcome} connector {connector.name}", err=True)
            from k2.connect.deploy import wait_running

            wait_running(client, connector.name, timeout, Progress())
            state = "RUNNING"
        rows.append({"connector": connector.name, "result": outcome, "state": state, "file": str(connector.path)})
    emit(rows, fmt, ("connector", "result", "state", "file"))
    if failed:
        sys.exit(1)


@click.group()
def connectors() -> None:
    """Inspect and operate the connectors on Kafka Connect.

    \b
    Examples:
      k2 connectors status
      k2 connectors restart k2-iceberg-trades
      k2 connectors pause k2-iceberg-trades --format json
    """


def _names(client: object, name: str | None) -> list[str]:
    from k2.connect.deploy import ConnectClient

    assert isinstance(client, ConnectClient)
    return [name] if name else sorted(client.names())


def _status_rows(settings: Settings, name: str | None) -> list[dict[str, object]]:
    from k2.connect.deploy import ConnectClient, trace_summary
    from k2.connect.exceptions import ConnectError

    client = ConnectClient(settings.connect_url)
    rows: list[dict[str, object]] = []
    for connector in _names(client, name):
        status = client.status(connector)
        if status is None:
            raise ConnectError(f"no connector {connector!r} on {settings.connect_url}; deployed: {client.names()}")
        tasks = status.get("tasks", [])
        traces = [trace_summary(t["trace"]) for t in tasks if t.get("trace")]
        rows.append(
            {
                "connector": connector,
                "state": status["connector"]["state"],
                "tasks": ",".join(f"{t['id']}:{t['state']}" for t in tasks),
                "worker": status["connector"].get("worker_id", ""),
                "error": traces[0] if traces else "",
            }
        )
    return rows


@connectors.command()
@click.argument("name", required=False)
@format_option()
@click.pass_obj
def status(settings: Settings, name: str | None, fmt: str) -> None:
    """State of each connector (or NAME) and its tasks; exits 1 unless all are RUNNING.

    \b
    Examples:
      k2 connectors status
      k2 connectors status k2-iceberg-trades --format json
    """
    rows = _status_rows(settings, name)
    emit(rows, fmt, ("connector", "state", "tasks", "worker", "error"))
    if any(r["state"] != "RUNNING" or "FAILED" in str(r["tasks"]) for r in rows):
        sys.exit(1)


def _action(verb: str, method: str, path: str, help_text: str) -> click.Command:
    @click.argument("name", required=False)
    @format_option()
    @click.pass_obj
    def command(settings: Settings, name: str | None, fmt: str) -> None:
        from k2.connect.deploy import ConnectClient

        client = ConnectClient(settings.connect_url)
        names = _names(client, name)
        for connector in names:
            client.action(method, path.format(name=connector))
        emit([{"connector": n, "action": verb} for n in names], fmt)

    command.__doc__ = help_text
    return connectors.command(name=verb)(command)


_action(
    "pause",
    "PUT",
    "/connectors/{name}/pause",
    "Pause a connector (default: all).\n\n\b\nExamples:\n  k2 connectors pause k2-iceberg-trades",
)
_action(
    "resume",
    "PUT",
    "/connectors/{name}/resume",
    "Resume a paused connector (default: all).\n\n\b\nExamples:\n  k2 connectors resume k2-iceberg-trades",
)
_action(
    "restart",
    "POST",
    "/connectors/{name}/restart?includeTasks=true",
    "Restart a connector and its tasks (default: all).\n\n\b\nExamples:\n  k2 connectors restart k2-iceberg-trades",
)
_action(
    "delete",
    "DELETE",
    "/connectors/{name}",
    "Delete a connector from the worker (its file stays in connect/).\n\n\b\nExamples:\n"
    "  k2 connectors delete k2-iceberg-trades",
)
