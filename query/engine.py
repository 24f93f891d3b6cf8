"""The DuckDB session over the REST catalog's Iceberg tables: attach, short names, time travel, read-only.

DuckDB's iceberg extension attaches the REST catalog itself (``ATTACH ... (TYPE iceberg)``): it lists
namespaces and tables, loads each table's metadata when a statement reads it (so every statement sees
the table's current snapshot on its main branch, and a long-lived Lake never goes stale), plans the scan
(partition and file pruning, delete files, schema evolution by field id) and time-travels with
``AT (VERSION => id)`` / ``AT (TIMESTAMP => t)``, the latter through the table's snapshot log. Short
names (``trades``) resolve through DuckDB's search path, the default namespace first. pyiceberg stays off
this path (about a second to import). The extensions come from the PyPI packages pinned beside DuckDB and
are loaded by file path with auto-install and auto-load off, so nothing is ever downloaded. S3 secrets,
error translation and snapshot listings are in catalog.py; candles and volume in market.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from . import DEFAULT_NAMESPACE, DEFAULT_TRADES
from .catalog import catalog_error, configure_s3
from .exceptions import QueryError

if TYPE_CHECKING:
    import pyarrow as pa

CATALOG = "lake"  # the attached catalog: every table is also lake.<namespace>.<table>
OURS = f"WHERE database_name = '{CATALOG}'"  # duckdb_schemas() / duckdb_tables() rows of the catalog
# EXPLAIN, EXPLAIN ANALYZE, EXPLAIN (ANALYZE, FORMAT JSON): what precedes the explained statement.
EXPLAIN_PREFIX = re.compile(r"^\s*explain\s*(analyze\b\s*)?(\([^)]*\)\s*)?", re.IGNORECASE)


def _extension_path(module: Any) -> Path:
    found = sorted(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    if not found:
        raise QueryError(f"no DuckDB extension file in {module.__name__}; reinstall with `make install`")
    return found[-1]


def _ident(*parts: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parts(identifier: str) -> tuple[str, str]:
    """namespace.table as the user wrote it (--table, k2 tables snapshots)."""
    namespace, _, table = identifier.rpartition(".")
    if not namespace:
        raise QueryError(f"give the table as namespace.table, e.g. {DEFAULT_NAMESPACE}.{identifier}")
    return namespace, table


class Lake:
    """A DuckDB connection with the REST catalog attached: ``market_data.trades``, ``trades``, ``lake.ns.t``.

    ``trades`` names the table the short name ``trades`` (used by sql/*.sql) stands for. ``snapshot_id``
    reads the tables that have that snapshot at it; ``as_of`` reads every table as its main branch was at
    that UTC time (its snapshot log: never a branch, never a rolled-back snapshot).
    """

    def __init__(
        self,
        catalog_uri: str,
        trades: str = DEFAULT_TRADES,
        snapshot_id: int | None = None,
        as_of: str | None = None,
    ) -> None:
        import duckdb_extension_avro
        import duckdb_extension_httpfs
        import duckdb_extension_iceberg

        self.uri = catalog_uri.rstrip("/")
        self.con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        # avro before iceberg (it reads manifests through it); httpfs for the catalog and S3 warehouses.
        for module in (duckdb_extension_avro, duckdb_extension_httpfs, duckdb_extension_iceberg):
            self.con.execute(f"LOAD '{_extension_path(module)}'")
        self.con.execute("SET TimeZone = 'UTC'")
        own_keys = configure_s3(self.con, os.environ)
        # The warehouse name is ignored by Iceberg's REST fixture. With our own S3 keys, ask for no vended
        # credentials: a catalog's storage config without keys would otherwise shadow them.
        options = [f"TYPE iceberg, ENDPOINT {_literal(self.uri)}, AUTHORIZATION_TYPE 'none'"]
        options += ["ACCESS_DELEGATION_MODE 'none'"] if own_keys else []
        try:
            self.con.execute(f"ATTACH 'warehouse' AS {CATALOG} ({', '.join(options)})")
            namespaces = [row[0] for row in self._rows(f"SELECT schema_name FROM duckdb_schemas() {OURS}")]
        except duckdb.Error as exc:
            raise catalog_error(self.uri, exc) or QueryError(
                f"{self.uri} did not answer as an Iceberg REST catalog ({str(exc).splitlines()[0][:160]}); point "
                "--catalog-uri / K2_CATALOG_URI at the catalog, or start the local one with `k2 stack up`"
            ) from exc
        self.namespaces = sorted(namespaces, key=lambda ns: (ns != DEFAULT_NAMESPACE, ns))
        self.trades = trades
        self.snapshot_id = snapshot_id
        self.as_of = _moment(as_of) if as_of else None
        self._travels = snapshot_id is not None or as_of is not None
        self._views: dict[tuple[str, ...], str] = {}  # time travel: views made so far (name -> AT clause)
        self._tables: dict[str, list[tuple[str, str]]] | None = None  # time travel: table name -> (ns, table)
        if not self._travels and trades != DEFAULT_TRADES:
            try:
                self._view(("trades",), _parts(trades), "")
            except QueryError as exc:
                tables = ", ".join(self.table_names()) or "none"
                raise QueryError(f"no table {trades} in the catalog; tables: {tables}") from exc
        # memory.main holds the views; then the catalog's namespaces, the default one first. A statement
        # that time-travels reads views only, so no table falls through to its current snapshot.
        path = ["memory.main"] + ([] if self._travels else [f"{CATALOG}.{_ident(ns)}" for ns in self.namespaces])
        self.con.execute(f"SET search_path = {_literal(','.join(path))}")

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def table_names(self) -> list[str]:
        return [f"{ns}.{t}" for ns, t in self._rows(f"SELECT schema_name, table_name FROM duckdb_tables() {OURS}")]

    def metadata(self, identifier: str) -> dict[str, Any]:
        """The table's metadata as the catalog's loadTable returns it (snapshots, snapshot-log, refs)."""
        name = _literal(_ident(CATALOG, *_parts(identifier)))
        with self._errors():
            found = self._rows(f"SELECT metadata::JSON FROM iceberg_load_table_response({name})")
        return dict(json.loads(found[0][0]))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """DuckDB's errors as one line; an unknown table lists the catalog's tables."""
        try:
            yield
        except duckdb.CatalogException as exc:
            message = str(exc).splitlines()[0]
            if "Table with name" in message:
                message += f"; tables in the catalog: {', '.join(self.table_names()) or 'none'}"
            raise QueryError(message) from exc
        except duckdb.Error as exc:
            raise catalog_error(self.uri, exc) or QueryError(str(exc).splitlines()[0]) from exc

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """The result as an Arrow table (exact types, for Parquet and for callers that compute on it)."""
        result: pa.Table = self._execute(sql, parameters).to_arrow_table()
        return result

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows as Python values (Decimal, UTC datetime), without importing pyarrow."""
        cursor = self._execute(sql, parameters)
        return [column[0] for column in cursor.description or []], cursor.fetchall()

    def _execute(self, sql: str, parameters: dict[str, Any] | None) -> duckdb.DuckDBPyConnection:
        refuse_writes(sql)
        with self._errors():
            if self._travels:
                self._travel(sql)
            try:
                return self.con.execute(sql, parameters or {})
            except duckdb.Error as exc:
                # A statement reads each table as of its start; a table whose first snapshot was committed after
                # that but before DuckDB loaded it has no state yet (iceberg_table_entry.cpp). A moment later it has.
                if "does not have a reachable state" not in str(exc):
                    raise
                return self.con.execute(sql, parameters or {})

    def _view(self, alias: tuple[str, ...], table: tuple[str, ...], at: str) -> None:
        """A view named like the table (ns.t in memory, or a short name in memory.main) over the catalog's table."""
        if len(alias) == 2:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS memory.{_ident(alias[0])}")
        view = _ident("memory", *(alias if len(alias) == 2 else ("main", *alias)))
        with self._errors():
            self.con.execute(f"CREATE OR REPLACE VIEW {view} AS FROM {_ident(CATALOG, *table)}{at}")
        self._views[alias] = at

    def _travel(self, sql: str) -> None:
        """Views at --snapshot / --as-of of the tables this statement names (DuckDB's parser says which)."""
        if self._tables is None:  # table name -> its (namespace, name)s, in search-path order
            self._tables = {}
            for namespace, table in self._rows(f"SELECT schema_name, table_name FROM duckdb_tables() {OURS}"):
                self._tables.setdefault(table.lower(), []).append((namespace, table))
            for found in self._tables.values():
                found.sort(key=lambda entry: self.namespaces.index(entry[0]) if entry[0] in self.namespaces else 1e9)
        for alias in self._named_tables(sql):
            if len(alias) == 3 and alias[0].lower() == CATALOG:
                raise QueryError(
                    f"{'.'.join(alias)} is the current table: with --snapshot or --as-of, leave out `lake.`"
                )
            if alias in self._views or len(alias) > 2:
                continue
            if alias == ("trades",) and self.trades != DEFAULT_TRADES:
                namespace, table = _parts(self.trades)
            else:
                found = [t for t in self._tables.get(alias[-1].lower(), []) if t[0].lower() == alias[0].lower()]
                if not (found := found if len(alias) == 2 else self._tables.get(alias[0].lower(), [])):
                    continue  # not a catalog table: DuckDB's own, or one it reports as unknown itself
                namespace, table = found[0]
            self._view(alias, (namespace, table), self._at(namespace, table))
        if self.snapshot_id is not None and self._views and not any(self._views.values()):
            raise QueryError(
                f"no table this statement reads has snapshot {self.snapshot_id}; "
                "list them with `k2 tables snapshots NAMESPACE.TABLE`"
            )

    def _named_tables(self, sql: str) -> set[tuple[str, ...]]:
        """Every table the statements name, as (catalog, schema, table) parts that are given, per DuckDB's
        parser (json_serialize_sql, which takes the explained query of an EXPLAIN); CTE names left out."""
        found: set[tuple[str, ...]] = set()
        ctes: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") == "BASE_TABLE":
                    found.add(tuple(node[k] for k in ("catalog_name", "schema_name", "table_name") if node[k]))
                ctes.update(entry["key"].lower() for entry in node.get("cte_map", {}).get("map", []))
            for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
                walk(child)

        for statement in duckdb.extract_statements(sql):
            text = statement.query
            if statement.type == duckdb.StatementType.EXPLAIN:
                text = EXPLAIN_PREFIX.sub("", text, count=1)
            walk(json.loads(self.con.execute("SELECT json_serialize_sql($text)", {"text": text}).fetchall()[0][0]))
        return {name for name in found if not (len(name) == 1 and name[0].lower() in ctes)}

    def _at(self, namespace: str, table: str) -> str:
        """The AT clause for one table, after checking that it has what --snapshot / --as-of ask for."""
        metadata = self.metadata(f"{namespace}.{table}")
        snapshots = {s["snapshot-id"]: s["timestamp-ms"] for s in metadata.get("snapshots", [])}
        if self.snapshot_id is not None:
            return f" AT (VERSION => {int(self.snapshot_id)})" if self.snapshot_id in snapshots else ""
        assert self.as_of is not None
        # Main's history is its snapshot log (what DuckDB's AT (TIMESTAMP) follows) less expired snapshots.
        log = metadata.get("snapshot-log") or [{"snapshot-id": i, "timestamp-ms": ms} for i, ms in snapshots.items()]
        history = [entry["timestamp-ms"] for entry in log if entry["snapshot-id"] in snapshots]
        moment = self.as_of.strftime("%Y-%m-%d %H:%M:%S.%f")
        if not history or min(history) > self.as_of.timestamp() * 1000:
            start = f"starts at {_utc(min(history))}" if history else "is empty"
            raise QueryError(
                f"{namespace}.{table} has no snapshot on its main branch at {moment} UTC: its retained history "
                f"{start} (see `k2 tables snapshots {namespace}.{table}`)"
            )
        return f" AT (TIMESTAMP => TIMESTAMPTZ {_literal(moment + '+00')})"


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"--as-of {text!r} is not a time like 2026-11-27T12:00:00 (UTC)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _utc(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def parse_problem(sql: str) -> str | None:
    """DuckDB's own parser's complaint about the text, in one line, or None when every statement parses."""
    try:
        duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def refuse_writes(sql: str) -> None:
    """k2 query is read-only: every statement of the text, as DuckDB's own parser splits it, must be a query,
    or an EXPLAIN of one (EXPLAIN ANALYZE runs what it explains). Read-only PRAGMAs and SHOW/DESCRIBE parse
    as queries. Text that does not parse is left for execution to report with DuckDB's message.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return
    for statement in statements:
        kind: duckdb.StatementType | None = statement.type
        if kind == duckdb.StatementType.EXPLAIN:
            explained = EXPLAIN_PREFIX.sub("", statement.query, count=1)
            try:
                kinds = [inner.type for inner in duckdb.extract_statements(explained)]
            except duckdb.Error:
                kinds = []
            kind = kinds[0] if len(kinds) == 1 else None
        if kind != duckdb.StatementType.SELECT:
            raise QueryError("k2 query is read-only: statements that write or change settings are refused")
