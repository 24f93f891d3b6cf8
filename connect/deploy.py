"""Deploying connect/*.json to Kafka Connect: fill placeholders, validate, create or update, wait.

Each file is ``{"name": ..., "config": {...}}`` named after its connector. ``${NAME}`` placeholders are
filled here (see ``variables.toml``); ``${env:VAR}`` references are left for the Connect worker's
EnvVarConfigProvider, so secrets never pass through the CLI, its output or Connect's REST API.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .exceptions import ConnectError, ConnectorFailed, InvalidConfig, MissingTables

CONNECT_DIR = Path(__file__).resolve().parent
VARIABLES_FILE = CONNECT_DIR / "variables.toml"
ENV_PREFIX = "K2_CONNECTOR_"
RESTART_SETTLE = 15.0  # seconds a restarted part may still show its old FAILED state
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")  # ${NAME}; ${env:VAR} has a colon and is left alone


@dataclass(frozen=True)
class ConnectorFile:
    path: Path
    name: str
    config: dict[str, str]


def connector_files(paths: list[Path] | None = None) -> list[Path]:
    return sorted(paths) if paths else sorted(CONNECT_DIR.glob("*.json"))


def load_connector(path: Path) -> ConnectorFile:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConnectError(f"connector file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConnectError(f"{path} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConnectError(f"{path} is not a text file (not UTF-8 at byte {exc.start})") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("config"), dict):
        raise ConnectError(f'{path} must be {{"name": "...", "config": {{...}}}}')
    if path.stem != data["name"]:
        raise ConnectError(f"{path} holds connector {data['name']!r}; name the file {data['name']}.json")
    bad = [k for k, v in data["config"].items() if not isinstance(v, str)]
    if bad:
        raise ConnectError(f"{path}: config values must be strings (Connect's REST API): {', '.join(bad)}")
    return ConnectorFile(path, data["name"], dict(data["config"]))


def variable_values(
    settings: Mapping[str, str], topics: Mapping[str, str], overrides: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """Every known variable: --set over K2_CONNECTOR_<NAME> over variables.toml defaults."""
    with VARIABLES_FILE.open("rb") as handle:
        defaults: dict[str, str] = tomllib.load(handle).get("defaults", {})

    def expand(template: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key.startswith("topic:"):
                if key[6:] not in topics:
                    raise ConnectError(f"{VARIABLES_FILE}: unknown topic {key[6:]!r} in a default")
                return topics[key[6:]]
            if key not in settings:
                raise ConnectError(f"{VARIABLES_FILE}: unknown setting {{{key}}} in a default")
            return settings[key]

        return re.sub(r"\{([a-z_:\-]+)\}", one, template)

    values = {name: expand(str(value)) for name, value in defaults.items()}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and value != "":
            values[key[len(ENV_PREFIX) :]] = value
    values.update(overrides)
    return values


def fill(connector: ConnectorFile, values: Mapping[str, str]) -> dict[str, str]:
    """The config with every ${NAME} filled; one error listing every variable without a value."""
    missing = sorted(
        {name for value in connector.config.values() for name in PLACEHOLDER.findall(value) if not values.get(name)}
    )
    if missing:
        hints = ", ".join(f"{name} (--set {name}=... or {ENV_PREFIX}{name})" for name in missing)
        raise ConnectError(f"{connector.path.name}: no value for {hints}")
    return {k: PLACEHOLDER.sub(lambda m: values[m.group(1)], v) for k, v in connector.config.items()}


class ConnectClient:
    """The few Kafka Connect REST calls K2 needs, with errors as one readable line."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        try:
            response = self.session.request(method, self.url + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ConnectError(
                f"Kafka Connect at {self.url} is unreachable ({type(exc).__name__}); start the stack with "
                "`k2 stack up` or point --connect-url / K2_CONNECT_URL at a running worker"
            ) from exc
        if response.status_code == 404 and 404 not in ok:
            return None
        if response.status_code not in ok:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ConnectError(f"{method} {path} failed: HTTP {response.status_code}: {str(message)[:300]}")
        if response.status_code == 204 or not response.content:
            return {}
        return response.json()

    def validate(self, config: Mapping[str, str]) -> dict[str, list[str]]:
        """Connect's own validation: errors per config key (empty when valid)."""
        connector_class = config.get("connector.class", "")
        plugin = connector_class.rsplit(".", 1)[-1]
        result = self._call(
            "PUT", f"/connector-plugins/{plugin}/config/validate", dict(config), ok=(200, 400, 404, 500)
        )
        if result is None or "configs" not in result:
            message = (result or {}).get("message") or "no such connector plugin on the worker"
            return {"connector.class": [f"{connector_class}: {message}"]}
        errors: dict[str, list[str]] = {}
        for item in result["configs"]:
            value = item.get("value", {})
            if value.get("errors"):
                errors[value.get("name", "?")] = list(value["errors"])
        return errors

    def config(self, name: str) -> dict[str, str] | None:
        result = self._call("GET", f"/connectors/{name}/config")
        return None if result is None else dict(result)

    def put_config(self, name: str, config: Mapping[str, str]) -> None:
        self._call("PUT", f"/connectors/{name}/config", dict(config))

    def status(self, name: str) -> dict[str, Any] | None:
        result = self._call("GET", f"/connectors/{name}/status")
        return None if result is None else dict(result)

    def names(self) -> list[str]:
        return list(self._call("GET", "/connectors") or [])

    def restart_failed(self, name: str) -> bool:
        """Restart the connector and those of its tasks that FAILED (KIP-745); True if anything was failed."""
        status = self.status(name)
        if status is None or not failed_parts(status):
            return False
        self._call("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")
        return True

    def action(self, method: str, path: str) -> None:
        if self._call(method, path) is None:
            raise ConnectError(f"no connector at {self.url}{path.rsplit('/', 1)[0] if path.count('/') > 2 else path}")


def failed_parts(status: Mapping[str, Any]) -> list[str]:
    """``connector`` and/or ``task N`` for each part of a connector status that is FAILED."""
    parts = ["connector"] if status["connector"]["state"] == "FAILED" else []
    return parts + [f"task {t['id']}" for t in status.get("tasks", []) if t["state"] == "FAILED"]


def tables_written(config: Mapping[str, str]) -> list[str]:
    """The Iceberg tables a sink config writes to and expects to exist; empty when it creates or routes its own."""
    if not config.get("connector.class", "").endswith("IcebergSinkConnector"):
        return []
    if "true" in (config.get("iceberg.tables.auto-create-enabled"), config.get("iceberg.tables.dynamic-enabled")):
        return []
    return [t.strip() for t in config.get("iceberg.tables", "").split(",") if t.strip()]


def check_tables(name: str, config: Mapping[str, str], catalog_uri: str) -> None:
    """Raise MissingTables unless every table the sink writes to exists in its catalog.

    The sink's own ``iceberg.catalog.uri`` is asked when it answers from here; a name only the Connect
    worker resolves (Compose's http://catalog:8181) falls back to ``catalog_uri``, the CLI's view of the
    same catalog.
    """
    tables = tables_written(config)
    if not tables or config.get("iceberg.catalog.type", "rest") != "rest":
        return
    from .tables import rest_catalog

    uri = config.get("iceberg.catalog.uri") or catalog_uri
    try:
        catalog = rest_catalog(uri)
    except ConnectError:
        if uri == catalog_uri:
            raise
        uri = catalog_uri
        catalog = rest_catalog(uri)
    missing = [table for table in tables if not catalog.table_exists(table)]
    if missing:
        raise MissingTables(name, missing, uri)


def deploy(
    client: ConnectClient,
    connector: ConnectorFile,
    config: dict[str, str],
    dry_run: bool,
    catalog_uri: str,
) -> str:
    """Validate, check the sink's tables, then create or update.

    Returns Created / Updated / Unchanged, Restarted when an unchanged connector had FAILED parts and
    they were restarted, or Valid for a dry run (naming the declared tables `k2 tables apply` must
    create first; a table nobody declares stays an error).
    """
    errors = client.validate({"name": connector.name, **config})
    if errors:
        raise InvalidConfig(connector.name, errors)
    try:
        check_tables(connector.name, config, catalog_uri)
    except MissingTables as exc:
        from .tables import load_table_specs

        if not dry_run or not set(exc.tables) <= set(load_table_specs()):
            raise
        return f"Valid once `k2 tables apply` creates {', '.join(exc.tables)}"
    if dry_run:
        return "Valid"
    current = client.config(connector.name)
    if current is not None:
        current.pop("name", None)
        if current == config:
            return "Restarted" if client.restart_failed(connector.name) else "Unchanged"
    client.put_config(connector.name, config)
    return "Created" if current is None else "Updated"


def trace_summary(trace: str) -> str:
    """The first line of a Java stack trace and its root cause."""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    parts = [lines[0]] if lines else []
    if causes:
        parts.append(causes[-1])
    return " | ".join(parts)


def wait_running(
    client: ConnectClient,
    name: str,
    timeout: float,
    progress: Callable[[str], None] | None = None,
    restarted: bool = False,
) -> dict[str, Any]:
    """Wait until the connector and all its tasks are RUNNING; raise ConnectorFailed on FAILED.

    After a restart (``restarted``) the worker may still report the old FAILED state for a moment: a part
    counts as failed again only once it was seen in another state, or after RESTART_SETTLE seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    state = "UNKNOWN"
    stale: set[str] | None = None
    while time.monotonic() < deadline:
        status = client.status(name)
        if status:
            connector_state = status["connector"]["state"]
            tasks = status.get("tasks", [])
            failed = failed_parts(status)
            if restarted and stale is None:
                stale = set(failed)
            if stale is not None:
                stale &= set(failed)  # a part seen in another state since the restart is no longer stale
                if time.monotonic() - started > RESTART_SETTLE:
                    stale.clear()
            if [part for part in failed if part not in (stale or set())]:
                failed_tasks = [t for t in tasks if t["state"] == "FAILED"]
                trace = status["connector"].get("trace") or (failed_tasks[0].get("trace", "") if failed_tasks else "")
                raise ConnectorFailed(name, trace_summary(trace))
            state = f"connector {connector_state}, tasks " + (",".join(t["state"] for t in tasks) or "none yet")
            if connector_state == "RUNNING" and tasks and all(t["state"] == "RUNNING" for t in tasks):
                return status
        if progress:
            progress(f"Waiting for {name}: {state} ({deadline - time.monotonic():.0f}s left)")
        time.sleep(0.5)
    raise ConnectError(f"{name} not RUNNING within {timeout:.0f}s ({state}); see `k2 stack logs connect`")
