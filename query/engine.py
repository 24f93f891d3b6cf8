"""DuckDB over the REST catalog's Iceberg tables, offline.

Path chosen: the catalog's REST API gives each table's current ``metadata-location``; DuckDB's iceberg
extension reads that metadata once per session and lists the snapshot's data files with their bounds
(planner.py), and statements read those Parquet files with ``read_parquet``, pruned by symbol and time
through the plan. Tables the plan does not cover (delete files, schema evolution) are read with
``iceberg_scan``. pyiceberg stays off this path (about a second to import, and converting its scans to
Arrow first was measured 3-10x slower). The extensions come from the PyPI packages pinned beside DuckDB
and are loaded by file path with auto-install and auto-load off, so nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import duckdb
import pyarrow as pa
import requests

from k2.connect.exceptions import catalog_unreachable

from .exceptions import QueryError
from .planner import ScanPlan, iceberg_scan, mentions, plan_scan

SQL_DIR = Path(__file__).resolve().parent / "sql"
EIGHT_PLACES = Decimal("0.00000001")
DEFAULT_NAMESPACE = "market_data"  # the namespace of connect/tables.toml: `trades` means market_data.trades
INTERVALS = {"1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "1d": "1 day"}
# EXPLAIN, EXPLAIN ANALYZE, EXPLAIN (ANALYZE, FORMAT JSON): what precedes the explained statement.
EXPLAIN_PREFIX = re.compile(r"^\s*explain\s*(analyze\b\s*)?(\([^)]*\)\s*)?", re.IGNORECASE)


def _extension_path(module: Any) -> Path:
    found = sorted(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    if not found:
        raise QueryError(f"no DuckDB extension file in {module.__name__}; reinstall with `make install`")
    return found[-1]


@dataclass(frozen=True)
class TableRef:
    namespace: str
    name: str
    metadata_location: str
    snapshots: tuple[tuple[int, int], ...] = ()  # (snapshot id, committed at epoch ms)
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.name}"


class Catalog:
    """The REST catalog's table list and metadata locations, over plain HTTP."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.session = requests.Session()

    def _get(self, path: str) -> Any:
        try:
            response = self.session.get(f"{self.uri}/v1/{path}", timeout=15)
        except requests.RequestException as exc:
            raise QueryError(catalog_unreachable(self.uri, exc)) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise QueryError(f"catalog at {self.uri} answered HTTP {response.status_code} for {path}")
        return response.json()

    def identifiers(self) -> list[tuple[str, str]]:
        tables = []
        for namespace, *_rest in (self._get("namespaces") or {}).get("namespaces", []):
            for ident in (self._get(f"namespaces/{quote(namespace)}/tables") or {}).get("identifiers", []):
                tables.append((namespace, ident["name"]))
        return sorted(tables)

    def table(self, namespace: str, name: str) -> TableRef | None:
        data = self._get(f"namespaces/{quote(namespace)}/tables/{quote(name)}")
        if data is None:
            return None
        snapshots = tuple(
            (int(s["snapshot-id"]), int(s["timestamp-ms"])) for s in data.get("metadata", {}).get("snapshots", [])
        )
        return TableRef(namespace, name, data["metadata-location"], snapshots, data.get("metadata", {}))

    def load(self, namespace: str, name: str) -> dict[str, Any]:
        data = self._get(f"namespaces/{quote(namespace)}/tables/{quote(name)}")
        if data is None:
            raise QueryError(f"no table {namespace}.{name}; tables: {', '.join(self.names()) or 'none'}")
        return dict(data)

    def names(self) -> list[str]:
        return [f"{ns}.{t}" for ns, t in self.identifiers()]


class Lake:
    """A DuckDB connection where every catalog table is a view: ``market_data.trades`` and ``trades``."""

    def __init__(self, catalog_uri: str) -> None:
        import duckdb_extension_avro
        import duckdb_extension_httpfs
        import duckdb_extension_iceberg

        self.catalog = Catalog(catalog_uri)
        self.con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        # avro before iceberg (it reads manifests through it); httpfs for warehouses on S3.
        for module in (duckdb_extension_avro, duckdb_extension_httpfs, duckdb_extension_iceberg):
            self.con.execute(f"LOAD '{_extension_path(module)}'")
        self.con.execute("SET TimeZone = 'UTC'")
        self._configure_s3(os.environ)
        self.tables: list[TableRef] = []
        self._plans: dict[tuple[str, int | None], ScanPlan] = {}
        # view -> (the words a statement that reads it contains, table, snapshot id or None for current)
        self._views: dict[str, tuple[tuple[str, ...], TableRef, int | None]] = {}
        # view name -> (relation it selects from now, (metadata location, snapshot id) that relation reads)
        self._shapes: dict[str, tuple[str, tuple[str, int | None]]] = {}

    def _configure_s3(self, env: Mapping[str, str]) -> None:
        """An S3 secret from the standard AWS_* variables and K2_S3_ENDPOINT (MinIO, S3Proxy, moto).

        Values go to DuckDB as parameters and are never printed.
        """
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            return
        endpoint = env.get("K2_S3_ENDPOINT", "")
        parsed = urlsplit(endpoint) if endpoint else None
        options = ["TYPE s3", "KEY_ID $key", "SECRET $secret", "REGION $region"]
        parameters = {"key": key, "secret": secret, "region": env.get("AWS_REGION", "us-east-1")}
        if parsed and parsed.netloc:
            options += ["ENDPOINT $endpoint", "URL_STYLE 'path'", f"USE_SSL {str(parsed.scheme == 'https').lower()}"]
            parameters["endpoint"] = parsed.netloc
        self.con.execute(f"CREATE OR REPLACE SECRET k2_s3 ({', '.join(options)})", parameters)

    def attach_tables(self, snapshot: dict[str, Any] | None = None, trades: str | None = None) -> list[TableRef]:
        """Create one view per catalog table (current snapshot, or as of a snapshot / timestamp).

        ``trades`` names the table the short name ``trades`` (used by sql/*.sql) stands for. Each table's
        scan is planned once per metadata version and snapshot (see planner.py) and reused by every statement.
        """
        refs = [r for ns, name in self.catalog.identifiers() if (r := self.catalog.table(ns, name))]
        chosen = self._time_travel(refs, snapshot)
        refs = [r for r in refs if r.identifier in chosen]
        short: dict[str, list[TableRef]] = {}
        for ref in refs:
            short.setdefault(ref.name, []).append(ref)
        for name, candidates in short.items():
            # A short name is the table of that name in the default namespace, else the only one.
            preferred = [r for r in candidates if r.namespace == DEFAULT_NAMESPACE]
            short[name] = preferred or candidates
        if trades and not any(r.identifier == trades for r in refs):
            names = ", ".join(r.identifier for r in refs) or "none"
            raise QueryError(f"no table {trades} in the catalog; tables: {names}")
        self._views = {}
        for ref in refs:
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{ref.namespace}"')
            target = (ref, chosen[ref.identifier])
            self._views[f'"{ref.namespace}"."{ref.name}"'] = ((ref.namespace, ref.name), *target)
            if short[ref.name] == [ref] and not (trades and ref.name == "trades"):
                self._views[f'main."{ref.name}"'] = ((ref.name,), *target)
            if ref.identifier == trades:
                self._views['main."trades"'] = (("trades",), *target)
        for view in set(self._shapes) - set(self._views):  # tables gone from the catalog (or from --as-of)
            self.con.execute(f"DROP VIEW IF EXISTS {view}")
            del self._shapes[view]
        wanted = {(r.metadata_location, chosen[r.identifier]) for r in refs}
        self._plans = {key: plan for key, plan in self._plans.items() if key in wanted}  # drop superseded versions
        self.tables = refs
        return refs

    def plan(self, ref: TableRef, snapshot_id: int | None = None) -> ScanPlan:
        """The table's scan plan for a snapshot (None: current), planned once per metadata file and snapshot."""
        key = (ref.metadata_location, snapshot_id)
        if key not in self._plans:
            try:
                self._plans[key] = plan_scan(self.con, ref.metadata_location, ref.metadata, snapshot_id)
            except (duckdb.Error, ValueError, OverflowError) as exc:  # e.g. a partition date Python cannot hold
                unplanned = iceberg_scan(ref.metadata_location, snapshot_id)
                reason = f"planning failed: {str(exc).splitlines()[0]}"
                self._plans[key] = ScanPlan(whole=unplanned, pruned=unplanned, fallback=reason)
        return self._plans[key]

    def _shape_views(self, sql: str) -> None:
        """Point the views this statement names at the shape of their plan that suits it
        (planner.ScanPlan.relation). Planning is what costs, so tables a statement does not name are not
        planned for it: their views read through iceberg_scan until a statement names them.
        """
        for view, (words, ref, snapshot_id) in self._views.items():
            read_at = (ref.metadata_location, snapshot_id)
            current = self._shapes.get(view)
            if all(mentions(sql, word) for word in words):
                relation = self.plan(ref, snapshot_id).relation(sql)
            elif current is not None and current[1] == read_at:
                continue  # already reads this version of the table, in whichever shape
            else:  # not named, but still readable (query_table('x'), information_schema): unplanned and correct
                relation = iceberg_scan(ref.metadata_location, snapshot_id)
            if current != (relation, read_at):
                self.con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {relation}")
                self._shapes[view] = (relation, read_at)

    def _time_travel(self, refs: list[TableRef], snapshot: dict[str, Any] | None) -> dict[str, int | None]:
        """The snapshot each table is read at (None: current): --snapshot for the table that has it, or the
        newest snapshot committed by --as-of (tables with none by then did not exist yet and get no view)."""
        snapshot_id = snapshot.get("snapshot_id") if snapshot else None
        as_of = snapshot.get("as_of") if snapshot else None
        if snapshot_id is not None:
            owners = {r.identifier for r in refs if any(sid == int(snapshot_id) for sid, _ in r.snapshots)}
            if not owners:
                raise QueryError(
                    f"no table has snapshot {snapshot_id}; list them with `k2 tables snapshots NAMESPACE.TABLE`"
                )
            return {r.identifier: int(snapshot_id) if r.identifier in owners else None for r in refs}
        if as_of:
            try:
                moment = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
            except ValueError:
                raise QueryError(f"--as-of {as_of!r} is not a time like 2026-11-27T12:00:00 (UTC)") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            cutoff_ms = int(moment.timestamp() * 1000)
            chosen: dict[str, int | None] = {}
            for ref in refs:
                committed = [(ms, sid) for sid, ms in ref.snapshots if ms <= cutoff_ms]
                if committed:
                    chosen[ref.identifier] = max(committed)[1]
            return chosen
        return {r.identifier: None for r in refs}

    @staticmethod
    def scan_sql(ref: TableRef) -> str:
        """An iceberg_scan of the table's current snapshot: metadata read in each statement, no plan to keep."""
        return iceberg_scan(ref.metadata_location, None)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        refuse_writes(sql)
        try:
            self._shape_views(sql)
            result = self.con.execute(sql, parameters or {})
            return result.to_arrow_table()
        except duckdb.CatalogException as exc:
            message = str(exc).splitlines()[0]
            if "Table with name" in message:
                names = ", ".join(r.identifier for r in self.tables) or "none"
                raise QueryError(f"{message}; tables in the catalog: {names}") from exc
            raise QueryError(message) from exc
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc


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


def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def vwap(quote_volume: Decimal, volume: Decimal) -> Decimal:
    """quote_volume / volume in exact decimal arithmetic, rounded half-even to 8 places."""
    if not volume:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 80  # wide enough that the division itself never rounds before the quantize
        return (Decimal(quote_volume) / Decimal(volume)).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)


def candles(lake: Lake, symbol: str, interval: str, since: str, until: str) -> list[dict[str, Any]]:
    """OHLCV candles with VWAP, quote volume and trade count (see sql/candles.sql)."""
    if interval not in INTERVALS:
        raise QueryError(f"unknown interval {interval!r}; use one of {', '.join(INTERVALS)}")
    table = lake.query(
        read_sql("candles"), {"symbol": symbol, "bucket": INTERVALS[interval], "since": since, "until": until}
    )
    rows = []
    for row in table.to_pylist():
        rows.append(
            {
                "symbol": row["symbol"],
                "interval_start": row["interval_start"],
                "open": row["open"],
                "high": row["high"],
                "low": row["low"],
                "close": row["close"],
                "volume": row["volume"],
                "quote_volume": row["quote_volume"],
                "vwap": vwap(row["quote_volume"], row["volume"]),
                "trade_count": row["trade_count"],
            }
        )
    return rows


def volume(lake: Lake, symbols: list[str], since: str, until: str) -> list[dict[str, Any]]:
    """Volume, quote volume, VWAP and trade count per symbol (see sql/volume.sql)."""
    table = lake.query(read_sql("volume"), {"symbols": symbols, "since": since, "until": until})
    return [dict(row, vwap=vwap(row["quote_volume"], row["volume"])) for row in table.to_pylist()]


def snapshots(catalog: Catalog, identifier: str) -> list[dict[str, Any]]:
    """The table's snapshots, oldest first, from the catalog's table metadata."""
    namespace, _, name = identifier.rpartition(".")
    if not namespace:
        raise QueryError(f"give the table as namespace.table, e.g. market_data.{identifier}")
    metadata = catalog.load(namespace, name)["metadata"]
    current = metadata.get("current-snapshot-id")
    rows = []
    for snapshot in sorted(metadata.get("snapshots", []), key=lambda s: s["timestamp-ms"]):
        summary = snapshot.get("summary", {})
        rows.append(
            {
                "snapshot_id": snapshot["snapshot-id"],
                "committed_at": datetime.fromtimestamp(snapshot["timestamp-ms"] / 1000, UTC),
                "operation": summary.get("operation", ""),
                "added_records": int(summary.get("added-records", 0)),
                "total_records": int(summary.get("total-records", 0)),
                "total_data_files": int(summary.get("total-data-files", 0)),
                "current": snapshot["snapshot-id"] == current,
            }
        )
    return rows
