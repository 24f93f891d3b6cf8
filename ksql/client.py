"""ksqlDB's REST API (/ksql, /query-stream, /info) and applying ksql/ migrations through it.

Applied migrations are recorded in ksqlDB itself, as the ksqlDB migrations tool does: every event goes
to the stream K2_MIGRATION_EVENTS and the table K2_MIGRATION_VERSIONS keeps the latest per version,
read back with a pull query. A second `apply` therefore does nothing, and a file changed after it was
applied is refused by its checksum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from .migrations import Migration, MigrationError, resolve

EVENTS_STREAM = "K2_MIGRATION_EVENTS"
VERSIONS_TABLE = "K2_MIGRATION_VERSIONS"
METADATA_STATEMENTS = (
    f"CREATE STREAM IF NOT EXISTS {EVENTS_STREAM} (version_key STRING KEY, version STRING, name STRING, "
    "checksum STRING, state STRING, applied_at STRING) "
    "WITH (KAFKA_TOPIC='_k2_ksql_migration_events', VALUE_FORMAT='JSON', PARTITIONS=1);",
    f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} WITH (KAFKA_TOPIC='_k2_ksql_migration_versions', "
    "VALUE_FORMAT='JSON', PARTITIONS=1) AS SELECT version_key, LATEST_BY_OFFSET(version) AS version, "
    "LATEST_BY_OFFSET(name) AS name, LATEST_BY_OFFSET(checksum) AS checksum, LATEST_BY_OFFSET(state) AS state, "
    f"LATEST_BY_OFFSET(applied_at) AS applied_at FROM {EVENTS_STREAM} GROUP BY version_key EMIT CHANGES;",
)
DELIMITED = "application/vnd.ksqlapi.delimited.v1"


class KsqlError(RuntimeError):
    """ksqlDB refused a statement or could not be reached; the message carries ksqlDB's own words."""

    def __init__(self, message: str, statement: str | None = None) -> None:
        super().__init__(message + (f" | statement: {' '.join(statement.split())[:300]}" if statement else ""))
        self.statement = statement


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: Iterator[list[Any]]


class KsqlClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _post(self, path: str, body: dict[str, Any], stream: bool = False, accept: str | None = None) -> Any:
        headers = {"Accept": accept} if accept else {"Accept": "application/vnd.ksql.v1+json"}
        try:
            return self.session.post(self.url + path, json=body, timeout=self.timeout, stream=stream, headers=headers)
        except requests.RequestException as exc:
            raise KsqlError(
                f"ksqlDB at {self.url} is unreachable ({type(exc).__name__}); start it with `docker compose up -d "
                "ksqldb-server` or point --ksql-url / K2_KSQL_URL at a running server"
            ) from exc

    @staticmethod
    def _error(response: requests.Response, statement: str | None) -> KsqlError:
        try:
            body = response.json()
            message = body.get("message") or str(body)
            statement = body.get("statementText") or statement
        except ValueError:
            message = response.text[:300]
        return KsqlError(f"ksqlDB refused it (HTTP {response.status_code}): {message}", statement)

    def execute(self, statement: str, properties: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Run one statement through POST /ksql and return ksqlDB's entities."""
        response = self._post("/ksql", {"ksql": statement, "streamsProperties": properties or {}})
        if response.status_code != 200:
            raise self._error(response, statement)
        entities: list[dict[str, Any]] = response.json()
        for entity in entities:
            status = entity.get("commandStatus", {})
            if status.get("status") == "ERROR":
                raise KsqlError(f"ksqlDB failed it: {status.get('message')}", statement)
        return entities

    def query(self, sql: str, properties: dict[str, str] | None = None) -> QueryResult:
        """A pull or push query through POST /query-stream (delimited: a header line, then one row per line)."""
        response = self._post("/query-stream", {"sql": sql, "properties": properties or {}}, True, DELIMITED)
        if response.status_code != 200:
            raise self._error(response, sql)
        lines = response.iter_lines()
        try:
            header = json.loads(next(lines))
        except StopIteration:
            raise KsqlError("ksqlDB closed the query without a header", sql) from None

        def rows() -> Iterator[list[Any]]:
            for line in lines:
                if not line:
                    continue
                item = json.loads(line)
                if isinstance(item, dict):  # an error or a completion message mid-stream
                    if item.get("@type") == "generic_error" or "error_code" in item:
                        raise KsqlError(f"ksqlDB stopped the query: {item.get('message')}", sql)
                    continue
                yield item
            response.close()

        return QueryResult(header.get("columnNames", []), header.get("columnTypes", []), rows())

    def info(self) -> dict[str, Any]:
        try:
            response = self.session.get(self.url + "/info", timeout=self.timeout)
        except requests.RequestException as exc:
            raise KsqlError(f"ksqlDB at {self.url} is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise self._error(response, None)
        return dict(response.json().get("KsqlServerInfo", {}))


def applied_versions(client: KsqlClient) -> dict[str, dict[str, Any]]:
    """version -> {name, checksum, state, applied_at} as recorded in ksqlDB."""
    result = client.query(f"SELECT * FROM {VERSIONS_TABLE};")
    columns = [c.lower() for c in result.columns]
    recorded = {}
    for row in result.rows:
        item = dict(zip(columns, row, strict=False))
        recorded[str(item["version"])] = item
    return recorded


def plan(migrations: list[Migration], recorded: dict[str, dict[str, Any]]) -> list[tuple[Migration, str]]:
    """(migration, state): applied, pending or changed (applied but the file differs)."""
    states = []
    for migration in migrations:
        seen = recorded.get(migration.version)
        if seen is None or seen.get("state") != "APPLIED":
            states.append((migration, "pending"))
        elif seen.get("checksum") != migration.checksum:
            states.append((migration, "changed"))
        else:
            states.append((migration, "applied"))
    return states


def _record(client: KsqlClient, migration: Migration, state: str) -> None:
    now = datetime.now(UTC).isoformat()

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    values = ", ".join(quoted(v) for v in (migration.version, migration.version, migration.name, migration.checksum))
    client.execute(
        f"INSERT INTO {EVENTS_STREAM} (version_key, version, name, checksum, state, applied_at) "
        f"VALUES ({values}, {quoted(state)}, {quoted(now)});"
    )


def apply(
    client: KsqlClient, migrations: list[Migration], variables: dict[str, str], wait_s: float = 30.0
) -> list[dict[str, str]]:
    """Run every pending migration in order; refuse if an applied one changed. Returns one row per file."""
    for metadata_statement in METADATA_STATEMENTS:
        client.execute(metadata_statement)
    recorded = applied_versions(client)
    states = plan(migrations, recorded)
    changed = [m.path.name for m, state in states if state == "changed"]
    if changed:
        raise MigrationError(
            f"{', '.join(changed)} changed after being applied (checksum differs from the one recorded in "
            f"{VERSIONS_TABLE}); applied migrations are immutable: add a new V<next>__*.sql instead"
        )
    rows = []
    for migration, state in states:
        if state == "applied":
            rows.append({"version": migration.version, "name": migration.name, "action": "unchanged"})
            continue
        for statement in resolve(migration, variables):
            try:
                client.execute(statement.text)
            except KsqlError as exc:
                _record(client, migration, "ERROR")
                raise KsqlError(f"{migration.path.name} line {statement.line}: {exc}") from exc
        _record(client, migration, "APPLIED")
        rows.append({"version": migration.version, "name": migration.name, "action": "applied"})
    # The versions table is fed asynchronously by a persistent query: wait until it shows this apply.
    deadline = time.monotonic() + wait_s
    expected = {m.version for m in migrations}
    while time.monotonic() < deadline:
        seen = applied_versions(client)
        if expected <= {v for v, item in seen.items() if item.get("state") == "APPLIED"}:
            break
        time.sleep(0.5)
    return rows
