"""Keeping a table the sink commits to every few seconds healthy: compact, merge, expire, delete orphans.

Every table in the catalog can be maintained; its layout is read from the table itself. A run first
reads the table into plain records (live data files, snapshots, branch and tag heads, the files under
its location), decides everything from those (``plan_rewrites``, ``plan_expiry``, ``plan_orphans``: pure
functions, tested without services), then carries the plan out: rewrites through the one rewrite
primitive of connect/rewrite.py, expiry through pyiceberg, deletes through the table's FileIO.

* Partitions whose time range ended before the current UTC day (every partition, for a table without
  a year/month/day/hour field) holding more than one file are compacted: rewritten into files of about
  ``target_file_size``, their rows sorted by the table's sort order. Any partition transform works
  (identity, time, bucket, truncate): a rewrite names files, not rows.
* Partitions still being written (today's) are kept at a bounded number of small files by size tiers
  (``Policy``): a file's tier is ``1 + floor(log_fanout(size / min_tier_size))`` (tier 0 below
  ``min_tier_size``); when a tier holds ``tier_fanout`` files or more they are merged; files at or above
  ``target_file_size`` are never rewritten. If a partition would still hold more than
  ``max_small_files_per_partition`` small files, its smallest ones are merged too.
* Snapshots committed before the run started minus ``retain``, or beyond the newest ``max_snapshots``, are
  expired, except the head of every branch and tag (main's head too, unless this run's rewrites move it).
* Files under the table's location that existed when the run started, are older than ``orphan_age`` and
  that nothing kept references are deleted. Kept references: the current metadata file and the metadata
  log, every statistics and partition-statistics file the metadata lists, Hadoop's ``.crc`` checksum
  beside a kept file, ``version-hint.text``, and of every remaining snapshot (every branch and tag head
  among them) its manifest list, its manifests and the data and delete files live in them. pyiceberg's
  expiry leaves unreferenced files behind, so this step is what frees the storage. Before anything is
  deleted, the references are read again from the table as it is then: a file referenced by then is kept.

``plan`` computes every step without changing anything (``k2 tables maintain --dry-run``); ``maintain``
computes the same plan, carries it out and reports the numbers the plan predicted.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.transforms import (
    DayTransform,
    HourTransform,
    MonthTransform,
    TimeTransform,
    Transform,
    YearTransform,
)
from pyiceberg.types import IcebergType

from .exceptions import ConnectError
from .rewrite import Rewrite, live_data_files, partition_values, rewrite
from .storage import StoredFile, delete_file, keys, list_files
from .tables import TABLES_FILE
from .units import parse_duration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PLAN_COLUMNS = ("step", "target", "count", "bytes")
MIB = 1024 * 1024
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": MIB, "GB": 1024 * MIB}
COMPACT = "compact"


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
    disk_files_before: int = 0  # files under the table's location (local disk or object store)
    disk_bytes_before: int = 0
    disk_files_after: int = 0
    disk_bytes_after: int = 0
    partitions_compacted: int = 0
    files_merged: int = 0  # small files of partitions still being written, merged
    merge_files_written: int = 0
    merges_abandoned: int = 0  # rewrites given up: their files changed meanwhile
    commit_retries: int = 0
    snapshots_expired: int = 0
    orphans_deleted: int = 0
    orphan_bytes_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# --- plain records: what planning reads of a table ---------------------------------------------------


@dataclass(frozen=True)
class SpecField:
    """One field of the current partition spec, with the column its values come from."""

    name: str
    column: str
    source_type: IcebergType
    transform: Transform[Any, Any]


@dataclass(frozen=True)
class LiveFile:
    """A live data file of the current snapshot."""

    path: str
    size: int
    spec_id: int
    partition: tuple[Any, ...]


@dataclass(frozen=True)
class SnapshotRecord:
    snapshot_id: int
    timestamp_ms: int
    sequence_number: int


@dataclass
class MaintainPlan:
    """What a run will do, decided from the table and its storage as they are when it starts."""

    table: str
    started_at: datetime
    refused: str = ""  # why the table cannot be maintained; empty when it can
    rewrites: list[Rewrite] = field(default_factory=list)
    expire: list[int] = field(default_factory=list)
    expire_before: datetime | None = None
    orphans: list[StoredFile] = field(default_factory=list)
    orphans_before: datetime | None = None
    stored: list[StoredFile] = field(default_factory=list)
    live: list[LiveFile] = field(default_factory=list)

    @property
    def compactions(self) -> list[Rewrite]:
        return [r for r in self.rewrites if r.kind == COMPACT]

    @property
    def merges(self) -> list[Rewrite]:
        return [r for r in self.rewrites if r.kind != COMPACT]

    def rows(self) -> list[dict[str, object]]:
        """The plan as rows of (step, target, count, bytes), as ``--dry-run`` prints it."""
        rows: list[dict[str, object]] = []
        if self.refused:
            rows.append({"step": "refuse", "target": self.refused, "count": None, "bytes": None})
        for planned in self.compactions:
            rows.append(
                {"step": "compact", "target": planned.label, "count": len(planned.paths), "bytes": planned.size_bytes}
            )
        for planned in self.merges:
            rows.append(
                {
                    "step": "merge",
                    "target": f"{planned.label} ({planned.kind})",
                    "count": len(planned.paths),
                    "bytes": planned.size_bytes,
                }
            )
        cutoff = _iso(self.expire_before)
        rows.append(
            {"step": "expire", "target": f"snapshots before {cutoff}", "count": len(self.expire), "bytes": None}
        )
        rows.append(
            {
                "step": "delete",
                "target": f"unreferenced files older than {_iso(self.orphans_before)}"
                if self.orphans_before
                else "skipped: not due this cycle",
                "count": len(self.orphans),
                "bytes": sum(f.size for f in self.orphans),
            }
        )
        return rows


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else ""


# --- planning: pure functions over the records ------------------------------------------------------


def time_range(transform: Transform[Any, Any], value: Any) -> tuple[datetime, datetime]:
    """The half-open UTC range of a year/month/day/hour partition value."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = (value - EPOCH.date()).days  # day partitions may arrive as dates
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


def _human(spec_field: SpecField, value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(spec_field.transform, TimeTransform):
        return spec_field.transform.to_human_string(spec_field.source_type, value)
    return str(value)


def partition_label(fields: list[SpecField], values: tuple[Any, ...]) -> str:
    return "/".join(f"{f.name}={_human(f, v)}" for f, v in zip(fields, values, strict=True)) or "(unpartitioned)"


def partition_end(fields: list[SpecField], values: tuple[Any, ...]) -> datetime | None:
    """When the partition's time range ends (the latest end of its time fields); None: no time field
    bounds it, so it is never finished."""
    ends = [
        time_range(f.transform, v)[1]
        for f, v in zip(fields, values, strict=True)
        if isinstance(f.transform, TimeTransform) and v is not None
    ]
    return max(ends) if ends else None


def tier_merges(
    label: str, spec_id: int, partition: tuple[Any, ...], group: list[LiveFile], policy: Policy
) -> list[Rewrite]:
    """Size-tiered merges of one partition's small files; files at the target size are left alone."""
    small = [f for f in group if f.size < policy.target_file_size]
    tiers: dict[int, list[LiveFile]] = {}
    for live_file in small:
        tiers.setdefault(policy.tier(live_file.size), []).append(live_file)

    def merge(kind: str, files: list[LiveFile]) -> Rewrite:
        return Rewrite(label, kind, spec_id, partition, frozenset(f.path for f in files), sum(f.size for f in files))

    merges = [merge(f"tier {tier}", files) for tier, files in sorted(tiers.items()) if len(files) >= policy.tier_fanout]
    merged = frozenset().union(*(m.paths for m in merges))
    left = sorted((f for f in small if f.path not in merged), key=lambda f: (f.size, f.path))
    if len(left) + len(merges) > policy.max_small_files_per_partition:
        # More tiers than the bound allows (or a burst): merge the smallest down to half the bound.
        count = len(left) + len(merges) - policy.max_small_files_per_partition // 2 + 1
        merges.append(merge("smallest", left[: max(count, 2)]))
    return merges


def plan_rewrites(
    identifier: str, fields: list[SpecField], spec_id: int, files: list[LiveFile], today: date, policy: Policy
) -> list[Rewrite]:
    """Compactions of finished partitions and size-tier merges of the others, each file in at most one."""
    groups: dict[tuple[Any, ...], list[LiveFile]] = {}
    for live_file in files:
        if live_file.spec_id != spec_id:
            raise ConnectError(
                f"{identifier} has data files written under an earlier partition spec ({live_file.path}); "
                "`k2 tables maintain` rewrites tables whose live files all use the current spec"
            )
        groups.setdefault(live_file.partition, []).append(live_file)
    day_start = datetime(today.year, today.month, today.day, tzinfo=UTC)
    rewrites: list[Rewrite] = []
    for values, group in groups.items():
        if len(group) < 2:
            continue
        label = partition_label(fields, values)
        end = partition_end(fields, values)
        if end is not None and end > day_start:
            rewrites += tier_merges(label, spec_id, values, group, policy)  # still being written
            continue
        paths = frozenset(f.path for f in group)
        rewrites.append(Rewrite(label, COMPACT, spec_id, values, paths, sum(f.size for f in group)))
    return sorted(rewrites, key=lambda r: (r.kind != COMPACT, r.label, r.kind))


def plan_expiry(
    snapshots: list[SnapshotRecord], protected: set[int], cutoff: datetime, max_snapshots: int
) -> list[int]:
    """Snapshots older than the cutoff or beyond the newest ``max_snapshots``, except protected ones."""
    cutoff_ms = int(cutoff.timestamp() * 1000)
    newest = sorted(snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number), reverse=True)
    keep = {s.snapshot_id for s in newest[:max_snapshots]}
    return [
        s.snapshot_id
        for s in snapshots
        if (s.timestamp_ms < cutoff_ms or s.snapshot_id not in keep) and s.snapshot_id not in protected
    ]


def kept(stored: StoredFile, keep: set[str]) -> bool:
    """Whether a stored file is referenced, or belongs to one that is."""
    key = stored.key
    name = key.rsplit("/", 1)[-1]
    if name == "version-hint.text":  # a Hadoop table's pointer to its current metadata file
        return True
    if key in keep:
        return True
    if name.startswith(".") and name.endswith(".crc"):
        # Hadoop's checksum of the file next to it (the catalog writes metadata files through Hadoop):
        # it lives and goes with that file.
        return f"{key.rsplit('/', 1)[0]}/{name[1:-4]}" in keep
    return False


def plan_orphans(stored: list[StoredFile], keep: set[str], older_than: datetime) -> list[StoredFile]:
    """Stored files older than ``older_than`` that nothing in ``keep`` (file keys) references."""
    oldest_allowed = older_than.timestamp()
    return [f for f in stored if f.mtime < oldest_allowed and not kept(f, keep)]


# --- reading the table ------------------------------------------------------------------------------


def _load(catalog: Catalog, identifier: str) -> Table:
    try:
        return catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        names = sorted(".".join(name) for ns in catalog.list_namespaces() for name in catalog.list_tables(ns))
        uri = catalog.properties.get("uri", "?")
        raise ConnectError(
            f"no table {identifier} in the catalog at {uri}; tables: {', '.join(names) or 'none'}"
        ) from None


def spec_fields(table: Table) -> list[SpecField]:
    schema = table.schema()
    return [
        SpecField(f.name, schema.find_column_name(f.source_id) or "?", schema.find_type(f.source_id), f.transform)
        for f in table.spec().fields
    ]


def live_files(table: Table) -> list[LiveFile]:
    files, _ = live_data_files(table)
    return [LiveFile(path, f.file_size_in_bytes, f.spec_id, partition_values(f.partition)) for path, f in files.items()]


def snapshot_records(table: Table) -> list[SnapshotRecord]:
    return [SnapshotRecord(s.snapshot_id, s.timestamp_ms, s.sequence_number or 0) for s in table.metadata.snapshots]


class _Manifests:
    """Live (added or existing) file paths per manifest, each manifest read once."""

    def __init__(self, table: Table) -> None:
        self.io = table.io
        self.live: dict[str, frozenset[str]] = {}

    def of(self, snapshot: Snapshot) -> list[tuple[str, frozenset[str]]]:
        """(manifest path, live file paths) of every manifest of a snapshot."""
        found = []
        for manifest in snapshot.manifests(self.io):
            if manifest.manifest_path not in self.live:
                # A DELETED entry is a tombstone: the file lives in the snapshot before, kept if that one is.
                entries = manifest.fetch_manifest_entry(self.io, discard_deleted=True)
                self.live[manifest.manifest_path] = frozenset(entry.data_file.file_path for entry in entries)
            found.append((manifest.manifest_path, self.live[manifest.manifest_path]))
        return found


def _metadata_files(table: Table, expiring: Iterable[int] = ()) -> set[str]:
    """Metadata files, and the statistics files of every snapshot not about to expire."""
    metadata = table.metadata
    gone = set(expiring)
    paths = {table.metadata_location}
    paths.update(entry.metadata_file for entry in metadata.metadata_log)
    paths.update(s.statistics_path for s in metadata.statistics if s.snapshot_id not in gone)
    paths.update(s.statistics_path for s in metadata.partition_statistics if s.snapshot_id not in gone)
    return paths


def _snapshot_files(manifests: _Manifests, snapshot: Snapshot) -> set[str]:
    paths = {snapshot.manifest_list}
    for manifest_path, live in manifests.of(snapshot):
        paths.add(manifest_path)
        paths.update(live)
    return paths


def referenced(table: Table) -> set[str]:
    """Every file the table's metadata points at now, as keys."""
    manifests = _Manifests(table)
    paths = _metadata_files(table)
    for snapshot in table.metadata.snapshots:
        paths |= _snapshot_files(manifests, snapshot)
    return keys(paths)


def _check_refs(table: Table, identifier: str) -> None:
    missing = [name for name, ref in table.metadata.refs.items() if table.snapshot_by_id(ref.snapshot_id) is None]
    if missing:
        raise ConnectError(
            f"{identifier}: branch or tag {', '.join(sorted(missing))} points at a snapshot the metadata does not "
            "list; refusing to maintain a table whose references cannot be followed"
        )


def _kept_after(table: Table, plan: MaintainPlan, manifests: _Manifests) -> set[str]:
    """What the table will still reference once the plan is carried out: metadata, the snapshots that
    stay, and, when the rewrites move main, what its new head keeps of the current one (its files outside
    the rewrites, and its manifests that list none of them: pyiceberg rewrites those that do)."""
    expired = set(plan.expire)
    keep = _metadata_files(table, expired)
    for snapshot in table.metadata.snapshots:
        if snapshot.snapshot_id not in expired:
            keep |= _snapshot_files(manifests, snapshot)
    head = table.current_snapshot()
    if plan.rewrites and head is not None:
        rewritten = frozenset().union(*(r.paths for r in plan.rewrites))
        for manifest_path, live in manifests.of(head):
            keep |= live - rewritten
            if not live & rewritten:
                keep.add(manifest_path)
    return keys(keep)


# --- the plan, and carrying it out ------------------------------------------------------------------


def _plan(
    table: Table,
    identifier: str,
    retain: timedelta,
    orphan_age: timedelta,
    today: date | None,
    policy: Policy,
    orphans: bool = True,
) -> MaintainPlan:
    started = datetime.now(UTC)
    today = today or started.date()
    _check_refs(table, identifier)
    plan = MaintainPlan(identifier, started, expire_before=started - retain)
    plan.live = live_files(table)
    plan.rewrites = plan_rewrites(identifier, spec_fields(table), table.spec().spec_id, plan.live, today, policy)
    # The rewrites move main to a new snapshot; every other branch and tag head stays protected.
    protected = {
        ref.snapshot_id for name, ref in table.metadata.refs.items() if not (name == MAIN_BRANCH and plan.rewrites)
    }
    plan.expire = plan_expiry(snapshot_records(table), protected, started - retain, policy.max_snapshots)
    if orphans:
        plan.orphans_before = started - orphan_age
        plan.stored = list_files(table.io, table.location())
        plan.orphans = plan_orphans(plan.stored, _kept_after(table, plan, _Manifests(table)), plan.orphans_before)
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


def _live_totals(table: Table) -> tuple[int, int]:
    files = live_files(table)
    return len(files), sum(f.size for f in files)


def _expire(catalog: Catalog, identifier: str, planned: list[int]) -> int:
    """Expire the planned snapshots that exist and head no branch or tag now; how many went."""
    table = catalog.load_table(identifier)
    heads = {ref.snapshot_id for ref in table.metadata.refs.values()}  # pyiceberg refuses these: never ask
    existing = {s.snapshot_id for s in table.metadata.snapshots}
    expiring = [s for s in planned if s in existing and s not in heads]
    if expiring:
        table.maintenance.expire_snapshots().by_ids(expiring).commit()
    return len(expiring)


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
    """Carry out ``plan``: rewrite, expire, delete orphans; report before/after and what each did.

    ``retain`` and ``orphan_age`` default to the policy's; ``orphans=False`` skips the orphan step (the
    watcher runs it less often: it reads every manifest of every snapshot and lists the storage)."""
    policy = policy or policy_for(identifier)
    retain = retain if retain is not None else policy.snapshot_retention
    orphan_age = orphan_age if orphan_age is not None else policy.orphan_age
    table = _load(catalog, identifier)
    planned = _plan(table, identifier, retain, orphan_age, today, policy, orphans)
    if planned.refused:
        raise ConnectError(planned.refused)
    report = MaintainReport(
        identifier,
        len(planned.live),
        sum(f.size for f in planned.live),
        disk_files_before=len(planned.stored),
        disk_bytes_before=sum(f.size for f in planned.stored),
    )
    if planned.rewrites:
        outcome = rewrite(catalog, identifier, planned.rewrites, policy.target_file_size, attempts)
        report.partitions_compacted = sum(1 for r in outcome.committed if r.kind == COMPACT)
        report.files_merged = sum(len(r.paths) for r in outcome.committed if r.kind != COMPACT)
        report.merge_files_written = outcome.files_written
        report.merges_abandoned = len(outcome.abandoned)
        report.commit_retries = outcome.commit_retries

    report.snapshots_expired = _expire(catalog, identifier, planned.expire)

    table = catalog.load_table(identifier)
    _check_refs(table, identifier)
    if planned.orphans:
        keep = referenced(table)  # only files nothing references after the run either
        for stored in planned.orphans:
            if not kept(stored, keep) and delete_file(table.io, stored.location):
                report.orphans_deleted += 1
                report.orphan_bytes_deleted += stored.size
    report.data_files_after, report.data_bytes_after = _live_totals(table)
    if orphans:
        after = list_files(table.io, table.location())
        report.disk_files_after = len(after)
        report.disk_bytes_after = sum(f.size for f in after)
    return report


def head_manifests(table: Table) -> int:
    """Manifests the current snapshot reads (what a query plans through)."""
    head = table.current_snapshot()
    return len(head.manifests(table.io)) if head is not None else 0


def max_files_per_partition(table: Table) -> int:
    """Data files in the fullest partition of the current snapshot."""
    counts: dict[tuple[int, tuple[Any, ...]], int] = {}
    for live_file in live_files(table):
        key = (live_file.spec_id, live_file.partition)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)
