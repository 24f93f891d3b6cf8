"""The Iceberg tables of connect/tables.toml, created and kept in line through the REST catalog.

Imports pyiceberg (about a second of start-up), so only the table commands import this module.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, RESTError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
)
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    MapType,
    NestedField,
    StringType,
    TimestamptzType,
)

from k2.schemas.contract import parsed_schema

from .exceptions import ConnectError, catalog_unreachable

TABLES_FILE = Path(__file__).resolve().parent / "tables.toml"


def _not_already_deleted(record: logging.LogRecord) -> bool:
    """Drop pyiceberg's 'Failed to delete metadata file' after a commit through the REST catalog.

    With write.metadata.delete-after-commit.enabled the catalog server removes the old metadata files in
    the commit itself (a table holds previous-versions-max + 1 of them, seen here); pyiceberg then tries the
    same deletions client-side, finds the files gone, and warned once per commit of `k2 tables maintain`.
    """
    return not str(record.msg).startswith("Failed to delete metadata file")


logging.getLogger("pyiceberg.catalog").addFilter(_not_already_deleted)
TRANSFORMS: dict[str, Transform[Any, Any]] = {
    "identity": IdentityTransform(),
    "day": DayTransform(),
    "hour": HourTransform(),
    "month": MonthTransform(),
}
_BUCKET = re.compile(r"bucket\[([1-9][0-9]{0,4})\]")


def transform(text: str) -> Transform[Any, Any]:
    """An Iceberg partition transform as tables.toml writes it: ``day``, ``identity``, ``bucket[16]``, ..."""
    if text in TRANSFORMS:
        return TRANSFORMS[text]
    bucket = _BUCKET.fullmatch(text)
    if bucket:
        return BucketTransform(int(bucket.group(1)))
    raise TableSpecError(f"unknown partition transform {text!r}; known: {', '.join(TRANSFORMS)}, bucket[N]")


class TableSpecError(ConnectError):
    """A declared table cannot be created or would need a rewrite to match the declaration."""


@dataclass(frozen=True)
class TableSpec:
    identifier: str
    schema: Schema
    partition: list[tuple[str, str, str]]  # (source column, transform, partition field name)
    sort: list[str]
    properties: dict[str, str] = field(default_factory=dict)
    format_version: int = 2

    @property
    def namespace(self) -> str:
        return self.identifier.rsplit(".", 1)[0]


def _iceberg_type(avro_type: Any, next_id: list[int]) -> tuple[IcebergType, bool]:
    """Avro type -> (Iceberg type, required). Unions with null become optional."""
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        if len(others) != 1:
            raise TableSpecError(f"unsupported Avro union {avro_type}")
        return _iceberg_type(others[0], next_id)[0], False
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return DecimalType(int(avro_type["precision"]), int(avro_type.get("scale", 0))), True
        if logical in ("timestamp-millis", "timestamp-micros"):
            return TimestamptzType(), True
        if avro_type.get("type") == "map":
            key_id, value_id = next_id[0], next_id[0] + 1
            next_id[0] += 2
            value_type, value_required = _iceberg_type(avro_type["values"], next_id)
            return MapType(key_id, StringType(), value_id, value_type, value_required), True
        return _iceberg_type(avro_type["type"], next_id)
    simple: dict[str, IcebergType] = {
        "string": StringType(),
        "long": LongType(),
        "int": IntegerType(),
        "boolean": BooleanType(),
        "double": DoubleType(),
        "float": FloatType(),
        "bytes": BinaryType(),
    }
    if avro_type not in simple:
        raise TableSpecError(f"no Iceberg column type for Avro type {avro_type!r}")
    return simple[avro_type], True


def schema_from_avro(avro: dict[str, Any]) -> Schema:
    """The Iceberg schema of an Avro record: same names, exact types, field ids in order."""
    fields = avro["fields"]
    next_id = [len(fields) + 1]
    columns = []
    for index, avro_field in enumerate(fields, start=1):
        column_type, required = _iceberg_type(avro_field["type"], next_id)
        columns.append(NestedField(index, avro_field["name"], column_type, required, avro_field.get("doc")))
    return Schema(*columns)


def load_table_specs(path: Path = TABLES_FILE) -> dict[str, TableSpec]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    specs = {}
    for identifier, spec in data.get("tables", {}).items():
        schema = schema_from_avro(parsed_schema(spec["value_schema"]))
        partition = [(p["source"], p["transform"], p.get("name", p["source"])) for p in spec.get("partition", [])]
        for source, transform_text, _ in partition:
            try:
                transform(transform_text)
            except TableSpecError as exc:
                raise TableSpecError(f"{path}: {identifier}: {exc}") from None
            if source not in {f.name for f in schema.fields}:
                raise TableSpecError(f"{path}: {identifier} partitions by unknown column {source!r}")
        specs[identifier] = TableSpec(
            identifier=identifier,
            schema=schema,
            partition=partition,
            sort=list(spec.get("sort", [])),
            properties={str(k): str(v) for k, v in spec.get("properties", {}).items()},
            format_version=int(spec.get("format_version", 2)),
        )
    return specs


def s3_properties(env: Mapping[str, str]) -> dict[str, str]:
    """pyiceberg's S3 settings for an S3-compatible endpoint (MinIO, moto) named by K2_S3_ENDPOINT, as
    `k2 stack up --s3-endpoint` and `k2 query` take it; credentials stay in the standard AWS_* variables,
    which pyarrow's S3 filesystem reads itself."""
    endpoint = env.get("K2_S3_ENDPOINT", "")
    if not endpoint:
        return {}
    return {
        "s3.endpoint": endpoint,
        "s3.path-style-access": "true",
        "s3.region": env.get("AWS_REGION", "us-east-1"),
    }


def rest_catalog(uri: str, **properties: str) -> Catalog:
    """pyiceberg's REST catalog at ``uri``; an unreachable one is a one-line ConnectError."""
    import os

    import requests

    try:
        return load_catalog("k2", type="rest", uri=uri, **{**s3_properties(os.environ), **properties})
    except requests.RequestException as exc:  # load_catalog asks the server for its /v1/config at once
        raise ConnectError(catalog_unreachable(uri, exc)) from exc
    except RESTError as exc:
        raise ConnectError(
            f"{uri} did not answer as an Iceberg REST catalog ({str(exc)[:120]}); point --catalog-uri / "
            "K2_CATALOG_URI at the catalog, or start the local one with `k2 stack up`"
        ) from exc


def _partition_spec(spec: TableSpec) -> PartitionSpec:
    fields = []
    for index, (source, transform_text, name) in enumerate(spec.partition):
        source_id = spec.schema.find_field(source).field_id
        fields.append(PartitionField(source_id, 1000 + index, transform(transform_text), name))
    return PartitionSpec(*fields)


def _sort_order(spec: TableSpec) -> SortOrder:
    return SortOrder(
        *[
            SortField(spec.schema.find_field(c).field_id, IdentityTransform(), SortDirection.ASC, NullOrder.NULLS_FIRST)
            for c in spec.sort
        ]
    )


def _columns(schema: Schema) -> dict[str, tuple[str, bool]]:
    return {f.name: (str(f.field_type), f.required) for f in schema.fields}


def _partition_shape(table: Table) -> list[tuple[str, str]]:
    schema = table.schema()
    return [(schema.find_column_name(f.source_id) or "?", str(f.transform)) for f in table.spec().fields]


def _sort_shape(table: Table) -> list[str]:
    schema = table.schema()
    return [schema.find_column_name(f.source_id) or "?" for f in table.sort_order().fields]


def apply_table(catalog: Catalog, spec: TableSpec, dry_run: bool = False) -> dict[str, str]:
    """Create the table, or align an existing one where that needs no rewrite; refuse otherwise."""
    try:
        table = catalog.load_table(spec.identifier)
    except NoSuchTableError:
        table = None
    if table is None:
        if not dry_run:
            try:
                catalog.create_namespace(spec.namespace)
            except NamespaceAlreadyExistsError:
                pass
            catalog.create_table(
                spec.identifier,
                schema=spec.schema,
                partition_spec=_partition_spec(spec),
                sort_order=_sort_order(spec),
                properties={**spec.properties, "format-version": str(spec.format_version)},
            )
        return {"table": spec.identifier, "action": "would create" if dry_run else "created", "changes": ""}

    problems = []
    current = _columns(table.schema())
    declared = _columns(spec.schema)
    for name, (column_type, _) in current.items():
        if name not in declared:
            problems.append(f"column {name} is no longer declared")
        elif declared[name][0] != column_type:
            problems.append(f"column {name} changes type {column_type} -> {declared[name][0]}")
    wanted_partition = [(source, str(transform(t))) for source, t, _ in spec.partition]
    if _partition_shape(table) != wanted_partition:
        problems.append(f"partitioning changes {_partition_shape(table)} -> {wanted_partition}")
    if _sort_shape(table) != spec.sort:
        problems.append(f"sort order changes {_sort_shape(table)} -> {spec.sort}")
    if problems:
        raise TableSpecError(
            f"{spec.identifier} exists with a different layout ({'; '.join(problems)}); that needs a rewrite, which "
            "`k2 tables apply` never does: create a new table (e.g. market_data.trades_v2) and point the sink at it, "
            "or, on the local stack, start over with `k2 stack reset`"
        )
    added = [name for name in declared if name not in current]
    differing = {k: v for k, v in spec.properties.items() if table.properties.get(k) != v}
    changes = [f"add column {name}" for name in added] + [f"{k}={v}" for k, v in sorted(differing.items())]
    if changes and not dry_run:
        with table.transaction() as tx:
            if added:
                with tx.update_schema() as update:
                    for name in added:
                        column = spec.schema.find_field(name)
                        update.add_column(name, column.field_type, column.doc)
            if differing:
                tx.set_properties(differing)
    action = ("would update" if dry_run else "updated") if changes else "unchanged"
    return {"table": spec.identifier, "action": action, "changes": "; ".join(changes)}
