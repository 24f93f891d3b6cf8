"""`k2 query`, `k2 candles`, `k2 volume` and `k2 tables maintain` on tables written here with pyiceberg."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.update import RemoveSchemasUpdate
from pyiceberg.transforms import DayTransform, IdentityTransform, Transform
from pyiceberg.types import DoubleType, IcebergType, LongType, NestedField, StringType, TimestamptzType

from k2.connect.tables import apply_table, load_table_specs, rest_catalog
from k2.query.engine import Lake

from .conftest import LocalStack, unique
from .helpers import DAY0, SYMBOLS, arrow, expected_candles, make_trades, normalised

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_files_table(local_stack: LocalStack) -> dict[str, Any]:
    """A table written as a streaming sink would: many small appends (hundreds of files)."""
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    trades = make_trades(6000, seed=31)
    rng = random.Random(5)
    rng.shuffle(trades)  # arrival order differs from trade order, as across partitions of a topic
    batches = [trades[i : i + 40] for i in range(0, len(trades), 40)]
    first_snapshot = None
    first_batch_count = 0
    for index, batch in enumerate(batches):
        table.append(arrow(batch, table))
        if index == 0:
            current = table.current_snapshot()
            assert current is not None
            first_snapshot = current.snapshot_id
            first_batch_count = len(batch)
            time.sleep(1.1)  # an --as-of time strictly between the first and later snapshots
    return {
        "identifier": identifier,
        "trades": trades,
        "first_snapshot": first_snapshot,
        "first_count": first_batch_count,
        "first_committed": committed_at(table, first_snapshot),
    }


def committed_at(table: Any, snapshot_id: int | None) -> datetime:
    snapshot = table.snapshot_by_id(snapshot_id)
    return datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC)


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "1h", "1d"])
def test_candles_equal_an_independent_decimal_computation(
    local_stack: LocalStack, small_files_table: dict[str, Any], interval: str
) -> None:
    for symbol in SYMBOLS:
        done = local_stack.k2(
            "candles",
            "--symbols",
            symbol,
            "--interval",
            interval,
            "--table",
            small_files_table["identifier"],
            "--format",
            "json",
        )
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        want = expected_candles(small_files_table["trades"], symbol, interval)
        assert len(got) == len(want)
        assert normalised(got) == normalised(want)
        assert all(re.fullmatch(r"\d+\.\d{8}", row["vwap"]) for row in got), "vwap has exactly 8 decimals"


def test_candles_jsonl_is_one_object_per_line(local_stack: LocalStack, small_files_table: dict[str, Any]) -> None:
    done = local_stack.k2(
        "candles",
        "--symbols",
        "ETHUSDT",
        "--interval",
        "1h",
        "--table",
        small_files_table["identifier"],
        "--format",
        "jsonl",
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 48
    assert set(json.loads(lines[0])) == {
        "symbol",
        "interval_start",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "vwap",
        "trade_count",
    }


def test_a_symbol_day_query_reads_only_that_partitions_files(
    local_stack: LocalStack, small_files_table: dict[str, Any]
) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    table = catalog.load_table(small_files_table["identifier"])
    files = table.inspect.files()
    partitions = files["partition"].to_pylist()
    # The declared layout buckets symbols (connect/tables.toml): ETHUSDT's files are those of its bucket.
    bucket_field = next(f for f in table.spec().fields if f.name == "symbol_bucket")
    bucket = bucket_field.transform.transform(StringType())("ETHUSDT")
    in_partition = sum(1 for p in partitions if p["symbol_bucket"] == bucket and p["trade_day"] == DAY0.date())
    assert 0 < in_partition < len(partitions)
    lake = Lake(local_stack.catalog_uri, trades=small_files_table["identifier"])
    plan = lake.query(
        "explain analyze select count(*) from trades where symbol = 'ETHUSDT' "
        "and trade_time >= TIMESTAMPTZ '2026-11-20 00:00:00+00' and trade_time < TIMESTAMPTZ '2026-11-21 00:00:00+00'"
    ).to_pylist()[0]["explain_value"]
    assert "ICEBERG_SCAN" in plan
    files_read = sum(int(n.replace(",", "")) for n in re.findall(r"Total Files Read: ([\d,]+)", plan))
    assert files_read == in_partition, f"read {files_read} files, the partition has {in_partition}"


def rows_of(table: pa.Table) -> list[str]:
    """A result as sorted row reprs (order-insensitive, exact values, maps included)."""
    return sorted(repr(sorted(row.items())) for row in table.to_pylist())


def same_as_pyiceberg(lake: Lake, identifier: str, statements: list[str]) -> dict[str, pa.Table]:
    """Each statement's result through k2 (DuckDB's ATTACH), after asserting that the same SQL over
    pyiceberg's own scan of the table (an independent reader: its planning, deletes, field ids) agrees."""
    catalog = rest_catalog(lake.uri)
    reference = duckdb.connect()
    reference.execute("SET TimeZone = 'UTC'")
    reference.register("pyiceberg_scan", catalog.load_table(identifier).scan().to_arrow())
    results = {}
    for sql in statements:
        ours = lake.query(sql.format(t=identifier))
        theirs = reference.execute(sql.format(t="pyiceberg_scan")).to_arrow_table()
        assert rows_of(ours) == rows_of(theirs), sql
        results[sql] = ours
    return results


PROBES = [
    "select * from {t}",
    "select symbol, count(*) n, sum(price) p from {t} group by symbol",
    "select * from {t} where symbol = 'ETHUSDT'",
    "select * from {t} where symbol in ('BTCUSDT', 'BNBUSDT') and trade_time < TIMESTAMPTZ '2026-11-21 00:00:00+00'",
    "select * from {t} where trade_time >= TIMESTAMPTZ '2026-11-21 00:00:00+00'",
    "select * from {t} where trade_time = (select min(trade_time) from {t} where symbol = 'BNBUSDT')",
    "select * from {t} where trade_time <= (select max(trade_time) from {t}) and symbol >= 'C'",
    "select * from {t} where symbol = 'ETHUSDT' or trade_time < TIMESTAMPTZ '2026-11-20 01:00:00+00'",
    "select * from {t} where symbol = 'XRPUSDT'",
    "select * from {t} where trade_time < TIMESTAMPTZ '2026-11-20 00:00:00+00'",
    "select symbol, trade_id from {t} order by trade_time desc, trade_id desc limit 25",
]


def test_reads_return_what_pyiceberg_reads(local_stack: LocalStack, small_files_table: dict[str, Any]) -> None:
    identifier = small_files_table["identifier"]
    lake = Lake(local_stack.catalog_uri)
    counts = {sql: result.num_rows for sql, result in same_as_pyiceberg(lake, identifier, PROBES).items()}
    assert counts[PROBES[0]] == len(small_files_table["trades"])
    assert counts[PROBES[8]] == 0 and counts[PROBES[9]] == 0
    assert counts[PROBES[4]] == sum(1 for t in small_files_table["trades"] if t["trade_time"] >= DAY0 + timedelta(1))


def test_escaped_partition_values_are_read_exactly(local_stack: LocalStack) -> None:
    """Iceberg URL-encodes partition values in paths; such values must still come back exactly."""
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q_escape')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    trades = make_trades(60, seed=41)
    odd = ["BTC/USDT", "ETH USDT", "A+B", "50%OFF"]
    for index, trade in enumerate(trades):
        trade["symbol"] = odd[index % len(odd)]
    table.append(arrow(trades, table))
    lake = Lake(local_stack.catalog_uri)
    got = lake.query(f"select symbol, count(*) n from {identifier} group by symbol order by symbol").to_pylist()
    assert got == [{"symbol": s, "n": 15} for s in sorted(odd)]
    same_as_pyiceberg(lake, identifier, ["select * from {t} where symbol = 'BTC/USDT'", *PROBES[:3]])


def test_a_table_with_an_evolved_schema_reads_null_in_older_files(local_stack: LocalStack) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q_evolved')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    table.append(arrow(make_trades(30, seed=42), table))
    with table.update_schema() as update:
        update.add_column("venue", StringType())
    table = catalog.load_table(identifier)
    later = pa.Table.from_pylist(
        [dict(t, vendor_data=list(t["vendor_data"].items()), venue="spot") for t in make_trades(20, seed=43)],
        schema=table.schema().as_arrow(),
    )
    table.append(later)
    lake = Lake(local_stack.catalog_uri)
    got = lake.query(f"select venue, count(*) n from {identifier} group by venue order by venue").to_pylist()
    assert got == [{"venue": "spot", "n": 20}, {"venue": None, "n": 30}]


def test_time_travel_returns_the_earlier_count(local_stack: LocalStack, small_files_table: dict[str, Any]) -> None:
    table = small_files_table["identifier"]
    # Another table, created later, that has neither the snapshot nor any history at --as-of time.
    catalog = rest_catalog(local_stack.catalog_uri)
    other = f"{unique('q_other')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=other))
    other_table = catalog.load_table(other)
    other_table.append(arrow(make_trades(10, seed=32), other_table))
    now = local_stack.k2("query", f"select count(*) as n from {table}", "--format", "json")
    assert json.loads(now.stdout)[0]["n"] == len(small_files_table["trades"])
    then = local_stack.k2(
        "query",
        f"select count(*) as n from {table}",
        "--snapshot",
        str(small_files_table["first_snapshot"]),
        "--format",
        "json",
    )
    assert then.returncode == 0, then.stderr
    assert json.loads(then.stdout)[0]["n"] == small_files_table["first_count"]
    as_of = (small_files_table["first_committed"] + timedelta(milliseconds=500)).strftime("%Y-%m-%d %H:%M:%S.%f")
    earlier = local_stack.k2("query", f"select count(*) as n from {table}", "--as-of", as_of, "--format", "json")
    assert earlier.returncode == 0, earlier.stderr
    assert json.loads(earlier.stdout)[0]["n"] == small_files_table["first_count"]
    listed = local_stack.k2("tables", "snapshots", table, "--format", "json")
    ids = [row["snapshot_id"] for row in json.loads(listed.stdout)]
    assert ids[0] == small_files_table["first_snapshot"] and len(ids) == 150


def test_volume_per_symbol(local_stack: LocalStack, small_files_table: dict[str, Any]) -> None:
    done = local_stack.k2(
        "volume",
        "--since",
        "2026-11-20T00:00:00Z",
        "--until",
        "2026-11-22T00:00:00Z",
        "--table",
        small_files_table["identifier"],
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    got = {row["symbol"]: row for row in json.loads(done.stdout)}
    for symbol in SYMBOLS:
        mine = [t for t in small_files_table["trades"] if t["symbol"] == symbol]
        assert Decimal(got[symbol]["volume"]) == sum(t["quantity"] for t in mine)
        assert Decimal(got[symbol]["quote_volume"]) == sum(t["price"] * t["quantity"] for t in mine)
        assert got[symbol]["trade_count"] == len(mine)


def test_maintain_keeps_results_and_removes_small_files(
    local_stack: LocalStack, small_files_table: dict[str, Any]
) -> None:
    table = small_files_table["identifier"]
    probes = [
        f"select symbol, count(*) as n, sum(price) as p, sum(quantity) as q, min(trade_time) as a, max(trade_id) as b "
        f"from {table} group by symbol order by symbol",
        f"select * from {table} where symbol = 'BTCUSDT' order by trade_time desc, trade_id desc limit 100",
    ]
    before = [local_stack.k2("query", sql, "--format", "json").stdout for sql in probes]
    candles_before = local_stack.k2(
        "candles", "--symbols", "BNBUSDT", "--interval", "15m", "--table", table, "--format", "json"
    )
    done = local_stack.k2("tables", "maintain", table, "--retain", "0s", "--orphan-age", "0s", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr  # e.g. pyiceberg re-deleting metadata the catalog removed
    report = json.loads(done.stdout)[0]
    assert report["partitions_compacted"] == 6  # 2 days x 3 symbols
    assert report["data_files_before"] >= 300 and report["data_files_after"] == 6
    assert report["disk_files_after"] < report["disk_files_before"] / 10
    assert [local_stack.k2("query", sql, "--format", "json").stdout for sql in probes] == before
    candles_after = local_stack.k2(
        "candles", "--symbols", "BNBUSDT", "--interval", "15m", "--table", table, "--format", "json"
    )
    assert candles_after.stdout == candles_before.stdout


def test_query_errors_are_one_line_with_a_non_zero_exit(local_stack: LocalStack) -> None:
    unknown = local_stack.k2("query", "select * from no_such_table")
    assert unknown.returncode == 1
    assert "no_such_table does not exist" in unknown.stderr and "tables in the catalog:" in unknown.stderr
    bad_sql = local_stack.k2("query", "selec 1")
    assert bad_sql.returncode == 1 and bad_sql.stderr.startswith("Error: the SQL does not parse: Parser Error: syntax")
    assert "Traceback" not in bad_sql.stderr and len(bad_sql.stderr.strip().splitlines()) == 1
    for write_sql in (
        "create table x as select 1",
        "select 1; create table x as select 1",
        "explain analyze copy (select 1) to 'k2-should-not-exist.csv'",
        "EXPLAIN (ANALYZE, FORMAT JSON) copy (select 1) to 'k2-should-not-exist.csv'",
        "  SET threads = 1",
    ):
        write = local_stack.k2("query", write_sql)
        assert write.returncode == 1 and "read-only" in write.stderr, write_sql
    down = local_stack.k2("--catalog-uri", "http://127.0.0.1:9", "query", "select 1")
    assert down.returncode == 1
    assert "http://127.0.0.1:9 is unreachable" in down.stderr and "k2 stack up" in down.stderr


@pytest.mark.parametrize("transform", ["hour", "month"])
def test_other_time_partitions_are_read_exactly(local_stack: LocalStack, transform: str) -> None:
    """hour(trade_time): 48 hours x 3 symbols = 144 partitions; month: one month."""
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q_' + transform)}.trades"
    spec = replace(
        load_table_specs()["market_data.trades"],
        identifier=identifier,
        partition=[("trade_time", transform, f"trade_{transform}"), ("symbol", "identity", "symbol")],
    )
    apply_table(catalog, spec)
    table = catalog.load_table(identifier)
    trades = make_trades(3000, seed=44)
    for start in range(0, len(trades), 500):
        table.append(arrow(trades[start : start + 500], table))
    lake = Lake(local_stack.catalog_uri)
    assert same_as_pyiceberg(lake, identifier, PROBES)[PROBES[0]].num_rows == len(trades)
    hour = (
        "select count(*) n from {t} where symbol = 'ETHUSDT' and "
        "trade_time >= TIMESTAMPTZ '2026-11-20 05:00:00+00' and trade_time < TIMESTAMPTZ '2026-11-20 06:00:00+00'"
    )
    got = lake.query(hour.format(t=identifier)).to_pylist()[0]["n"]
    assert got == sum(
        1
        for t in trades
        if t["symbol"] == "ETHUSDT" and DAY0 + timedelta(hours=5) <= t["trade_time"] < DAY0 + timedelta(hours=6)
    )


def small_table(
    local_stack: LocalStack,
    name: str,
    columns: Sequence[tuple[str, IcebergType]],
    partition: tuple[str, Transform[Any, Any], str],
) -> Any:
    """A table of optional columns (field ids 1, 2, ...) partitioned by one (column, transform, field name)."""
    schema = Schema(*(NestedField(i + 1, column, kind, required=False) for i, (column, kind) in enumerate(columns)))
    source_id = [column for column, _ in columns].index(partition[0]) + 1
    spec = PartitionSpec(PartitionField(source_id, 1000, partition[1], partition[2]))
    catalog = rest_catalog(local_stack.catalog_uri)
    namespace = unique(name)
    catalog.create_namespace(namespace)
    return catalog.create_table(f"{namespace}.t", schema=schema, partition_spec=spec)


def rows_through_k2(local_stack: LocalStack, table: Any, sql: str) -> list[dict[str, Any]]:
    """The statement's rows, after checking them against pyiceberg's reading of the table."""
    identifier = ".".join(table.name())
    got = same_as_pyiceberg(Lake(local_stack.catalog_uri), identifier, [sql])[sql]
    return list(got.to_pylist())


def test_renamed_columns_are_matched_by_field_id_not_by_name(local_stack: LocalStack) -> None:
    """bid and ask swap names after a file was written; with the old schemas removed the table has one schema
    again, but its file still says bid for what is now ask. read_parquet would match by name."""

    columns = [("bid", DoubleType()), ("ask", DoubleType()), ("trade_time", TimestamptzType())]
    table = small_table(local_stack, "q_swap", columns, ("trade_time", DayTransform(), "trade_day"))
    table.append(pa.Table.from_pylist([{"bid": 1.0, "ask": 2.0, "trade_time": DAY0}], schema=table.schema().as_arrow()))
    for old, new in (("bid", "tmp"), ("ask", "bid"), ("tmp", "ask")):
        with table.update_schema() as update:
            update.rename_column(old, new)
    old_schemas = [s.schema_id for s in table.metadata.schemas if s.schema_id != table.metadata.current_schema_id]
    with table.transaction() as transaction:
        transaction._apply((RemoveSchemasUpdate(schema_ids=old_schemas),))  # type: ignore[call-arg]
    assert len(table.refresh().metadata.schemas) == 1
    assert rows_through_k2(local_stack, table, "select bid, ask from {t}") == [{"bid": 2.0, "ask": 1.0}]


def test_a_file_imported_without_a_column_reads_null_there(local_stack: LocalStack, tmp_path: Any) -> None:
    columns = [("symbol", StringType()), ("trade_time", TimestamptzType()), ("extra", LongType())]
    table = small_table(local_stack, "q_import", columns, ("trade_time", DayTransform(), "trade_day"))
    imported = tmp_path / "imported.parquet"
    stamps = pa.array([DAY0], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"symbol": pa.array(["B"]), "trade_time": stamps}), imported)
    table.add_files([f"file://{imported}"])
    table.append(
        pa.Table.from_pylist([{"symbol": "A", "trade_time": DAY0, "extra": 1}], schema=table.schema().as_arrow())
    )
    rows = rows_through_k2(local_stack, table, "select symbol, extra from {t} order by symbol")
    assert rows == [{"symbol": "A", "extra": 1}, {"symbol": "B", "extra": None}]


def test_an_identity_partition_on_a_timestamp_is_read_exactly(local_stack: LocalStack) -> None:
    columns = [("symbol", StringType()), ("opened", TimestamptzType())]
    table = small_table(local_stack, "q_idts", columns, ("opened", IdentityTransform(), "opened"))
    rows = [{"symbol": s, "opened": DAY0 + timedelta(hours=h)} for h, s in enumerate("ABC")]
    table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
    got = rows_through_k2(
        local_stack, table, "select symbol from {t} where opened > TIMESTAMPTZ '2026-11-20 00:30:00+00'"
    )
    assert sorted(r["symbol"] for r in got) == ["B", "C"]


def test_tables_a_statement_does_not_name_are_still_readable(
    local_stack: LocalStack, small_files_table: dict[str, Any]
) -> None:
    identifier = small_files_table["identifier"]
    lake = Lake(local_stack.catalog_uri)
    counted = lake.query("select count(*) n from query_table($name)", {"name": identifier}).to_pylist()
    assert counted == [{"n": len(small_files_table["trades"])}]
    namespace, name = identifier.split(".")
    listed = lake.query(
        "select table_schema, table_name from information_schema.tables where table_name <> 'quotes'"
    ).to_pylist()
    assert {"table_schema": namespace, "table_name": name} in listed


def test_a_long_lived_lake_reads_each_tables_newest_snapshot(local_stack: LocalStack) -> None:
    """k2 run keeps one Lake and polls: every statement, named or not, must see the table's newest snapshot."""
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q_again')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    table.append(arrow(make_trades(30, seed=45), table))
    lake = Lake(local_stack.catalog_uri)

    def counts() -> tuple[int, int]:
        unnamed = lake.query("select count(*) n from query_table($name)", {"name": identifier}).to_pylist()[0]["n"]
        named = lake.query(f"select count(*) n from {identifier}").to_pylist()[0]["n"]
        return named, unnamed

    assert counts() == (30, 30)
    table.append(arrow(make_trades(20, seed=46), table))
    assert counts() == (50, 50)
