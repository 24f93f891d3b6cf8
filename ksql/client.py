"""ksqlDB's REST API (/ksql, /query-stream, /info) and applying ksql/ migrations through it.

Applied migrations are recorded in ksqlDB the way ksqlDB's own migrations tool (ksql-migrations 0.29)
records them, so either tool can run against the same server and `ksql-migrations info` shows what
`k2 ksql apply` did (read in ksqldb-tools at v0.29.0):

* the stream MIGRATION_EVENTS and the table MIGRATION_SCHEMA_VERSIONS, with the columns, key and
  LATEST_BY_OFFSET table of InitializeMigrationCommand, on the topics ``<service id>ksql_<name>``
  (MigrationConfig; the service id is /info's ksqlServiceId);
* per state change two events, key CURRENT then the version (MetadataUtil.writeRow): RUNNING, then
  MIGRATED or ERROR (MetadataUtil.MigrationState, ApplyMigrationCommand); the version as "1" for
  V000001, the name with "_" read as a space, the file's MD5 (MigrationsDirectoryUtil.computeHashForFile),
  times in epoch milliseconds, ``previous`` the version migrated before it or "<none>", and
  ``error_reason`` "N/A" unless it failed.

Numbers in query rows are parsed exactly: ksqlDB writes DECIMALs as plain JSON numbers with every
digit (ApiJsonMapper, WRITE_BIGDECIMAL_AS_PLAIN), and they become Decimals here, never floats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from . import READY_WAIT_S
from .migrations import Migration, MigrationError, created, resolve

EVENTS_STREAM = "MIGRATION_EVENTS"
VERSIONS_TABLE = "MIGRATION_SCHEMA_VERSIONS"
VALUE_COLUMNS = ("version", "name", "state", "checksum", "started_on", "completed_on", "previous", "error_reason")
CURRENT = "CURRENT"
NO_VERSION = "<none>"
NO_ERROR = "N/A"
DELIMITED = "application/vnd.ksqlapi.delimited.v1"
# A pull query on a table whose persistent query has not finished its first rebalance (just created,
# or restarting) fails with this (KsLocator); it is worth retrying for a while.
NOT_READY = "Cannot determine which host contains the required partitions"


def metadata_statements(service_id: str) -> tuple[str, str]:
    """The migration record's stream and table, as `ksql-migrations initialize-metadata` creates them."""
    columns = ", ".join(f"{c} STRING" for c in VALUE_COLUMNS)
    latest = ", ".join(f"LATEST_BY_OFFSET({c}) AS {c}" for c in VALUE_COLUMNS)
    return (
        f"CREATE STREAM IF NOT EXISTS {EVENTS_STREAM} (version_key STRING KEY, {columns}) "
        f"WITH (KAFKA_TOPIC='{service_id}ksql_{EVENTS_STREAM}', VALUE_FORMAT='JSON', PARTITIONS=1, REPLICAS=1);",
        f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} WITH (KAFKA_TOPIC='{service_id}ksql_{VERSIONS_TABLE}') AS "
        f"SELECT version_key, {latest} FROM {EVENTS_STREAM} GROUP BY version_key;",
    )


class KsqlError(RuntimeError):
    """ksqlDB refused a statement or could not be reached; the message carries ksqlDB's own words."""

    def __init__(self, message: str, statement: str | None = None) -> None:
        super().__init__(message + (f" | statement: {' '.join(statement.split())[:300]}" if statement else ""))
        self.statement = statement


class NotReady(KsqlError):
    """A pull query's table cannot be served yet (its query is still starting)."""


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
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> KsqlError:
        return KsqlError(
            f"ksqlDB at {self.url} is unreachable ({type(exc).__name__}); start it with `docker compose up -d "
            "ksqldb-server` or point --ksql-url / K2_KSQL_URL at a running server"
        )

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
            error = self._error(response, sql)
            if NOT_READY in str(error):
                raise NotReady(str(error)) from None
            raise error
        lines = response.iter_lines()
        try:
            header = json.loads(next(lines))
        except StopIteration:
            raise KsqlError("ksqlDB closed the query without a header", sql) from None

        def rows() -> Iterator[list[Any]]:
            for line in lines:
                if not line:
                    continue
                item = json.loads(line, parse_float=Decimal)  # DECIMAL columns keep every digit
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
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            raise self._error(response, None)
        return dict(response.json().get("KsqlServerInfo", {}))


def pull(client: KsqlClient, sql: str, wait_s: float = READY_WAIT_S) -> list[dict[str, Any]]:
    """A pull query's rows as dicts (lower-case columns), retried while its table is not ready yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            result = client.query(sql)
            columns = [c.lower() for c in result.columns]
            return [dict(zip(columns, row, strict=False)) for row in result.rows]
        except NotReady as exc:
            if time.monotonic() >= deadline:
                raise KsqlError(
                    f"ksqlDB could not serve a pull query for {wait_s:.0f}s ({NOT_READY}): the table's query is "
                    "still starting; run the command again in a minute"
                ) from exc
            time.sleep(1.0)


def applied_versions(client: KsqlClient, wait_s: float = READY_WAIT_S) -> dict[str, dict[str, Any]]:
    """Version ("1") -> its latest record {version, name, state, checksum, ...}; CURRENT left out."""
    rows = pull(client, f"SELECT * FROM {VERSIONS_TABLE};", wait_s)
    return {str(row["version_key"]): row for row in rows if row.get("version_key") != CURRENT}


def plan(migrations: list[Migration], recorded: dict[str, dict[str, Any]]) -> list[tuple[Migration, str]]:
    """(migration, state): applied, pending (never run, or RUNNING/ERROR) or changed (MIGRATED from another text)."""
    states = []
    for migration in migrations:
        seen = recorded.get(migration.number)
        if seen is None or seen.get("state") != "MIGRATED":
            states.append((migration, "pending"))
        elif seen.get("checksum") != migration.checksum:
            states.append((migration, "changed"))
        else:
            states.append((migration, "applied"))
    return states


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _record(client: KsqlClient, migration: Migration, state: str, started_on: str, previous: str, error: str) -> None:
    completed_on = "" if state == "RUNNING" else str(int(time.time() * 1000))
    values = (migration.number, migration.description, state, migration.checksum, started_on, completed_on, previous,
              error)  # fmt: skip
    columns = ", ".join(("version_key", *VALUE_COLUMNS))
    for key in (CURRENT, migration.number):  # CURRENT first, as ksql-migrations writes them
        client.execute(
            f"INSERT INTO {EVENTS_STREAM} ({columns}) VALUES ({', '.join(_quoted(v) for v in (key, *values))});"
        )


def apply(
    client: KsqlClient, migrations: list[Migration], variables: dict[str, str], wait_s: float = READY_WAIT_S
) -> list[dict[str, str]]:
    """Run every pending migration in order; refuse if an applied one changed. Returns one row per file."""
    service_id = str(client.info().get("ksqlServiceId") or "default_")
    for metadata_statement in metadata_statements(service_id):
        client.execute(metadata_statement)
    # The table was maybe created just now: its pull queries may need a moment (pull() waits).
    states = plan(migrations, applied_versions(client, wait_s))
    changed = [m.path.name for m, state in states if state == "changed"]
    if changed:
        raise MigrationError(
            f"{', '.join(changed)} changed after being applied (its MD5 differs from the one recorded in "
            f"{VERSIONS_TABLE}); applied migrations are immutable: add a new V<next>__*.sql instead"
        )
    rows = []
    previous = NO_VERSION
    for migration, state in states:
        if state == "applied":
            rows.append({"version": migration.version, "name": migration.name, "action": "unchanged"})
            previous = migration.number
            continue
        started_on = str(int(time.time() * 1000))
        _record(client, migration, "RUNNING", started_on, previous, NO_ERROR)
        for statement in resolve(migration, variables):
            try:
                client.execute(statement.text)
            except KsqlError as exc:
                reason = f"Failed to execute sql: {' '.join(statement.text.split())[:200]}. Error: {exc}"
                _record(client, migration, "ERROR", started_on, previous, reason)
                raise KsqlError(f"{migration.path.name} line {statement.line}: {exc}") from exc
        _record(client, migration, "MIGRATED", started_on, previous, NO_ERROR)
        rows.append({"version": migration.version, "name": migration.name, "action": "applied"})
        previous = migration.number
    # The versions table is fed asynchronously by a persistent query: wait until it shows this apply.
    deadline = time.monotonic() + wait_s
    expected = {m.number for m in migrations}
    while time.monotonic() < deadline:
        seen = applied_versions(client, max(0.0, deadline - time.monotonic()))
        if expected <= {v for v, item in seen.items() if item.get("state") == "MIGRATED"}:
            break
        time.sleep(0.5)
    return rows


def drop_statements(migrations: list[Migration]) -> list[tuple[str, str, bool]]:
    """(kind, name, delete topic) for every object the migrations created, newest first, then the record.

    Tables built by a query (CREATE ... AS SELECT) lose their topics; a stream declared over an existing
    topic (the trades stream) never does. The record's stream and table lose theirs too: left behind, a
    later apply would read the old events back (auto.offset.reset=earliest) and skip every migration.
    """
    objects: list[tuple[str, str, bool]] = []
    for migration in migrations:
        for statement in migration.statements:
            if head := created(statement):
                after = statement.tokens[head.rest :]
                derived = any(a.is_("AS") and b.is_("SELECT") for a, b in zip(after, after[1:], strict=False))
                objects.append((head.kind, head.name.text, derived))
    # A table goes before the stream it reads (ksqlDB refuses otherwise: MetaStoreImpl.deleteSource).
    return [*reversed(objects), ("TABLE", VERSIONS_TABLE, True), ("STREAM", EVENTS_STREAM, True)]
