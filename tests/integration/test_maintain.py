"""`k2 tables maintain` on tables of other layouts than market_data.trades, with branches, tags and statistics.

Tables are written here with pyiceberg in many small appends, as a streaming sink would, on past days
(finished partitions) and, where it matters, on the current hour (a partition still being written).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.table.statistics import StatisticsFile
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
)
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from k2.connect.tables import apply_table, load_table_specs, rest_catalog

from .conftest import LocalStack, unique
from .helpers import arrow

pytestmark = pytest.mark.integration

PAST = datetime(2026, 10, 5, 8, tzinfo=UTC)  # 08:00-12:00 UTC on a finished day
EXCHANGES = ["BINANCE", 'it\'s "odd"', "a b/c%20"]  # quotes, spaces, a slash, an escape: literals, not SQL text


def trades(count: int, seed: int, start: datetime, span: timedelta, exchanges: list[str]) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        moment = start + timedelta(milliseconds=rng.randrange(0, int(span.total_seconds() * 1000)))
        rows.append(
            {
                "exchange": rng.choice(exchanges),
                "symbol": rng.choice(["BTCUSDT", "ETHUSDT"]),
                "trade_id": seed * 100_000 + index,
                "price": Decimal(rng.randrange(1, 10**12)) / Decimal(10**8),
                "quantity": Decimal(rng.randrange(1, 10**10)) / Decimal(10**8),
                "side": "BUY",
                "is_buyer_maker": False,
                "trade_time": moment,
                "event_time": moment,
                "ingest_time": moment,
                "vendor_data": {"source": "test"},
            }
        )
    return rows


def trades_table(
    local_stack: LocalStack,
    name: str,
    partition: list[tuple[str, Transform[Any, Any], str]],
    sort: list[tuple[str, SortDirection, NullOrder]],
) -> Table:
    """A table of the trade contract's columns and properties, in the given layout."""
    declared = load_table_specs()["market_data.trades"]
    schema = declared.schema
    fields = [
        PartitionField(schema.find_field(column).field_id, 1000 + index, transform, field_name)
        for index, (column, transform, field_name) in enumerate(partition)
    ]
    order = SortOrder(
        *[
            SortField(schema.find_field(column).field_id, IdentityTransform(), direction, nulls)
            for column, direction, nulls in sort
        ]
    )
    catalog = rest_catalog(local_stack.catalog_uri)
    namespace = unique(name)
    catalog.create_namespace(namespace)
    return catalog.create_table(
        f"{namespace}.trades",
        schema=schema,
        partition_spec=PartitionSpec(*fields) if fields else UNPARTITIONED_PARTITION_SPEC,
        sort_order=order if sort else UNSORTED_SORT_ORDER,
        properties={**declared.properties, "format-version": "2"},
    )


def identifier_of(table: Table) -> str:
    return ".".join(table.name())


def local(path: str) -> Path:
    return Path(urlsplit(path).path)


def disk_state(table: Table) -> dict[str, tuple[int, float]]:
    root = local(table.location())
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


def files_per_partition(table: Table) -> Counter[str]:
    table.refresh()
    if table.current_snapshot() is None:
        return Counter()
    partitions = table.inspect.data_files()["partition"].to_pylist()
    return Counter(json.dumps(p, default=str, sort_keys=True) for p in partitions)


def all_rows(local_stack: LocalStack, identifier: str) -> list[str]:
    """Every row as `k2 query` prints it, order-insensitive."""
    done = local_stack.k2("query", f"select * from {identifier}", "--format", "json")
    assert done.returncode == 0, done.stderr
    return sorted(json.dumps(row, sort_keys=True) for row in json.loads(done.stdout))


def run_maintain(local_stack: LocalStack, identifier: str, *extra: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A dry run, then the real run (both with --retain 0s --orphan-age 0s): (plan rows, report)."""
    args = ("tables", "maintain", identifier, "--retain", "0s", "--orphan-age", "0s", *extra, "--format", "json")
    dry = local_stack.k2(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    real = local_stack.k2(*args)
    assert real.returncode == 0, real.stderr
    assert "WARNING" not in real.stderr, real.stderr
    report: dict[str, Any] = json.loads(real.stdout)[0]
    plan: list[dict[str, Any]] = json.loads(dry.stdout)
    return plan, report


def assert_plan_was_carried_out(plan: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """The dry run's numbers are the real run's."""
    steps = {row["step"] for row in plan}
    assert steps <= {"compact", "expire", "delete"}, plan
    compact = [row for row in plan if row["step"] == "compact"]
    (expire,) = [row for row in plan if row["step"] == "expire"]
    (delete,) = [row for row in plan if row["step"] == "delete"]
    assert report["partitions_compacted"] == len(compact)
    assert report["snapshots_expired"] == expire["count"]
    assert (report["orphans_deleted"], report["orphan_bytes_deleted"]) == (delete["count"], delete["bytes"])


@pytest.mark.parametrize("layout", ["hour_exchange_desc", "unpartitioned_unsorted"])
def test_a_table_of_another_layout_is_compacted_in_its_own_partitions_and_order(
    local_stack: LocalStack, layout: str
) -> None:
    partition: list[tuple[str, Transform[Any, Any], str]] = []
    sort: list[tuple[str, SortDirection, NullOrder]] = []
    if layout == "hour_exchange_desc":
        partition = [("trade_time", HourTransform(), "trade_hour"), ("exchange", IdentityTransform(), "exchange")]
        sort = [("trade_time", SortDirection.DESC, NullOrder.NULLS_LAST)]
    table = trades_table(local_stack, f"m_{layout[:5]}", partition, sort)
    identifier = identifier_of(table)
    for batch in range(40):
        table.append(arrow(trades(12, seed=batch, start=PAST, span=timedelta(hours=4), exchanges=EXCHANGES), table))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for batch in range(3):  # the current hour: a partition the sink is still writing
        table.append(arrow(trades(4, seed=900 + batch, start=now, span=timedelta(minutes=1), exchanges=["X"]), table))
    rows_before = all_rows(local_stack, identifier)
    per_partition = files_per_partition(table)
    snapshots_before = [s.snapshot_id for s in table.metadata.snapshots]
    disk_before = disk_state(table)

    dry = local_stack.k2("tables", "maintain", identifier, "--dry-run", "--retain", "0s", "--orphan-age", "0s")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["STEP", "TARGET", "COUNT", "BYTES"]
    table.refresh()
    assert [s.snapshot_id for s in table.metadata.snapshots] == snapshots_before
    assert disk_state(table) == disk_before, "a dry run changed files"

    plan, report = run_maintain(local_stack, identifier)
    assert_plan_was_carried_out(plan, report)
    after = files_per_partition(table)
    if partition:
        finished = {p: n for p, n in per_partition.items() if '"X"' not in p}
        assert len(finished) == 4 * len(EXCHANGES) and all(n > 1 for n in finished.values())
        assert sorted(row["count"] for row in plan if row["step"] == "compact") == sorted(finished.values())
        assert {row["target"].split("/", 1)[1] for row in plan if row["step"] == "compact"} == {
            f"exchange={e}" for e in EXCHANGES
        }
        assert after == {p: (1 if p in finished else n) for p, n in per_partition.items()}
        assert after[next(p for p in after if '"X"' in p)] == 3, "the current hour is left to the sink"
    else:
        assert [row["target"] for row in plan if row["step"] == "compact"] == ["(unpartitioned)"]
        assert after == Counter({"{}": 1})
    assert report["data_files_after"] == sum(after.values())
    assert all_rows(local_stack, identifier) == rows_before
    assert len(table.metadata.snapshots) == len(snapshots_before) - report["snapshots_expired"] + 1
    assert report["orphans_deleted"] > 0 and report["disk_files_after"] < report["disk_files_before"]
    for data_file in table.inspect.data_files().to_pylist():
        times = pq.read_table(local(data_file["file_path"]), columns=["trade_time"])["trade_time"].to_pylist()
        if sort and data_file["partition"]["exchange"] != "X":
            assert times == sorted(times, reverse=True), "rows are not in the table's sort order"
        assert local(data_file["file_path"]).exists()


def test_nulls_are_a_partition_and_sort_where_the_order_says(local_stack: LocalStack) -> None:
    """identity(venue) with NULL and odd venues, month(trade_time) with NULL times; sorted by n DESC NULLS FIRST."""
    schema = Schema(
        NestedField(1, "venue", StringType(), required=False),
        NestedField(2, "trade_time", TimestamptzType(), required=False),
        NestedField(3, "n", LongType(), required=False),
    )
    spec = PartitionSpec(
        PartitionField(1, 1000, IdentityTransform(), "venue"), PartitionField(2, 1001, MonthTransform(), "month")
    )
    order = SortOrder(SortField(3, IdentityTransform(), SortDirection.DESC, NullOrder.NULLS_FIRST))
    catalog = rest_catalog(local_stack.catalog_uri)
    namespace = unique("m_nulls")
    catalog.create_namespace(namespace)
    table = catalog.create_table(f"{namespace}.t", schema=schema, partition_spec=spec, sort_order=order)
    rng = random.Random(7)
    written = []
    for _ in range(20):
        rows = [
            {
                "venue": rng.choice([None, "x'y", "a b"]),
                "trade_time": rng.choice([None, PAST, PAST - timedelta(days=40)]),
                "n": rng.choice([None, *range(100)]),
            }
            for _ in range(8)
        ]
        written += rows
        table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
    per_partition = files_per_partition(table)
    assert len(per_partition) == 9 and all(n > 1 for n in per_partition.values())

    plan, report = run_maintain(local_stack, identifier_of(table))
    assert_plan_was_carried_out(plan, report)
    assert report["partitions_compacted"] == 9
    assert files_per_partition(table) == Counter(dict.fromkeys(per_partition, 1))

    def key(row: dict[str, Any]) -> str:
        return json.dumps(row, default=str, sort_keys=True)

    assert sorted(map(key, table.scan().to_arrow().to_pylist())) == sorted(map(key, written))
    for data_file in table.inspect.data_files().to_pylist():
        values = pq.read_table(local(data_file["file_path"]))["n"].to_pylist()
        nulls = values.count(None)
        assert values[:nulls] == [None] * nulls and values[nulls:] == sorted(values[nulls:], reverse=True)


def write_stats_file(table: Table, name: str) -> tuple[str, int]:
    path = local(table.location()) / "metadata" / f"{name}-{uuid.uuid4().hex}.stats"
    path.write_bytes(b"PFA1" + os.urandom(60) + b"PFA1")  # its content is nobody's business but a reader's
    return f"file://{path}", path.stat().st_size


def test_orphan_cleanup_keeps_branches_tags_and_statistics(local_stack: LocalStack) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('m_refs')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    snapshot_ids: list[int] = []
    day = timedelta(hours=12)  # one day: 2 partitions (day x symbol)
    for batch in range(4):
        table.append(arrow(trades(30, seed=batch, start=PAST, span=day, exchanges=["BINANCE"]), table))
        current = table.metadata.current_snapshot_id
        assert current is not None
        snapshot_ids.append(current)
    tagged, branched = snapshot_ids[1], snapshot_ids[2]
    table.manage_snapshots().create_tag(tagged, "v1").create_branch(branched, "audit").commit()
    table.append(arrow(trades(10, seed=50, start=PAST, span=day, exchanges=["BRANCH"]), table), branch="audit")
    table.refresh()
    branch_head = table.metadata.refs["audit"].snapshot_id
    for batch in range(2):
        table.append(arrow(trades(30, seed=60 + batch, start=PAST, span=day, exchanges=["B"]), table))

    stats = {}
    with table.update_statistics() as update:
        for snapshot_id in (snapshot_ids[0], tagged, branch_head):
            path, size = write_stats_file(table, "stats")
            stats[path] = snapshot_id
            update.set_statistics(
                StatisticsFile.model_validate(
                    {
                        "snapshot-id": snapshot_id,
                        "statistics-path": path,
                        "file-size-in-bytes": size,
                        "file-footer-size-in-bytes": 4,
                        "blob-metadata": [],
                    }
                )
            )
    # pyiceberg 0.12 has no public call for partition statistics: the REST catalog's documented update.
    partition_stats, size = write_stats_file(table, "partition-stats")
    namespace, name = identifier.split(".")
    committed = requests.post(
        f"{local_stack.catalog_uri}/v1/namespaces/{quote(namespace)}/tables/{quote(name)}",
        json={
            "requirements": [],
            "updates": [
                {
                    "action": "set-partition-statistics",
                    "partition-statistics": {
                        "snapshot-id": tagged,
                        "statistics-path": partition_stats,
                        "file-size-in-bytes": size,
                    },
                }
            ],
        },
        timeout=30,
    )
    assert committed.status_code == 200, committed.text
    table.refresh()
    assert [s.statistics_path for s in table.metadata.partition_statistics] == [partition_stats]

    orphan = local(table.location()) / "data" / f"orphan-{uuid.uuid4().hex}.parquet"
    orphan.write_bytes(b"left by a writer that crashed before its commit")
    two_days_ago = time.time() - 2 * 86400
    os.utime(orphan, (two_days_ago, two_days_ago))
    main_rows = all_rows(local_stack, identifier)

    plan, report = run_maintain(local_stack, identifier)
    assert_plan_was_carried_out(plan, report)
    assert report["partitions_compacted"] == 2 and report["snapshots_expired"] >= 4
    assert not orphan.exists()
    table.refresh()
    assert {n: r.snapshot_id for n, r in table.metadata.refs.items() if n != "main"} == {
        "v1": tagged,
        "audit": branch_head,
    }
    # The catalog drops the statistics of an expired snapshot with it; that file is then an orphan.
    kept_stats = {path: snapshot_id for path, snapshot_id in stats.items() if snapshot_id != snapshot_ids[0]}
    assert {s.statistics_path: s.snapshot_id for s in table.metadata.statistics} == kept_stats
    assert not local(next(p for p, s in stats.items() if s == snapshot_ids[0])).exists()
    assert [s.statistics_path for s in table.metadata.partition_statistics] == [partition_stats]
    for path in [*kept_stats, partition_stats]:
        assert local(path).exists(), path
    for snapshot_id, count in ((tagged, 60), (branch_head, 100)):
        for data_file in table.inspect.data_files(snapshot_id)["file_path"].to_pylist():
            assert local(data_file).exists()
        assert table.scan(snapshot_id=snapshot_id).to_arrow().num_rows == count
        done = local_stack.k2(
            "query", f"select count(*) n from {identifier}", "--snapshot", str(snapshot_id), "--format", "json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [{"n": count}]
    assert all_rows(local_stack, identifier) == main_rows


@pytest.mark.parametrize("second", ["bucket", "truncate"])
def test_bucket_and_truncate_partitions_are_compacted_file_by_file(local_stack: LocalStack, second: str) -> None:
    """Transforms with no exact row filter: a rewrite names files, so they are compacted like any other."""
    transform: Transform[Any, Any] = BucketTransform(4) if second == "bucket" else TruncateTransform(3)
    table = trades_table(
        local_stack,
        f"m_{second[:5]}",
        [("trade_time", DayTransform(), "trade_day"), ("symbol", transform, "symbol_part")],
        [("symbol", SortDirection.ASC, NullOrder.NULLS_FIRST), ("trade_id", SortDirection.ASC, NullOrder.NULLS_FIRST)],
    )
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ETHBTC"]
    rng = random.Random(3)
    for batch in range(12):
        rows = trades(20, seed=batch, start=PAST, span=timedelta(hours=4), exchanges=["B"])
        for row in rows:
            row["symbol"] = rng.choice(symbols)
        table.append(arrow(rows, table))
    identifier = identifier_of(table)
    rows_before = all_rows(local_stack, identifier)
    per_partition = files_per_partition(table)
    assert len(per_partition) >= 2 and all(n > 1 for n in per_partition.values()), per_partition

    plan, report = run_maintain(local_stack, identifier)
    assert_plan_was_carried_out(plan, report)
    assert report["partitions_compacted"] == len(per_partition)
    assert files_per_partition(table) == Counter(dict.fromkeys(per_partition, 1))
    assert all_rows(local_stack, identifier) == rows_before
    for data_file in table.inspect.data_files().to_pylist():
        written = pq.read_table(local(data_file["file_path"]), columns=["symbol", "trade_id"]).to_pylist()
        assert written == sorted(written, key=lambda row: (row["symbol"], row["trade_id"]))
        assert local(data_file["file_path"]).exists()
    # The new files carry their partition's values: a one-symbol query through DuckDB still finds its rows.
    sql = f"select count(*) as n from {identifier} where symbol = 'ETHBTC'"
    done = local_stack.k2("query", sql, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["n"] == sum(1 for row in rows_before if '"symbol": "ETHBTC"' in row)


def test_errors_name_the_table_and_the_catalog(local_stack: LocalStack) -> None:
    missing = local_stack.k2("tables", "maintain", "no_such.table")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"Error: no table no_such.table in the catalog at {local_stack.catalog_uri}; ")
    assert "tables: " in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    down = local_stack.k2("--catalog-uri", "http://127.0.0.1:9", "tables", "maintain", "market_data.trades")
    assert down.returncode == 1 and "http://127.0.0.1:9 is unreachable" in down.stderr
    assert "Traceback" not in down.stderr and len(down.stderr.strip().splitlines()) == 1
