"""Keeping a table the sink commits to every few seconds healthy: compact, expire, delete orphans.

* Compaction rewrites each partition the sink has finished (older than the current UTC day) that holds
  more than one data file into one file sorted by symbol, trade_time, trade_id. Each rewrite is an
  overwrite of exactly that partition's rows, committed only if the table did not change since the
  partition was read (Iceberg's optimistic concurrency); when the connector commits in between, the
  partition is read again and retried. The connector's own appends always retry cleanly.
* Snapshots older than ``retain`` are expired (the current one never is).
* Files under the table's location that no remaining snapshot or metadata file references, and that
  are older than ``orphan_age`` (so files of a commit still in flight are never touched), are deleted.
  pyiceberg's expiry leaves them behind, so this step is what frees the disk.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from .exceptions import ConnectError


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
    commit_retries: int = 0
    snapshots_expired: int = 0
    orphans_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _live_files(table: Table) -> tuple[int, int]:
    if table.current_snapshot() is None:
        return 0, 0
    files = table.inspect.files()
    return files.num_rows, int(pa.compute.sum(files["file_size_in_bytes"]).as_py() or 0)


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
            stat = path.stat()
            found.append((path, stat.st_size, stat.st_mtime))
    return found


def _finished_partitions(table: Table, today: date) -> list[tuple[date, str, int]]:
    """(day, symbol, data file count) of partitions before ``today`` with more than one file."""
    if table.current_snapshot() is None:
        return []
    counts: dict[tuple[date, str], int] = {}
    for partition in table.inspect.files()["partition"].to_pylist():
        key = (partition["trade_day"], partition["symbol"])
        counts[key] = counts.get(key, 0) + 1
    return sorted((day, symbol, n) for (day, symbol), n in counts.items() if day < today and n > 1)


def _compact_partition(catalog: Catalog, identifier: str, day: date, symbol: str, attempts: int) -> int:
    """Rewrite one partition into one sorted file; returns the number of retries it needed."""
    if not symbol.isalnum():
        raise ConnectError(f"{identifier}: unexpected symbol {symbol!r} in a partition")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    # Exactly the partition day(trade_time) = day, symbol = symbol: a whole-file (metadata) delete.
    row_filter = f"symbol = '{symbol}' AND trade_time >= '{start.isoformat()}' AND trade_time < '{end.isoformat()}'"
    for attempt in range(attempts):
        table = catalog.load_table(identifier)
        rows = table.scan(row_filter=row_filter).to_arrow()
        rows = rows.sort_by([("symbol", "ascending"), ("trade_time", "ascending"), ("trade_id", "ascending")])
        try:
            table.overwrite(rows, overwrite_filter=row_filter)
            return attempt
        except CommitFailedException:
            time.sleep(0.5)  # the connector committed meanwhile: read the partition again
    raise ConnectError(f"{identifier}: partition {day}/{symbol} changed {attempts} times while compacting; retry later")


def _referenced(table: Table) -> set[str]:
    """Every file the table's metadata still points at (data, manifests, manifest lists, metadata)."""
    paths: set[str] = set()
    metadata = table.metadata
    paths.add(table.metadata_location)
    paths.update(entry.metadata_file for entry in metadata.metadata_log)
    for snapshot in metadata.snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            paths.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                paths.add(entry.data_file.file_path)
    return {urlsplit(p).path if p.startswith("file:") else p for p in paths}


def maintain(
    catalog: Catalog,
    identifier: str,
    retain: timedelta = timedelta(hours=1),
    orphan_age: timedelta = timedelta(hours=1),
    today: date | None = None,
    attempts: int = 20,
) -> MaintainReport:
    today = today or datetime.now(UTC).date()
    table = catalog.load_table(identifier)
    root = _local_root(table)
    files_before, bytes_before = _live_files(table)
    disk_before = _disk(root)
    report = MaintainReport(
        identifier,
        files_before,
        bytes_before,
        disk_files_before=len(disk_before),
        disk_bytes_before=sum(size for _, size, _ in disk_before),
    )
    for day, symbol, _count in _finished_partitions(table, today):
        report.commit_retries += _compact_partition(catalog, identifier, day, symbol, attempts)
        report.partitions_compacted += 1

    table = catalog.load_table(identifier)
    cutoff_ms = int((datetime.now(UTC) - retain).timestamp() * 1000)
    current = table.current_snapshot()
    expired = [s.snapshot_id for s in table.metadata.snapshots if s.timestamp_ms < cutoff_ms and s != current]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        report.snapshots_expired = len(expired)

    table = catalog.load_table(identifier)
    if root is not None:
        keep = _referenced(table)
        oldest_allowed = time.time() - orphan_age.total_seconds()
        for path, _size, mtime in _disk(root):
            if str(path) not in keep and mtime < oldest_allowed:
                path.unlink()
                report.orphans_deleted += 1
    report.data_files_after, report.data_bytes_after = _live_files(table)
    disk_after = _disk(root)
    report.disk_files_after = len(disk_after)
    report.disk_bytes_after = sum(size for _, size, _ in disk_after)
    return report
