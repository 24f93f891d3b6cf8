"""Keeping a table the sink commits to every few seconds healthy: compact, expire, delete orphans.

Every table in the catalog can be maintained; its layout is read from the table itself.

* Compaction rewrites each finished partition that holds more than one data file into one file, its
  rows sorted by the table's sort order (the sort fields' transforms, directions and null orders; rows
  as read when the table has none). A partition is the tuple of the current partition spec's values,
  and it is finished when the time range of every year/month/day/hour field ends before the current
  UTC day starts. A table with no time field in its spec (unpartitioned, or identity fields only) has
  no such end, so each of its partitions is compacted whenever it holds more than one file. Each
  rewrite is an overwrite of exactly that partition's rows, selected by a pyiceberg expression built
  from the spec's transforms (identity: equal or IS NULL; year/month/day/hour: a half-open time range);
  a spec with a transform that has no exact row filter (bucket, truncate) is refused, never guessed.
  A rewrite commits only if the table did not change under the partition since it was read (Iceberg's
  optimistic concurrency); when the connector commits in between, the partition is read again and
  retried. The connector's own appends always retry cleanly.
* Snapshots committed before the run started minus ``retain`` are expired, except the head of every
  branch and tag (the current snapshot is main's head, unless the compaction replaced it). The
  compaction's own intermediate snapshots (pyiceberg's overwrite commits a delete then an append, and
  the delete snapshot lacks the partition being rewritten) are expired too, so time travel never lands
  on them; ``snapshots_expired`` counts only snapshots that existed when the run started.
* Files under the table's location that existed when the run started, are older than ``orphan_age``
  and that nothing kept references are deleted. Kept references: the current metadata file and the
  metadata log, every statistics and partition-statistics file the metadata lists (the catalog drops
  those of a snapshot it expires), Hadoop's ``.crc`` checksum beside a kept file, ``version-hint.text``,
  and of every remaining snapshot (which includes every snapshot a branch or tag points at) its manifest
  list, its manifests and the data and delete files live in them. pyiceberg's expiry leaves
  unreferenced files behind, so this step is what frees the disk. Files written after the run started
  (a connector commit in flight) are never touched, except the manifests of the compaction's own
  expired intermediate snapshots, which this run wrote and no one else can reference
  (``intermediate_files_deleted``; the plan cannot count them, they do not exist yet).

* Partitions still being written (today's, or any partition whose time range has not ended) are kept
  at a bounded number of small files by size tiers (``Policy``): a file's tier is
  ``1 + floor(log_fanout(size / min_tier_size))`` (tier 0 below ``min_tier_size``); when a tier holds
  ``tier_fanout`` files or more they are merged into files of about ``target_file_size``; files at or
  above ``target_file_size`` are never rewritten. If a partition would still hold more than
  ``max_small_files_per_partition`` small files, its smallest ones are merged too. Each merge reads
  exactly the chosen files, writes the new ones, and commits one overwrite snapshot that deletes the
  chosen files and adds the new ones. The commit is built on the table as it is when it commits and
  lands only if the catalog's head is still the one it was built on; otherwise it is rebuilt on the new
  head (the sink's appends never conflict), and given up when a chosen file is no longer live (someone
  else rewrote or deleted it: pyiceberg's required-delete check). A crash before the commit leaves only
  unreferenced new files, which the orphan step deletes after ``orphan_age``.
* Snapshots beyond the newest ``max_snapshots`` are expired as well as those older than the retention,
  so metadata.json stays small however often the sink commits.

``plan`` computes all three steps without changing anything (``k2 tables maintain --dry-run``);
``maintain`` computes the same plan, carries it out and reports the numbers the plan predicted.
``watch`` runs ``maintain`` on every declared table once per interval, touching a heartbeat file.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, NoSuchTableError, ValidationException
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    Reference,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.manifest import ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.sorting import NullOrder, SortDirection
from pyiceberg.transforms import (
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    TimeTransform,
    Transform,
    VoidTransform,
    YearTransform,
)
from pyiceberg.types import (
    BooleanType,
    DateType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from .exceptions import ConnectError
from .tables import TABLES_FILE
from .units import parse_duration

log = logging.getLogger("k2.maintainer")

# Snapshot summary property marking the snapshots one compaction run commits.
RUN_PROPERTY = "k2.maintenance-run"
# Snapshot summary property of a size-tier merge (one snapshot each, not an intermediate one).
MERGE_PROPERTY = "k2.maintenance-merge"
# Seconds to wait between writing a merge's files and committing them: only crash tests set it.
HOLD_VARIABLE = "K2_MAINTAIN_HOLD_BEFORE_COMMIT"
# Source types an identity partition value can be compared with exactly.
IDENTITY_TYPES = (StringType, IntegerType, LongType, DateType, TimestampType, TimestamptzType, BooleanType)
TIME_SOURCE_TYPES = (DateType, TimestampType, TimestamptzType)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PLAN_COLUMNS = ("step", "target", "count", "bytes")
MIB = 1024 * 1024
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": MIB, "GB": 1024 * MIB}


def parse_size(text: str | int) -> int:
    """'64MB', '256KB' or a number of bytes."""
    if isinstance(text, int):
        return text
    number = text.rstrip("KMGB")
    unit = text[len(number) :] or "B"
    try:
        return int(float(number) * SIZE_UNITS[unit])
    except (KeyError, ValueError):
        raise ConnectError(f"{text!r} is not a size like 256KB, 64MB or 1GB") from None


@dataclass(frozen=True)
class Policy:
    """How a table is kept healthy; declared per table in connect/tables.toml under ``.maintenance``."""

    max_small_files_per_partition: int = 30
    target_file_size: int = 64 * MIB
    tier_fanout: int = 4
    min_tier_size: int = 256 * 1024
    snapshot_retention: timedelta = timedelta(hours=24)
    max_snapshots: int = 500
    orphan_age: timedelta = timedelta(hours=1)
    orphan_check_interval: timedelta = timedelta(minutes=10)
    max_manifests: int = 100

    @classmethod
    def from_toml(cls, values: dict[str, Any], where: str = "") -> Policy:
        sizes = {"target_file_size", "min_tier_size"}
        durations = {"snapshot_retention", "orphan_age", "orphan_check_interval"}
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ConnectError(f"{where}: unknown maintenance keys {sorted(unknown)}; known: {sorted(known)}")
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key in sizes:
                parsed[key] = parse_size(value)
            elif key in durations:
                parsed[key] = parse_duration(str(value))
            else:
                parsed[key] = int(value)
        policy = cls(**parsed)
        if policy.tier_fanout < 2 or policy.max_small_files_per_partition < 2:
            raise ConnectError(f"{where}: tier_fanout and max_small_files_per_partition must be at least 2")
        return policy

    def tier(self, size: int) -> int:
        if size < self.min_tier_size:
            return 0
        return 1 + int(math.log(size / self.min_tier_size, self.tier_fanout))


def load_policies(path: Path = TABLES_FILE) -> dict[str, Policy]:
    """The maintenance policy of every table declared in connect/tables.toml (defaults where not set)."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return {
        identifier: Policy.from_toml(spec.get("maintenance", {}), f"{path}: {identifier}.maintenance")
        for identifier, spec in data.get("tables", {}).items()
    }


def policy_for(identifier: str) -> Policy:
    """The declared policy of a table, or the defaults for a table connect/tables.toml does not declare."""
    return load_policies().get(identifier, Policy())


@dataclass
class MaintainReport:
    table: str
    data_files_before: int
    data_bytes_before: int
    data_files_after: int = 0
    data_bytes_after: int = 0
    disk_files_before: int = 0
    disk_bytes_before: int = 0
    disk_files_after: int = 0
    disk_bytes_after: int = 0
    partitions_compacted: int = 0
    files_merged: int = 0
    merge_files_written: int = 0
    merges_abandoned: int = 0
    commit_retries: int = 0
    snapshots_expired: int = 0
    orphans_deleted: int = 0
    orphan_bytes_deleted: int = 0
    intermediate_files_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SpecField:
    """One field of the current partition spec, with the column its values come from."""

    name: str
    column: str
    source_type: IcebergType
    transform: Transform[Any, Any]


@dataclass(frozen=True)
class Partition:
    """A partition to compact: its name (field=value/...), its exact row filter and its live data files."""

    label: str
    row_filter: BooleanExpression
    paths: frozenset[str]
    size_bytes: int


@dataclass(frozen=True)
class Merge:
    """Small files of a partition still being written, to merge into files of about the target size."""

    label: str
    row_filter: BooleanExpression
    tier: int  # -1: the smallest files, merged to bring the partition under its small-file bound
    paths: frozenset[str]
    size_bytes: int


@dataclass
class MaintainPlan:
    """What a run will do, decided from the table and the disk as they are when it starts."""

    table: str
    started_at: datetime
    refused: str = ""  # why the table cannot be compacted; empty when it can
    partitions: list[Partition] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    expire: list[int] = field(default_factory=list)
    expire_before: datetime | None = None
    orphans: list[tuple[Path, int]] = field(default_factory=list)
    orphans_before: datetime | None = None
    local: bool = True
    disk: list[tuple[Path, int, float]] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        """The plan as rows of (step, target, count, bytes), as ``--dry-run`` prints it."""
        rows: list[dict[str, object]] = []
        if self.refused:
            rows.append({"step": "refuse", "target": self.refused, "count": None, "bytes": None})
        for partition in self.partitions:
            rows.append(
                {
                    "step": "compact",
                    "target": partition.label,
                    "count": len(partition.paths),
                    "bytes": partition.size_bytes,
                }
            )
        for merge in self.merges:
            tier = "smallest" if merge.tier < 0 else f"tier {merge.tier}"
            rows.append(
                {
                    "step": "merge",
                    "target": f"{merge.label} ({tier})",
                    "count": len(merge.paths),
                    "bytes": merge.size_bytes,
                }
            )
        cutoff = _iso(self.expire_before)
        rows.append(
            {"step": "expire", "target": f"snapshots before {cutoff}", "count": len(self.expire), "bytes": None}
        )
        where = f"unreferenced files older than {_iso(self.orphans_before)}"
        if not self.local:
            where = "skipped: the table's location is not on this machine's disk"
        rows.append(
            {"step": "delete", "target": where, "count": len(self.orphans), "bytes": sum(s for _, s in self.orphans)}
        )
        return rows


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else ""


def _load(catalog: Catalog, identifier: str) -> Table:
    try:
        return catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        names = sorted(".".join(name) for ns in catalog.list_namespaces() for name in catalog.list_tables(ns))
        uri = catalog.properties.get("uri", "?")
        raise ConnectError(
            f"no table {identifier} in the catalog at {uri}; tables: {', '.join(names) or 'none'}"
        ) from None


# --- layout: the partition spec as row filters, the sort order as sort keys ---------------------------


def _partition_fields(table: Table, identifier: str) -> tuple[list[SpecField], str]:
    """The current spec's fields, and why compaction is refused ('' when every field has an exact filter)."""
    schema = table.schema()
    fields = []
    for spec_field in table.spec().fields:
        column = schema.find_column_name(spec_field.source_id)
        source_type = schema.find_type(spec_field.source_id)
        transform = spec_field.transform
        fields.append(SpecField(spec_field.name, column or "?", source_type, transform))
        exact = (
            (isinstance(transform, IdentityTransform) and isinstance(source_type, IDENTITY_TYPES))
            or (isinstance(transform, TimeTransform) and isinstance(source_type, TIME_SOURCE_TYPES))
            or isinstance(transform, VoidTransform)
        )
        if not exact:
            return fields, (
                f"{identifier} is partitioned by {transform}({column}: {source_type}) as {spec_field.name}, which has "
                "no exact row filter; `k2 tables maintain` compacts tables partitioned by identity (strings, integers, "
                "booleans, dates, timestamps) and year/month/day/hour of a date or timestamp, or unpartitioned ones"
            )
    return fields, ""


def _time_range(transform: Transform[Any, Any], value: Any) -> tuple[datetime, datetime]:
    """The half-open UTC range of a year/month/day/hour partition value."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = (value - EPOCH.date()).days  # day partitions arrive as dates
    if isinstance(transform, YearTransform):
        return datetime(1970 + value, 1, 1, tzinfo=UTC), datetime(1971 + value, 1, 1, tzinfo=UTC)
    if isinstance(transform, MonthTransform):
        years, month = divmod(value, 12)
        start = datetime(1970 + years, month + 1, 1, tzinfo=UTC)
        years, month = divmod(value + 1, 12)
        return start, datetime(1970 + years, month + 1, 1, tzinfo=UTC)
    if isinstance(transform, DayTransform):
        start = EPOCH + timedelta(days=value)
        return start, start + timedelta(days=1)
    if isinstance(transform, HourTransform):
        start = EPOCH + timedelta(hours=value)
        return start, start + timedelta(hours=1)
    raise ConnectError(f"no time range for partition transform {transform}")


def _bound(moment: datetime, source_type: IcebergType) -> Any:
    # Range ends are midnights for a date column (year/month/day of a date); microseconds otherwise,
    # which is also what a timestamp without zone stores.
    return literal(moment.date()) if isinstance(source_type, DateType) else literal(moment)


def _human(partition_field: SpecField, value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(partition_field.transform, TimeTransform):
        return partition_field.transform.to_human_string(partition_field.source_type, value)
    return str(value)


def _partition(fields: list[SpecField], values: tuple[Any, ...]) -> tuple[str, BooleanExpression, datetime | None]:
    """(label, exact row filter, end of its time range or None when no time field bounds it)."""
    terms: list[BooleanExpression] = []
    ends: list[datetime] = []
    for partition_field, value in zip(fields, values, strict=True):
        transform = partition_field.transform
        column = Reference(partition_field.column)  # a column name, never parsed: any value is safe
        if isinstance(transform, VoidTransform):
            continue  # every row has a null value there: no constraint
        if value is None:
            terms.append(IsNull(term=column))
        elif isinstance(transform, IdentityTransform):
            terms.append(EqualTo(term=column, value=literal(value)))
        else:
            start, end = _time_range(transform, value)
            terms.append(GreaterThanOrEqual(term=column, value=_bound(start, partition_field.source_type)))
            terms.append(LessThan(term=column, value=_bound(end, partition_field.source_type)))
            ends.append(end)
    label = "/".join(f"{f.name}={_human(f, v)}" for f, v in zip(fields, values, strict=True)) or "(unpartitioned)"
    row_filter: BooleanExpression = AlwaysTrue()
    if len(terms) == 1:
        row_filter = terms[0]
    elif terms:
        row_filter = And(*terms)
    return label, row_filter, max(ends) if ends else None


def _sorted(rows: pa.Table, table: Table) -> pa.Table:
    """Rows in the table's sort order: each field's transform of its column, direction and null order."""
    order = table.sort_order()
    if order.is_unsorted or rows.num_rows < 2:
        return rows
    schema = table.schema()
    keys: dict[str, pa.Array] = {}
    sort_keys: list[tuple[str, str]] = []
    for index, sort_field in enumerate(order.fields):
        column = schema.find_column_name(sort_field.source_id)
        if column is None or column not in rows.column_names:
            raise ConnectError(f"{'.'.join(table.name())}: cannot sort by field {sort_field}: only top-level columns")
        values = sort_field.transform.pyarrow_transform(schema.find_type(sort_field.source_id))(rows[column])
        # Nulls are placed per field by a key of their own: Arrow's null placement is one for all keys.
        keys[f"null_{index}"] = pc.is_null(values)
        sort_keys.append(
            (f"null_{index}", "descending" if sort_field.null_order == NullOrder.NULLS_FIRST else "ascending")
        )
        keys[f"value_{index}"] = values
        sort_keys.append(
            (f"value_{index}", "descending" if sort_field.direction == SortDirection.DESC else "ascending")
        )
    indices = pc.sort_indices(pa.table(keys), sort_keys=sort_keys)
    return rows.take(indices)


# --- references: what the metadata keeps alive ------------------------------------------------------


def _local(path: str) -> str:
    return urlsplit(path).path if path.startswith("file:") else path


class _Manifests:
    """Live (added or existing) file paths per manifest, each manifest read once."""

    def __init__(self, table: Table) -> None:
        self.io = table.io
        self.live: dict[str, frozenset[str]] = {}

    def of(self, snapshot: Snapshot) -> list[ManifestFile]:
        return snapshot.manifests(self.io)

    def files(self, manifest: ManifestFile) -> frozenset[str]:
        if manifest.manifest_path not in self.live:
            # A DELETED entry is a tombstone: the file lives in the snapshot before, which keeps it if kept.
            entries = manifest.fetch_manifest_entry(self.io, discard_deleted=True)
            self.live[manifest.manifest_path] = frozenset(entry.data_file.file_path for entry in entries)
        return self.live[manifest.manifest_path]


def _metadata_files(table: Table, expired: Iterable[int] = ()) -> set[str]:
    """Metadata files, and the statistics files of every snapshot not about to expire."""
    metadata = table.metadata
    gone = set(expired)
    paths = {table.metadata_location}
    paths.update(entry.metadata_file for entry in metadata.metadata_log)
    paths.update(s.statistics_path for s in metadata.statistics if s.snapshot_id not in gone)
    paths.update(s.statistics_path for s in metadata.partition_statistics if s.snapshot_id not in gone)
    return paths


def _snapshot_files(manifests: _Manifests, snapshot: Snapshot) -> set[str]:
    paths = {snapshot.manifest_list}
    for manifest in manifests.of(snapshot):
        paths.add(manifest.manifest_path)
        paths.update(manifests.files(manifest))
    return paths


def _check_refs(table: Table, identifier: str) -> None:
    missing = [name for name, ref in table.metadata.refs.items() if table.snapshot_by_id(ref.snapshot_id) is None]
    if missing:
        raise ConnectError(
            f"{identifier}: branch or tag {', '.join(sorted(missing))} points at a snapshot the metadata does not "
            "list; refusing to maintain a table whose references cannot be followed"
        )


def _on_disk(paths: Iterable[str]) -> set[str]:
    # Paths compared as the metadata writes them and percent-decoded, so an encoding difference can only
    # keep a file, never delete one.
    local = {_local(p) for p in paths}
    return local | {unquote(p) for p in local}


def _kept(path: Path, keep: set[str]) -> bool:
    """Whether a file on disk is referenced, or belongs to one that is."""
    if path.name == "version-hint.text":  # a Hadoop table's pointer to its current metadata file
        return True
    if path.name.startswith(".") and path.name.endswith(".crc"):
        # Hadoop's checksum of the file next to it (the catalog writes metadata files through Hadoop):
        # it lives and goes with that file.
        return str(path.with_name(path.name[1:-4])) in keep
    return str(path) in keep


def _local_root(table: Table) -> Path | None:
    location = table.location()
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return Path(parts.path if parts.scheme else location)
    return None


def _disk(root: Path | None) -> list[tuple[Path, int, float]]:
    if root is None or not root.exists():
        return []
    found = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed meanwhile (the catalog deletes old metadata files itself)
            found.append((path, stat.st_size, stat.st_mtime))
    return found


def _live_data_files(table: Table) -> tuple[int, int]:
    if table.current_snapshot() is None:
        return 0, 0
    files = table.inspect.data_files()
    return files.num_rows, int(pc.sum(files["file_size_in_bytes"]).as_py() or 0)


# --- the plan -----------------------------------------------------------------------------------------


def _tier_merges(
    label: str, row_filter: BooleanExpression, group: list[tuple[str, int]], policy: Policy
) -> list[Merge]:
    """Size-tiered merges of one partition's small files; files at the target size are left alone."""
    small = [(path, size) for path, size in group if size < policy.target_file_size]
    tiers: dict[int, list[tuple[str, int]]] = {}
    for path, size in small:
        tiers.setdefault(policy.tier(size), []).append((path, size))
    merges = [
        Merge(label, row_filter, tier, frozenset(p for p, _ in files), sum(s for _, s in files))
        for tier, files in sorted(tiers.items())
        if len(files) >= policy.tier_fanout
    ]
    merged = frozenset().union(*(m.paths for m in merges))
    left = sorted((f for f in small if f[0] not in merged), key=lambda f: f[1])
    if len(left) + len(merges) > policy.max_small_files_per_partition:
        # More tiers than the bound allows (or a burst): merge the smallest down to half the bound.
        count = len(left) + len(merges) - policy.max_small_files_per_partition // 2 + 1
        chosen = left[: max(count, 2)]
        merges.append(Merge(label, row_filter, -1, frozenset(p for p, _ in chosen), sum(s for _, s in chosen)))
    return merges


def _partitions_to_compact(
    table: Table, identifier: str, fields: list[SpecField], today: date, policy: Policy
) -> tuple[list[Partition], list[Merge]]:
    if table.current_snapshot() is None:
        return [], []
    files = table.inspect.data_files().select(["file_path", "file_size_in_bytes", "partition", "spec_id"])
    spec_id = table.spec().spec_id
    groups: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for row in files.to_pylist():
        if row["spec_id"] != spec_id:
            raise ConnectError(
                f"{identifier} has data files written under an earlier partition spec ({row['file_path']}); "
                "`k2 tables maintain` compacts tables whose live files all use the current spec"
            )
        values = tuple((row["partition"] or {}).get(f.name) for f in fields)
        groups.setdefault(values, []).append((row["file_path"], row["file_size_in_bytes"]))
    day_start = datetime(today.year, today.month, today.day, tzinfo=UTC)
    partitions = []
    merges: list[Merge] = []
    for values, group in groups.items():
        if len(group) < 2:
            continue
        label, row_filter, ends = _partition(fields, values)
        if ends is not None and ends > day_start:
            merges += _tier_merges(label, row_filter, group, policy)  # still being written
            continue
        partitions.append(Partition(label, row_filter, frozenset(p for p, _ in group), sum(s for _, s in group)))
    return sorted(partitions, key=lambda p: p.label), sorted(merges, key=lambda m: (m.label, m.tier))


def _expiring(table: Table, cutoff: datetime, max_snapshots: int, protected: set[int]) -> list[int]:
    """Snapshots older than the cutoff or beyond the newest ``max_snapshots``, except protected ones."""
    cutoff_ms = int(cutoff.timestamp() * 1000)
    newest = sorted(table.metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0), reverse=True)
    keep = {s.snapshot_id for s in newest[:max_snapshots]}
    return [
        s.snapshot_id
        for s in table.metadata.snapshots
        if (s.timestamp_ms < cutoff_ms or s.snapshot_id not in keep) and s.snapshot_id not in protected
    ]


def _plan(
    table: Table,
    identifier: str,
    retain: timedelta,
    orphan_age: timedelta,
    today: date | None,
    policy: Policy | None = None,
    orphans: bool = True,
) -> MaintainPlan:
    policy = policy or Policy()
    started = datetime.now(UTC)
    today = today or started.date()
    _check_refs(table, identifier)
    plan = MaintainPlan(identifier, started, expire_before=started - retain, orphans_before=started - orphan_age)
    fields, plan.refused = _partition_fields(table, identifier)
    if not plan.refused:
        plan.partitions, plan.merges = _partitions_to_compact(table, identifier, fields, today, policy)

    metadata = table.metadata
    head = table.current_snapshot()
    # The compaction moves main to a new snapshot; every other branch and tag head stays protected.
    protected = {
        ref.snapshot_id for name, ref in metadata.refs.items() if not (name == MAIN_BRANCH and plan.partitions)
    }
    plan.expire = _expiring(table, plan.expire_before or started, policy.max_snapshots, protected)

    root = _local_root(table)
    plan.local = root is not None
    if root is None or not orphans:
        if not orphans:
            plan.orphans_before = None
        return plan
    plan.disk = _disk(root)
    manifests = _Manifests(table)
    keep = _metadata_files(table, plan.expire)
    expired = set(plan.expire)
    for snapshot in metadata.snapshots:
        if snapshot.snapshot_id not in expired:
            keep |= _snapshot_files(manifests, snapshot)
    if plan.partitions and head is not None:
        # What the compacted head will still reference of today's head: its files outside the rewritten
        # partitions, and its manifests that list none of them (pyiceberg rewrites those that do).
        rewritten = frozenset().union(*(p.paths for p in plan.partitions))
        for manifest in manifests.of(head):
            live = manifests.files(manifest)
            keep |= live - rewritten
            if not live & rewritten:
                keep.add(manifest.manifest_path)
    keep = _on_disk(keep)
    oldest_allowed = plan.orphans_before.timestamp() if plan.orphans_before else 0.0
    plan.orphans = [(path, size) for path, size, mtime in plan.disk if mtime < oldest_allowed and not _kept(path, keep)]
    return plan


def plan(
    catalog: Catalog,
    identifier: str,
    retain: timedelta | None = None,
    orphan_age: timedelta | None = None,
    today: date | None = None,
    policy: Policy | None = None,
) -> MaintainPlan:
    """What ``maintain`` would do now: partitions to compact, files to merge, snapshots to expire, files
    to delete. ``retain`` and ``orphan_age`` default to the policy's (the table's in connect/tables.toml)."""
    policy = policy or policy_for(identifier)
    return _plan(
        _load(catalog, identifier),
        identifier,
        retain if retain is not None else policy.snapshot_retention,
        orphan_age if orphan_age is not None else policy.orphan_age,
        today,
        policy,
    )


# --- carrying it out ----------------------------------------------------------------------------------


def _compact_partition(catalog: Catalog, identifier: str, partition: Partition, run_id: str, attempts: int) -> int:
    """Rewrite one partition into one sorted file; returns the number of retries it needed."""
    for attempt in range(attempts):
        table = catalog.load_table(identifier)
        rows = _sorted(table.scan(row_filter=partition.row_filter).to_arrow(), table)
        try:
            table.overwrite(rows, overwrite_filter=partition.row_filter, snapshot_properties={RUN_PROPERTY: run_id})
            return attempt
        except (CommitFailedException, ValidationException):
            time.sleep(0.5)  # the connector committed into the partition meanwhile: read it again
    raise ConnectError(
        f"{identifier}: partition {partition.label} changed {attempts} times while compacting; retry later"
    )


def _write_merged(table: Table, merge: Merge, policy: Policy) -> tuple[list[Any], list[Any]]:
    """Read exactly the merge's files, write their rows sorted into files of about the target size.

    Returns (the chosen DataFiles as the table lists them, the new DataFiles); ([], []) when a chosen
    file is no longer live or carries delete files (then it is left alone)."""
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

    tasks = [t for t in table.scan(row_filter=merge.row_filter).plan_files() if t.file.file_path in merge.paths]
    if len(tasks) != len(merge.paths) or any(t.delete_files for t in tasks):
        return [], []
    rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)
    rows = _sorted(rows, table)
    size = sum(t.file.file_size_in_bytes for t in tasks)
    pieces = max(1, math.ceil(size / policy.target_file_size))
    per_piece = max(1, math.ceil(rows.num_rows / pieces))
    write_uuid = uuid.uuid4()
    counter = itertools.count(0)
    written: list[Any] = []
    for offset in range(0, rows.num_rows, per_piece):
        written += _dataframe_to_data_files(
            table.metadata, rows.slice(offset, per_piece), table.io, write_uuid=write_uuid, counter=counter
        )
    return [t.file for t in tasks], written


def _validate_as_rewrite(producer: Any) -> None:
    """Make pyiceberg's own commit retry validate the overwrite as a rewrite of the same rows.

    pyiceberg validates an overwrite as serializable by default: any data file added since it started
    conflicts, so every append of the sink would fail a merge. A rewrite only needs what Iceberg's
    RewriteFiles checks: the files it replaces are still live, and no delete file was added against
    them. Both are checked on the catalog's head at every retry; the required-delete check of the rebuilt
    commit refuses it too if a chosen file is gone."""
    from pyiceberg.table.update.validate import _validate_data_files_exist, _validate_no_new_deletes_for_data_files

    def validate() -> None:
        window = producer._commit_window
        if window is None or window.is_empty() or window.head is None:
            return
        table = producer._transaction._table
        _validate_data_files_exist(table, window.head, producer._deleted_data_files, window.base)
        _validate_no_new_deletes_for_data_files(table, window.head, None, producer._deleted_data_files, window.base)

    producer._validate_concurrency = validate


def _merge_files(
    catalog: Catalog, identifier: str, merges: Sequence[Merge], policy: Policy, attempts: int
) -> tuple[int, int, int, int]:
    """Carry out a cycle's merges in one commit: (files merged, files written, commit retries, merges given up).

    The new files are written once. One commit for all of them, not one per partition, because under
    1-s sink commits every commit of the maintainer is a race against the next sink commit, and each
    lost race costs a metadata round trip. A lost race (CommitFailedException) is rebuilt on the
    catalog's new head at once: the rewrite's own validation (``_validate_as_rewrite``) already refuses
    a head on which a chosen file is gone, so no scan is needed to retry. When that validation fails,
    the merges whose files are no longer live are dropped (someone else rewrote or deleted them, and
    committing would bring their rows back or lose them) and the rest is committed."""
    table = catalog.load_table(identifier)
    chosen: list[tuple[Merge, list[Any], list[Any]]] = []
    for merge in merges:
        old, new = _write_merged(table, merge, policy)
        if old:
            chosen.append((merge, old, new))
    abandoned = len(merges) - len(chosen)
    if not chosen:
        return 0, 0, 0, abandoned
    hold = float(os.environ.get(HOLD_VARIABLE) or 0)
    for merge, old, new in chosen:
        log.info(
            "merging %s: %d files (%d bytes) -> %d files; committing", merge.label, len(old), merge.size_bytes, len(new)
        )
    if hold:
        time.sleep(hold)
    for attempt in range(attempts):
        if attempt:
            table = catalog.load_table(identifier)
        try:
            with table.transaction() as tx:
                kinds = sorted({f"tier-{m.tier}" if m.tier >= 0 else "smallest" for m, _, _ in chosen})
                with tx.update_snapshot(snapshot_properties={MERGE_PROPERTY: ",".join(kinds)}).overwrite() as overwrite:
                    _validate_as_rewrite(overwrite)
                    for _, old, new in chosen:
                        for data_file in old:
                            overwrite.delete_data_file(data_file)
                        for data_file in new:
                            overwrite.append_data_file(data_file)
            for merge, old, new in chosen:
                log.info("merged %s: %d files -> %d files", merge.label, len(old), len(new))
            return sum(len(o) for _, o, _ in chosen), sum(len(n) for _, _, n in chosen), attempt, abandoned
        except CommitFailedException:
            time.sleep(random.uniform(0.0, 0.1))  # pyiceberg's own retries (commit.retry.*) ran out too
        except ValidationException:
            current = catalog.load_table(identifier)
            still = []
            for merge, old, new in chosen:
                live = {t.file.file_path for t in current.scan(row_filter=merge.row_filter).plan_files()}
                if merge.paths <= live:
                    still.append((merge, old, new))
                    continue
                _forget(new)
                abandoned += 1
                log.warning("gave up merging %s: its files were rewritten or deleted meanwhile", merge.label)
            chosen = still
            if not chosen:
                return 0, 0, attempt + 1, abandoned
    for merge, _, new in chosen:
        _forget(new)
        log.warning("gave up merging %s: the table kept changing", merge.label)
    return 0, 0, attempts, abandoned + len(chosen)


def _forget(written: list[Any]) -> None:
    """Delete merged files that were never committed: nothing references them."""
    for data_file in written:
        _delete(Path(_local(data_file.file_path)))


def _expire(catalog: Catalog, identifier: str, planned: list[int], run_id: str) -> tuple[int, set[Path]]:
    """Expire the planned snapshots and this run's intermediate ones.

    Returns how many planned ones went, and the manifest lists and manifests this run's compaction wrote.
    """
    table = catalog.load_table(identifier)
    metadata = table.metadata
    heads = {ref.snapshot_id for ref in metadata.refs.values()}  # pyiceberg refuses these: never ask
    ours = sorted(
        (s for s in metadata.snapshots if s.summary is not None and s.summary[RUN_PROPERTY] == run_id),
        key=lambda s: (s.timestamp_ms, s.sequence_number or 0),
    )
    own_ids = {s.snapshot_id for s in ours}
    written = set()
    for snapshot in ours:
        written.add(snapshot.manifest_list)
        written.update(m.manifest_path for m in snapshot.manifests(table.io) if m.added_snapshot_id in own_ids)
    intermediate = [s.snapshot_id for s in ours[:-1]]  # the last one holds the compacted partitions
    existing = {s.snapshot_id for s in metadata.snapshots}
    expiring = [s for s in planned if s in existing and s not in heads]
    ids = expiring + [s for s in intermediate if s not in heads]
    if ids:
        table.maintenance.expire_snapshots().by_ids(ids).commit()
    return len(expiring), {Path(_local(p)) for p in written}


def _referenced(table: Table) -> set[str]:
    """Every file the table's metadata points at now, as local paths."""
    manifests = _Manifests(table)
    paths = _metadata_files(table)
    for snapshot in table.metadata.snapshots:
        paths |= _snapshot_files(manifests, snapshot)
    return _on_disk(paths)


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False  # gone meanwhile: the catalog removes old metadata files (and their checksums) itself
    return True


def maintain(
    catalog: Catalog,
    identifier: str,
    retain: timedelta | None = None,
    orphan_age: timedelta | None = None,
    today: date | None = None,
    attempts: int = 20,
    policy: Policy | None = None,
    orphans: bool = True,
) -> MaintainReport:
    """Carry out ``plan``: compact, merge, expire, delete orphans; report before/after and what each did.

    ``retain`` and ``orphan_age`` default to the policy's; ``orphans=False`` skips the orphan step (the
    watcher runs it less often: it reads every manifest of every snapshot)."""
    policy = policy or policy_for(identifier)
    retain = retain if retain is not None else policy.snapshot_retention
    orphan_age = orphan_age if orphan_age is not None else policy.orphan_age
    table = _load(catalog, identifier)
    planned = _plan(table, identifier, retain, orphan_age, today, policy, orphans)
    if planned.refused:
        raise ConnectError(planned.refused)
    files_before, bytes_before = _live_data_files(table)
    report = MaintainReport(
        identifier,
        files_before,
        bytes_before,
        disk_files_before=len(planned.disk),
        disk_bytes_before=sum(size for _, size, _ in planned.disk),
    )
    run_id = uuid.uuid4().hex
    for partition in planned.partitions:
        report.commit_retries += _compact_partition(catalog, identifier, partition, run_id, attempts)
        report.partitions_compacted += 1
    if planned.merges:
        merged, written_files, retries, abandoned = _merge_files(catalog, identifier, planned.merges, policy, attempts)
        report.files_merged += merged
        report.merge_files_written += written_files
        report.merges_abandoned += abandoned
        report.commit_retries += retries

    report.snapshots_expired, written = _expire(catalog, identifier, planned.expire, run_id)

    table = catalog.load_table(identifier)
    _check_refs(table, identifier)
    if planned.local and (planned.orphans or written):
        keep = _referenced(table)
        # Only files the plan found unreferenced and that nothing references after the run either.
        for path, size in planned.orphans:
            if not _kept(path, keep) and _delete(path):
                report.orphans_deleted += 1
                report.orphan_bytes_deleted += size
        # The manifests of the compaction's expired intermediate snapshots: written by this run, so no
        # commit in flight can need them; the plan could not count them, they did not exist yet.
        for path in sorted(written):
            if not _kept(path, keep) and _delete(path):
                report.intermediate_files_deleted += 1
    report.data_files_after, report.data_bytes_after = _live_data_files(table)
    disk_after = _disk(_local_root(table)) if orphans else []
    report.disk_files_after = len(disk_after)
    report.disk_bytes_after = sum(size for _, size, _ in disk_after)
    return report


# --- the maintainer: every declared table, once per interval -------------------------------------------


def head_manifests(table: Table) -> int:
    """Manifests the current snapshot reads (what a query plans through)."""
    head = table.current_snapshot()
    return len(head.manifests(table.io)) if head is not None else 0


def _heartbeat(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, default=str) + "\n")
    temporary.replace(path)  # readers never see half a record


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the maintainer last reported, None if it never did."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


def watch(
    catalog_factory: Callable[[], Catalog],
    identifiers: list[str] | None,
    interval: timedelta,
    heartbeat: Path | None = None,
    cycles: int | None = None,
    policies: dict[str, Policy] | None = None,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Maintain each table (default: every table of connect/tables.toml that exists) once per interval.

    A failing table is logged and retried next cycle; the loop itself never stops on one (a catalog
    that is down is waited for). The heartbeat file gets a JSON record after every table and cycle;
    with ``metrics_port`` the same state is served as Prometheus metrics on 127.0.0.1."""
    policies = policies if policies is not None else load_policies()
    names = identifiers or sorted(policies)
    last_orphans: dict[str, float] = {}
    cycle = 0
    state: dict[str, Any] = {"pid": os.getpid(), "interval_s": interval.total_seconds(), "tables": {}}
    totals: dict[str, dict[str, int]] = {}  # per table: files merged, snapshots expired, ... since start
    if metrics_port:
        serve_metrics(state, totals, metrics_port, metrics_host)
    _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
    log.info("maintaining %s every %ss", ", ".join(names), interval.total_seconds())
    while cycles is None or cycle < cycles:
        started = time.monotonic()
        cycle += 1
        try:
            catalog = catalog_factory()
            existing = {".".join(name) for ns in catalog.list_namespaces() for name in catalog.list_tables(ns)}
        except Exception as exc:  # the catalog is down or restarting: try again next cycle
            log.warning("cycle %d: catalog unavailable: %s", cycle, str(exc).splitlines()[0][:200])
            existing, catalog = set(), None
        for identifier in names:
            if catalog is None or identifier not in existing:
                continue
            policy = policies.get(identifier) or Policy()
            due = (
                time.monotonic() - last_orphans.get(identifier, -math.inf)
                >= policy.orphan_check_interval.total_seconds()
            )
            try:
                report = maintain(catalog, identifier, policy=policy, orphans=due)
                table = catalog.load_table(identifier)
                head = table.current_snapshot()
                totals_now = head.summary.additional_properties if head and head.summary else {}
                summary: dict[str, Any] = {
                    "last_commit_ms": head.timestamp_ms if head else None,
                    "bytes": int(totals_now.get("total-files-size", 0)),
                    "records": int(totals_now.get("total-records", 0)),
                    "data_files": report.data_files_after,
                    "max_files_per_partition": _max_files_per_partition(table),
                    "snapshots": len(table.metadata.snapshots),
                    "manifests": head_manifests(table),
                    "files_merged": report.files_merged,
                    "partitions_compacted": report.partitions_compacted,
                    "snapshots_expired": report.snapshots_expired,
                    "orphans_deleted": report.orphans_deleted,
                    "commit_retries": report.commit_retries,
                }
                if due:
                    last_orphans[identifier] = time.monotonic()
                state["tables"][identifier] = summary
                counted = totals.setdefault(identifier, dict.fromkeys(TOTALS, 0))
                for key in TOTALS[:-1]:
                    counted[key] += int(summary[key] or 0)
                shown = {k: v for k, v in summary.items() if k not in ("last_commit_ms", "bytes", "records")}
                log.info("cycle %d %s: %s", cycle, identifier, " ".join(f"{k}={v}" for k, v in shown.items()))
                if summary["manifests"] > policy.max_manifests:
                    log.warning("%s: %d manifests (> %d)", identifier, summary["manifests"], policy.max_manifests)
            except Exception as exc:  # one table's failure must not stop the others or the next cycle
                state["tables"][identifier] = {
                    **state["tables"].get(identifier, {}),
                    "error": str(exc).splitlines()[0][:300],
                }
                totals.setdefault(identifier, dict.fromkeys(TOTALS, 0))["errors"] += 1
                log.error("cycle %d %s failed: %s", cycle, identifier, str(exc).splitlines()[0][:300])
            _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
        state["cycle"], state["cycle_at"] = cycle, time.time()
        _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
        if cycles is not None and cycle >= cycles:
            break
        time.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))


TOTALS = ("files_merged", "partitions_compacted", "snapshots_expired", "orphans_deleted", "commit_retries", "errors")
TABLE_GAUGES = {
    "data_files": "Live data files.",
    "max_files_per_partition": "Data files in the fullest partition.",
    "snapshots": "Snapshots in the table's metadata.",
    "manifests": "Manifests the current snapshot reads.",
    "bytes": "Bytes of live data files.",
    "records": "Rows in the current snapshot.",
}


def serve_metrics(state: dict[str, Any], totals: dict[str, dict[str, int]], port: int, host: str = "127.0.0.1") -> None:
    """The maintainer's state as Prometheus metrics (prometheus-client) on host:port, read at scrape
    time: per table its files, snapshots, bytes and the age of its last commit (end-to-end freshness of
    the sink), and what maintenance did since the maintainer started."""
    from collections.abc import Iterator

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class MaintainerCollector(Collector):
        def collect(self) -> Iterator[Any]:
            tables = {name: found for name, found in state["tables"].items() if "data_files" in found}
            for key, doc in TABLE_GAUGES.items():
                family = GaugeMetricFamily(f"k2_table_{key}", doc, labels=["table"])
                for name, found in sorted(tables.items()):
                    family.add_metric([name], float(found[key]))
                yield family
            commit = GaugeMetricFamily(
                "k2_table_last_commit_timestamp_seconds", "Time of the last commit.", labels=["table"]
            )
            age = GaugeMetricFamily(
                "k2_table_last_commit_age_seconds", "Seconds since the last commit.", labels=["table"]
            )
            for name, found in sorted(tables.items()):
                if found.get("last_commit_ms"):
                    commit.add_metric([name], found["last_commit_ms"] / 1000)
                    age.add_metric([name], max(0.0, time.time() - found["last_commit_ms"] / 1000))
            yield commit
            yield age
            for key in TOTALS:
                done = CounterMetricFamily(
                    f"k2_maintainer_{key}", f"Maintenance {key.replace('_', ' ')}.", labels=["table"]
                )
                for name, counted in sorted(totals.items()):
                    done.add_metric([name], counted[key])
                yield done
            yield CounterMetricFamily("k2_maintainer_cycles", "Maintenance cycles run.", value=state.get("cycle", 0))
            yield GaugeMetricFamily(
                "k2_maintainer_last_cycle_timestamp_seconds", "End of the last cycle.", value=state.get("cycle_at", 0.0)
            )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MaintainerCollector())
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConnectError(f"maintainer metrics port {host}:{port} is not free ({exc.strerror})") from exc
    log.info("metrics on http://%s:%d/metrics", host, port)


def _max_files_per_partition(table: Table) -> int:
    if table.current_snapshot() is None:
        return 0
    partitions = table.inspect.data_files()["partition"].to_pylist()
    counts: dict[str, int] = {}
    for partition in partitions:
        key = json.dumps(partition, default=str, sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)
