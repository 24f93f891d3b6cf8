"""The one way K2 rewrites a table's data: replace chosen files of one partition by the same rows, sorted.

Every compaction and every size-tier merge is a ``Rewrite``: a set of live data files of one partition.
Its rows are read from exactly those files, sorted by the table's sort order, written as new files of
about the target size into the same partition, and committed as one overwrite snapshot that deletes
the chosen files and adds the new ones. A cycle's rewrites commit together: under 1-s sink commits each
commit of the maintainer races the sink's next one, and every lost race costs a metadata round trip.

Only pyiceberg's public API is used: ``ArrowScan`` reads the files, ``write_file`` writes them with the
table's writer properties (``WriteTask`` carries the partition), and an overwrite through
``Transaction.update_snapshot`` commits. pyiceberg validates and retries that commit itself when the
catalog's head moved (``commit.retry.*``): a file it deletes must still be live and gain no delete files
(its required-delete and ``_validate_data_files_exist`` checks). What else it checks follows the table's
``write.delete.isolation-level``: under ``snapshot`` (what connect/tables.toml declares for tables a sink
appends to) the sink's appends never conflict, which is exactly Iceberg's RewriteFiles contract; under the
default ``serializable`` an append into the same partition meanwhile conflicts, and the rewrite is built
again on the new head (the files it wrote are reused).

A rewrite whose files are no longer all live (someone else rewrote or deleted them) is given up and its
new files deleted: committing it would bring rows back or lose them. A crash between writing and
committing leaves only unreferenced new files, which orphan cleanup deletes after ``orphan_age``.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, write_file
from pyiceberg.manifest import DataFile, DataFileContent
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.table import FileScanTask, Table, WriteTask
from pyiceberg.table.sorting import NullOrder, SortDirection
from pyiceberg.typedef import Record

from .exceptions import ConnectError
from .storage import delete_file

log = logging.getLogger("k2.maintainer")

# Snapshot summary property of the maintainer's rewrites: the kinds of rewrite the commit holds.
REWRITE_PROPERTY = "k2.maintenance-rewrite"
# Seconds to wait between writing a cycle's files and committing them: only crash tests set it.
HOLD_VARIABLE = "K2_MAINTAIN_HOLD_BEFORE_COMMIT"


@dataclass(frozen=True)
class Rewrite:
    """Files of one partition to replace by the same rows, sorted, in files of about the target size.

    ``kind`` is ``compact`` (a finished partition into as few files as the target size allows), ``tier N``
    (small files of one size tier of a partition still being written) or ``smallest`` (the smallest small
    files, to bring a partition under its small-file bound)."""

    label: str  # the partition, as field=value/...
    kind: str
    spec_id: int
    partition: tuple[Any, ...]  # the partition's values as the manifests record them
    paths: frozenset[str]
    size_bytes: int


@dataclass
class RewriteOutcome:
    """What a cycle's rewrites did."""

    files_rewritten: int = 0
    files_written: int = 0
    committed: list[Rewrite] = field(default_factory=list)
    abandoned: list[Rewrite] = field(default_factory=list)
    commit_retries: int = 0


def live_data_files(table: Table) -> tuple[dict[str, DataFile], set[str]]:
    """The current snapshot's live data files by path, and the paths of those that share a partition
    with a delete file (left alone: rewriting them would have to apply the deletes)."""
    head = table.current_snapshot()
    if head is None:
        return {}, set()
    files: dict[str, DataFile] = {}
    with_deletes: set[tuple[int, tuple[Any, ...]]] = set()
    for manifest in head.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if data_file.content == DataFileContent.DATA:
                files[data_file.file_path] = data_file
            else:
                with_deletes.add((data_file.spec_id, partition_values(data_file.partition)))
    deleted_against = {path for path, f in files.items() if (f.spec_id, partition_values(f.partition)) in with_deletes}
    return files, deleted_against


def partition_values(record: Record) -> tuple[Any, ...]:
    """A partition Record's values as a plain tuple."""
    return tuple(record[index] for index in range(len(record)))


def sort_rows(rows: pa.Table, table: Table) -> pa.Table:
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
    return rows.take(pc.sort_indices(pa.table(keys), sort_keys=sort_keys))


def _partition_key(table: Table, rewrite: Rewrite, record: Record) -> PartitionKey | None:
    """The partition the new files go to: the very values the chosen files carry."""
    spec = table.specs()[rewrite.spec_id]
    if not spec.fields:
        return None
    values = partition_values(record)
    key = PartitionKey(
        field_values=[PartitionFieldValue(f, value) for f, value in zip(spec.fields, values, strict=True)],
        partition_spec=spec,
        schema=table.schema(),
    )
    if partition_values(key.partition) != values:
        raise ConnectError(f"{rewrite.label}: cannot rebuild the partition {values} for new files")
    return key


def write_rewrite(
    table: Table,
    rewrite: Rewrite,
    target_file_size: int,
    live: dict[str, DataFile],
    deleted_against: set[str],
) -> tuple[list[DataFile], list[DataFile]]:
    """Read exactly the rewrite's files, write their rows sorted into files of about the target size.

    ``live`` and ``deleted_against`` are ``live_data_files(table)``. Returns (the chosen DataFiles as the
    table lists them, the new DataFiles); ([], []) when a chosen file is no longer live or has delete
    files against it (then it is left alone)."""
    chosen = [live.get(path) for path in sorted(rewrite.paths)]
    old = [data_file for data_file in chosen if data_file is not None]
    if len(old) != len(rewrite.paths) or any(f.file_path in deleted_against for f in old):
        return [], []
    if rewrite.spec_id != table.spec().spec_id:
        raise ConnectError(f"{rewrite.label}: written under an earlier partition spec; not rewritten")
    tasks = [FileScanTask(data_file) for data_file in old]
    rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)
    rows = sort_rows(rows, table)
    pieces = max(1, math.ceil(rewrite.size_bytes / target_file_size))
    per_piece = max(1, math.ceil(rows.num_rows / pieces))
    partition_key = _partition_key(table, rewrite, old[0].partition)
    write_uuid = uuid.uuid4()
    tasks_to_write = [
        WriteTask(
            write_uuid=write_uuid,
            task_id=index,
            schema=table.schema(),
            record_batches=rows.slice(offset, per_piece).to_batches(),
            partition_key=partition_key,
        )
        for index, offset in enumerate(range(0, rows.num_rows, per_piece))
    ]
    return old, list(write_file(table.io, table.metadata, iter(tasks_to_write)))


def verb(planned: Rewrite) -> str:
    return "compacted" if planned.kind == "compact" else "merged"


def forget(table: Table, written: Sequence[DataFile]) -> None:
    """Delete new files that were never committed: nothing references them."""
    for data_file in written:
        delete_file(table.io, data_file.file_path)


def rewrite(
    catalog: Catalog, identifier: str, rewrites: Sequence[Rewrite], target_file_size: int, attempts: int = 20
) -> RewriteOutcome:
    """Carry out a cycle's rewrites in one commit (see the module docstring)."""
    outcome = RewriteOutcome()
    table = catalog.load_table(identifier)
    live, deleted_against = live_data_files(table)
    chosen: list[tuple[Rewrite, list[DataFile], list[DataFile]]] = []
    for planned in rewrites:
        old, new = write_rewrite(table, planned, target_file_size, live, deleted_against)
        if old:
            chosen.append((planned, old, new))
            log.info(
                "%s %s (%s): %d files (%d bytes) -> %d files written; committing",
                "compacting" if planned.kind == "compact" else "merging",
                planned.label,
                planned.kind,
                len(old),
                planned.size_bytes,
                len(new),
            )
        else:
            outcome.abandoned.append(planned)
            log.warning("gave up %s of %s: its files were rewritten or deleted meanwhile", planned.kind, planned.label)
    if not chosen:
        return outcome
    hold = float(os.environ.get(HOLD_VARIABLE) or 0)
    if hold:
        time.sleep(hold)
    kinds = ",".join(sorted({r.kind.split()[0] for r, _, _ in chosen}))
    for attempt in range(attempts):
        if attempt:
            table = catalog.load_table(identifier)
        try:
            with table.transaction() as tx:
                properties = {REWRITE_PROPERTY: kinds}
                with tx.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
                    for _, old, new in chosen:
                        for data_file in old:
                            overwrite.delete_data_file(data_file)
                        for data_file in new:
                            overwrite.append_data_file(data_file)
        except (CommitFailedException, ValidationException):
            # Lost a race pyiceberg's own retries could not win, or a conflict under serializable
            # isolation: keep what is still live and build the commit again on the new head.
            outcome.commit_retries += 1
            live, deleted_against = live_data_files(catalog.load_table(identifier))
            still = []
            for planned, old, new in chosen:
                if all(f.file_path in live and f.file_path not in deleted_against for f in old):
                    still.append((planned, old, new))
                    continue
                forget(table, new)
                outcome.abandoned.append(planned)
                log.warning(
                    "gave up %s of %s: its files were rewritten or deleted meanwhile", planned.kind, planned.label
                )
            chosen = still
            if not chosen:
                return outcome
            time.sleep(min(2.0, 0.05 * 2**attempt))
            continue
        for planned, old, new in chosen:
            log.info("%s %s (%s): %d files -> %d files", verb(planned), planned.label, planned.kind, len(old), len(new))
            outcome.committed.append(planned)
            outcome.files_rewritten += len(old)
            outcome.files_written += len(new)
        return outcome
    for planned, _, new in chosen:
        forget(table, new)
        outcome.abandoned.append(planned)
        log.warning("gave up %s of %s: the table kept changing", planned.kind, planned.label)
    return outcome
