"""Query speed on a streaming-shaped table, before and after `k2 tables maintain`, against a floor.

A table of --trades trades over several symbols and days is written the way the sink writes it: many
small appends in time order (one file per partition touched per append). Four queries run through the
`k2 query` engine (a scan plan per session, query/planner.py), and the same four run with DuckDB
`read_parquet` over exactly the table's current data files (the floor: no metadata work at all). Then
`k2 tables maintain` compacts, and both are measured again. Medians of --repeat runs each.

The plan is made once per `k2` invocation, before the first statement; its cost is printed on its own
line, beside what DuckDB's iceberg_scan spends on metadata in every statement (its `SELECT ... LIMIT 0`).

    python benchmarks/query_speed.py --trades 5000000 --appends 500
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
DAYS = 5
START = datetime(2026, 11, 1, tzinfo=UTC)
DECIMAL = pa.decimal128(28, 8)  # schemas/trade.avsc

QUERIES = {
    "count per symbol": "select symbol, count(*) from {t} group by symbol",
    "1m candles, one symbol-day": (
        "select time_bucket(interval '1 minute', trade_time) as m, arg_min(price, trade_time) o, max(price) h, "
        "min(price) l, arg_max(price, trade_time) c, sum(quantity) v, count(*) n from {t} "
        "where symbol = 'ETHUSDT' and trade_time >= timestamptz '2026-11-03 00:00:00+00' "
        "and trade_time < timestamptz '2026-11-04 00:00:00+00' group by 1 order by 1"
    ),
    "hourly VWAP per symbol": (
        "select symbol, time_bucket(interval '1 hour', trade_time) as h, "
        "sum(cast(price as decimal(38,8)) * quantity) / sum(quantity) as vwap from {t} group by 1, 2"
    ),
    "newest 100 of a symbol": "select * from {t} where symbol = 'BTCUSDT' order by trade_time desc limit 100",
}


def batch(
    rng: random.Random, start_ms: int, end_ms: int, count: int, next_ids: dict[str, int], schema: pa.Schema
) -> pa.Table:
    times = sorted(rng.randrange(start_ms, end_ms) for _ in range(count))
    symbols = [rng.choice(SYMBOLS) for _ in range(count)]
    ids = []
    for symbol in symbols:
        ids.append(next_ids[symbol])
        next_ids[symbol] += 1
    stamps = pa.array([t * 1000 for t in times], pa.timestamp("us", tz="UTC"))
    columns = {
        "exchange": pa.array(["BINANCE"] * count),
        "symbol": pa.array(symbols),
        "trade_id": pa.array(ids, pa.int64()),
        "price": pa.array([Decimal(rng.randrange(10**8, 10**13)).scaleb(-8) for _ in range(count)], DECIMAL),
        "quantity": pa.array([Decimal(rng.randrange(1, 10**10)).scaleb(-8) for _ in range(count)], DECIMAL),
        "side": pa.array([rng.choice(("BUY", "SELL")) for _ in range(count)]),
        "is_buyer_maker": pa.array([rng.random() < 0.5 for _ in range(count)]),
        "trade_time": stamps,
        "event_time": stamps,
        "ingest_time": stamps,
        "vendor_data": pa.array([[("source", "bench")]] * count, pa.map_(pa.string(), pa.string())),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def median_time(run: Any, repeat: int) -> float:
    run()  # warm: file metadata and OS caches, as an interactive user would have them
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def planning(catalog_uri: str, identifier: str, repeat: int) -> tuple[float, float]:
    """Median seconds to plan the table's scan, and iceberg_scan's metadata time in each statement."""
    from k2.query.engine import Lake
    from k2.query.planner import plan_scan

    lake = Lake(catalog_uri)
    namespace, name = identifier.split(".")
    ref = lake.catalog.table(namespace, name)
    assert ref is not None
    plan = median_time(lambda: plan_scan(lake.con, ref.metadata_location, ref.metadata, None), repeat)
    metadata = median_time(lambda: lake.con.execute(f"SELECT * FROM {lake.scan_sql(ref)} LIMIT 0").fetchall(), repeat)
    return plan, metadata


def measure(catalog_uri: str, identifier: str, repeat: int) -> dict[str, tuple[float, float]]:
    import duckdb

    from k2.connect.tables import rest_catalog
    from k2.query.engine import Lake

    lake = Lake(catalog_uri)
    lake.attach_tables()
    table = rest_catalog(catalog_uri).load_table(identifier)
    files = table.inspect.files()["file_path"].to_pylist()
    floor = duckdb.connect()
    floor.execute("SET TimeZone = 'UTC'")
    listing = ", ".join("'" + f.removeprefix("file:") + "'" for f in files)
    floor.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{listing}])")
    results = {}
    for name, sql in QUERIES.items():
        ours = median_time(lambda sql=sql: lake.query(sql.format(t=identifier)), repeat)
        base = median_time(lambda sql=sql: floor.execute(sql.format(t="t")).to_arrow_table(), repeat)
        results[name] = (ours, base)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--catalog-uri", default=os.environ.get("K2_CATALOG_URI", "http://127.0.0.1:8181"))
    args = parser.parse_args(argv)

    from k2.connect.maintenance import maintain
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog

    catalog = rest_catalog(args.catalog_uri)
    identifier = f"bench_q_{uuid.uuid4().hex[:8]}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    arrow_schema = table.schema().as_arrow()
    rng = random.Random(7)
    span_ms = DAYS * 86_400_000
    per_append = args.trades // args.appends
    next_ids = {s: 1 for s in SYMBOLS}
    started = time.monotonic()
    for index in range(args.appends):
        start_ms = int(START.timestamp() * 1000) + span_ms * index // args.appends
        end_ms = int(START.timestamp() * 1000) + span_ms * (index + 1) // args.appends
        table.append(batch(rng, start_ms, end_ms, per_append, next_ids, arrow_schema))
        if index % 50 == 0:
            print(f"  appended {index + 1}/{args.appends} ({time.monotonic() - started:.0f}s)", file=sys.stderr)
    files_before = catalog.load_table(identifier).inspect.files().num_rows
    before = measure(args.catalog_uri, identifier, args.repeat)
    plan_before = planning(args.catalog_uri, identifier, args.repeat)
    today = (START + timedelta(days=DAYS + 1)).date()  # every written day counts as finished
    report = maintain(catalog, identifier, today=today, retain=timedelta(0), orphan_age=timedelta(0))
    after = measure(args.catalog_uri, identifier, args.repeat)
    plan_after = planning(args.catalog_uri, identifier, args.repeat)
    print(
        f"{args.trades:,} trades, {len(SYMBOLS)} symbols, {DAYS} days, {args.appends} appends: "
        f"{files_before:,} data files before maintain, {report.data_files_after:,} after "
        f"(maintain took {report.partitions_compacted} partitions)"
    )
    print(f"{'query':<28} {'before: k2':>11} {'floor':>8} {'ratio':>6}   {'after: k2':>10} {'floor':>8} {'ratio':>6}")
    for name in QUERIES:
        (b_ours, b_floor), (a_ours, a_floor) = before[name], after[name]
        print(
            f"{name:<28} {b_ours:>10.3f}s {b_floor:>7.3f}s {b_ours / b_floor:>5.2f}x   "
            f"{a_ours:>9.3f}s {a_floor:>7.3f}s {a_ours / a_floor:>5.2f}x"
        )
    print(
        f"{'plan, once per k2 run':<28} {plan_before[0]:>10.3f}s {'':>8} {'':>6}   {plan_after[0]:>9.3f}s\n"
        f"{'iceberg_scan metadata/stmt':<28} {plan_before[1]:>10.3f}s {'':>8} {'':>6}   {plan_after[1]:>9.3f}s"
    )
    catalog.purge_table(identifier)
    catalog.drop_namespace(identifier.split(".")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
