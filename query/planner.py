"""Scan plans: a snapshot's data files read once per session, then queried with DuckDB's read_parquet.

DuckDB's ``iceberg_scan`` reads the table's metadata (metadata.json, manifest list, manifests) again in every
statement: about 10 ms on a compacted table and 60 ms or more on a streaming table of 2,000 small files, before a
single row is read. A plan reads the snapshot's manifest list and manifests once (DuckDB's ``read_avro``, the
reader the iceberg extension itself uses) and keeps each live data file with its partition; every later
statement of the session reads those files directly. A session therefore reads one consistent snapshot.

The same files are offered in two shapes, chosen per statement. They return identical rows, so a poor choice
costs time, never correctness:

- whole: one ``read_parquet`` over every file. When every file's hive-style path spells its identity partition
  exactly (``symbol=ETHUSDT/``), the value is read from the path: DuckDB then skips other symbols' files
  without opening them and answers per-symbol aggregates from footers.
- pruned: ``UNION ALL`` of one ``read_parquet`` per partition (at most MAX_BRANCHES; neighbours are merged
  beyond), each guarded by what its partition means, e.g. ``symbol = 'ETHUSDT' AND trade_time >=
  '2026-11-05 00:00:00+00' AND trade_time < '2026-11-06 00:00:00+00'`` for day(trade_time), identity(symbol).
  DuckDB's optimizer drops every branch a statement's filters contradict before any file is opened, so a
  symbol-day query opens only that partition's files. Chosen when a statement names a column a time
  partition is derived from (``trade_time``): only then can it prune by time.

``read_parquet`` matches columns by name, Iceberg by field id. Tables where the two could differ keep
``iceberg_scan`` (see ``ScanPlan.fallback``): a schema changed since the table was created, a name mapping, a
file whose column sizes miss a column; so do delete files, more than one partition spec, format versions
other than 2, non-Parquet data files and an empty snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

MAX_BRANCHES = 64  # each branch costs ~0.4 ms of binding per statement (measured with 20..2,000 branches)
HIVE_NULLS = {"", "null", "__hive_default_partition__"}  # path values DuckDB reads as NULL (seen: NULL, null)
PRIMITIVES = {
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "string": "VARCHAR",
    "uuid": "UUID",
    "binary": "BLOB",
}


@dataclass(frozen=True)
class ScanPlan:
    """What a table's view selects from. ``fallback`` says why iceberg_scan is used instead ('' when planned)."""

    whole: str
    pruned: str
    range_columns: frozenset[str] = frozenset()
    files: int = 0
    branches: int = 0
    fallback: str = ""

    def relation(self, sql: str) -> str:
        """The shape for one statement: pruned when it names a time-partitioned column, else whole."""
        if self.pruned != self.whole and any(mentions(sql, column) for column in self.range_columns):
            return self.pruned
        return self.whole


def mentions(sql: str, name: str) -> bool:
    """Whether the statement names this column or table as a word (a guess at what it reads; never trusted
    for correctness, only to choose between equivalent shapes)."""
    return re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", sql, re.IGNORECASE) is not None


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def iceberg_scan(metadata_location: str, snapshot_id: int | None) -> str:
    option = f", snapshot_from_id => {int(snapshot_id)}" if snapshot_id is not None else ""
    return f"iceberg_scan({quote_literal(metadata_location)}{option})"


def _local(path: str) -> str:
    """file:/x and file:///x are plain paths for read_parquet; object-store URLs stay as they are."""
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def duckdb_type(iceberg_type: Any) -> str | None:
    """The DuckDB type DuckDB reads an Iceberg primitive as; None for nested types (compared by name only)."""
    if not isinstance(iceberg_type, str):
        return None
    if iceberg_type in PRIMITIVES:
        return PRIMITIVES[iceberg_type]
    decimal = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", iceberg_type)
    if decimal:
        return f"DECIMAL({decimal.group(1)},{decimal.group(2)})"
    return None


def plan_scan(
    con: duckdb.DuckDBPyConnection, metadata_location: str, metadata: Mapping[str, Any], snapshot_id: int | None
) -> ScanPlan:
    """The plan for one snapshot (None: the current one) of the table whose metadata the catalog returned."""
    fallback = iceberg_scan(metadata_location, snapshot_id)

    def keep(reason: str) -> ScanPlan:
        return ScanPlan(whole=fallback, pruned=fallback, fallback=reason)

    chosen = snapshot_id if snapshot_id is not None else metadata.get("current-snapshot-id")
    snapshot = next(
        (s for s in metadata.get("snapshots", []) if chosen is not None and s["snapshot-id"] == chosen), None
    )
    if snapshot is None:
        return keep("the table has no snapshot yet")
    if metadata.get("format-version") != 2:
        return keep(f"format version {metadata.get('format-version')} (planned: 2)")
    if len(metadata.get("schemas", [])) != 1 or len(metadata.get("partition-specs", [])) != 1:
        return keep("the table has more than one schema or partition spec")
    schema = metadata["schemas"][0]
    # read_parquet matches columns by name, Iceberg by field id: only a table whose schema never changed
    # (the first schema, no column ever dropped) and whose files all carry field ids can be read by name.
    every_id = [int(field["id"]) for field in _all_fields(schema)]
    if schema.get("schema-id", 0) != 0 or metadata.get("last-column-id") != max(every_id, default=0):
        return keep("the table's schema has changed since it was created (files are matched by field id)")
    if "schema.name-mapping.default" in metadata.get("properties", {}):
        return keep("the table has a name mapping (files without field ids)")
    by_id = {field["id"]: field for field in schema["fields"]}
    fields = [
        PartitionField(f["name"], by_id[f["source-id"]]["name"], by_id[f["source-id"]]["type"], f["transform"])
        for f in metadata["partition-specs"][0].get("fields", [])
        if f["source-id"] in by_id
    ]
    manifests = con.execute(
        f"SELECT manifest_path, content FROM read_avro({quote_literal(snapshot['manifest-list'])})"
    ).fetchall()
    if any(content != 0 for _, content in manifests):
        return keep("the snapshot has delete files")
    if not manifests:
        return keep("the snapshot has no data files")
    listed = ", ".join(quote_literal(path) for path, _ in manifests)
    partition = ", data_file.partition" if fields else ""
    # 2 = DELETED; ADDED and EXISTING are live. A file whose column sizes miss a column of the schema was
    # written without it (e.g. imported with add_files): iceberg_scan reads NULL there, read_parquet fails.
    complete = f"list_has_all(map_keys(data_file.column_sizes), {_leaf_ids(schema)})"
    entries = [
        tuple(row.values())  # through Arrow: Python values of timestamptz partitions without pytz
        for row in con.execute(
            f"SELECT data_file.file_path, data_file.file_format, data_file.content, {complete}{partition} "
            f"FROM read_avro([{listed}]) WHERE status <> 2"
        )
        .to_arrow_table()
        .to_pylist()
    ]
    if not entries:
        return keep("the snapshot has no data files")
    if any(row[2] != 0 for row in entries):
        return keep("the snapshot has delete files")
    if any(str(row[1]).upper() != "PARQUET" for row in entries):
        return keep("the snapshot has data files that are not Parquet")
    if not all(row[3] for row in entries):
        return keep("a data file lacks columns of the schema (or records no column sizes)")
    files = {row[0]: tuple((row[4] or {}).get(f.name) for f in fields) if fields else () for row in entries}

    columns = [field["name"] for field in schema["fields"]]
    projection = ", ".join(quote_ident(c) for c in columns)
    hive = _hive_options(files, fields, columns)

    def scan(paths: list[str]) -> str:
        names = ", ".join(quote_literal(_local(p)) for p in paths)
        return f"SELECT {projection} FROM read_parquet([{names}]{hive})"

    first = next(iter(files))
    try:
        described = con.execute(f"DESCRIBE {scan([first])}").fetchall()
    except duckdb.Error as exc:
        return keep(f"its data files cannot be read as Parquet ({str(exc).splitlines()[0]})")
    expected = [duckdb_type(field["type"]) for field in schema["fields"]]
    if [row[0] for row in described] != columns or any(
        want is not None and want != row[1] for row, want in zip(described, expected, strict=True)
    ):
        return keep("its data files' columns differ from the table schema")

    whole = f"({scan(sorted(files))})"
    ranges = frozenset(f.source for f in fields if f.transform in TIME_UNITS)
    groups: dict[tuple[Any, ...], list[str]] = {}
    for path, values in files.items():
        groups.setdefault(values, []).append(path)
    if not ranges or len(groups) < 2:
        return ScanPlan(whole=whole, pruned=whole, files=len(files), branches=1)
    branches = [
        scan(sorted(paths)) + (f" WHERE {guard}" if (guard := _guard(fields, keys)) else "")
        for keys, paths in _merged(fields, groups)
    ]
    pruned = "(" + "\nUNION ALL\n".join(branches) + ")"
    return ScanPlan(whole=whole, pruned=pruned, range_columns=ranges, files=len(files), branches=len(branches))


def _all_fields(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every field of a schema or struct, nested ones included, as {"id", "type"} mappings."""
    found: list[Mapping[str, Any]] = []
    for field in node.get("fields", []):
        found.append(field)
        found.extend(_nested(field["type"]))
    return found


def _nested(kind: Any) -> list[Mapping[str, Any]]:
    if not isinstance(kind, Mapping):
        return []
    if kind.get("type") == "struct":
        return _all_fields(kind)
    if kind.get("type") == "list":
        return [{"id": kind["element-id"], "type": kind["element"]}, *_nested(kind["element"])]
    if kind.get("type") == "map":
        return [
            {"id": kind["key-id"], "type": kind["key"]},
            {"id": kind["value-id"], "type": kind["value"]},
            *_nested(kind["key"]),
            *_nested(kind["value"]),
        ]
    return []


def _leaf_ids(schema: Mapping[str, Any]) -> list[int]:
    """Field ids of the primitive columns: the ones a Parquet file stores and column_sizes is keyed by."""
    return [int(field["id"]) for field in _all_fields(schema) if isinstance(field["type"], str)]


@dataclass(frozen=True)
class PartitionField:
    name: str  # the partition field (and hive path key), e.g. trade_day
    source: str  # the column it derives from, e.g. trade_time
    source_type: Any  # Iceberg type of that column
    transform: str  # identity, day, hour, month, year, bucket[N], truncate[W], void


def _hive_options(files: Mapping[str, tuple[Any, ...]], fields: list[PartitionField], columns: list[str]) -> str:
    """Read identity partitions from the paths only when every path spells each value exactly.

    Iceberg URL-encodes partition values in paths; a value with '%', '+' or '/', one DuckDB reads as NULL
    from a path ('NULL', '', ...), a non-string identity, or a directory of another key=value shape turns
    path reading off, and every column comes from the files.
    """
    off = ", hive_partitioning = false"
    if not fields:
        return off
    keys = {f.name for f in fields}
    lowered = {column.lower() for column in columns}
    for field in fields:
        # DuckDB matches names case-insensitively: a path key that is also a column (Day vs day) would
        # replace it, unless it is the identity partition of exactly that column.
        if field.name.lower() in lowered and not (field.transform == "identity" and field.name == field.source):
            return off
    for path, values in files.items():
        segments = dict(part.split("=", 1) for part in path.split("/")[:-1] if "=" in part)
        if set(segments) != keys:
            return off
        for field, value in zip(fields, values, strict=True):
            if field.transform != "identity":
                continue
            if not isinstance(value, str) or segments[field.name] != value or any(c in value for c in "%+/"):
                return off
            if value.lower() in HIVE_NULLS:
                return off
    types = ", ".join(f"{quote_literal(name)}: 'VARCHAR'" for name in sorted(keys))
    return f", hive_partitioning = true, hive_types = {{{types}}}"


# Time transforms: the partition value as the start of its range, and the range's width.
TIME_UNITS = {"year", "month", "day", "hour"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time_range(transform: str, value: Any) -> tuple[datetime, datetime] | None:
    """[start, end) in UTC of a year/month/day/hour partition value, as Iceberg defines them from 1970."""
    if isinstance(value, date) and not isinstance(value, datetime) and transform == "day":
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if transform == "day":
        start = EPOCH + timedelta(days=value)
        return start, start + timedelta(days=1)
    if transform == "hour":
        start = EPOCH + timedelta(hours=value)
        return start, start + timedelta(hours=1)
    if transform in ("month", "year"):
        months = value if transform == "month" else value * 12
        start = datetime(1970 + months // 12, months % 12 + 1, 1, tzinfo=UTC)
        later = months + (1 if transform == "month" else 12)
        return start, datetime(1970 + later // 12, later % 12 + 1, 1, tzinfo=UTC)
    return None


Span = tuple[Any, Any, bool]  # (low, high, high is exclusive) for one source column; None when unbounded


def _spans(fields: list[PartitionField], values: tuple[Any, ...]) -> dict[str, Span | None]:
    """What one partition says about each source column."""
    spans: dict[str, Span | None] = {}
    for field, value in zip(fields, values, strict=True):
        if field.source in spans:  # two partition fields on one column: the first one's bound is kept
            continue
        span: Span | None = None
        exact = isinstance(value, str | int | date) and not isinstance(value, bool | datetime)
        exact = exact and not (isinstance(value, str) and "\x00" in value)  # no SQL literal holds a NUL
        if field.transform == "identity" and exact:
            span = (value, value, False)
        elif field.transform in TIME_UNITS and field.source_type in ("timestamptz", "timestamp", "date"):
            window = _time_range(field.transform, value)
            if window is not None:
                span = (window[0], window[1], True)
        spans[field.source] = span
    return spans


def _merged(
    fields: list[PartitionField], groups: dict[tuple[Any, ...], list[str]]
) -> list[tuple[dict[str, Span | None], list[str]]]:
    """Each branch's bounds and files: one branch per partition, or MAX_BRANCHES runs of neighbouring partitions
    (ordered by identity values first, so a run shares a symbol and spans adjacent days) with their outer bounds."""
    identity_first = sorted(range(len(fields)), key=lambda i: fields[i].transform != "identity")
    order = sorted(
        groups,
        key=lambda values: [
            (values[i] is None, type(values[i]).__name__, values[i] if values[i] is not None else 0)
            for i in identity_first
        ],
    )
    if len(order) <= MAX_BRANCHES:
        return [(_spans(fields, values), groups[values]) for values in order]
    branches = []
    for index in range(MAX_BRANCHES):
        run = order[index * len(order) // MAX_BRANCHES : (index + 1) * len(order) // MAX_BRANCHES]
        spans = [_spans(fields, values) for values in run]
        outer: dict[str, Span | None] = {}
        for column in spans[0]:
            parts = [span[column] for span in spans]
            bounded = [part for part in parts if part is not None]
            if len(bounded) != len(parts) or len({type(part[0]) for part in bounded}) != 1:
                outer[column] = None  # a partition without a bound on it, or values of mixed types
                continue
            outer[column] = (min(p[0] for p in bounded), max(p[1] for p in bounded), bounded[0][2])
        branches.append((outer, [path for values in run for path in groups[values]]))
    return branches


def _literal(value: Any, source_type: Any) -> str:
    if isinstance(value, datetime):
        if source_type == "timestamp":
            return f"CAST({quote_literal(value.strftime('%Y-%m-%d %H:%M:%S'))} AS TIMESTAMP)"
        if source_type == "date":
            return f"CAST({quote_literal(value.strftime('%Y-%m-%d'))} AS DATE)"
        return f"CAST({quote_literal(value.strftime('%Y-%m-%d %H:%M:%S+00'))} AS TIMESTAMP WITH TIME ZONE)"
    if isinstance(value, date):
        return f"CAST({quote_literal(value.isoformat())} AS DATE)"
    if isinstance(value, int):
        return str(value)
    return quote_literal(str(value))


def _guard(fields: list[PartitionField], spans: dict[str, Span | None]) -> str:
    """The branch's filter: what its partitions guarantee about every row, as plain comparisons with constants
    (the form DuckDB's optimizer checks against a statement's own filters)."""
    types = {f.source: f.source_type for f in fields}
    clauses = []
    for column, span in spans.items():
        if span is None:
            continue
        low, high, exclusive = span
        name = quote_ident(column)
        if low == high and not exclusive:
            clauses.append(f"{name} = {_literal(low, types[column])}")
        elif exclusive:
            clauses.append(f"{name} >= {_literal(low, types[column])} AND {name} < {_literal(high, types[column])}")
        else:
            clauses.append(f"{name} BETWEEN {_literal(low, types[column])} AND {_literal(high, types[column])}")
    return " AND ".join(clauses)
