"""Query speed on a streaming-shaped table, before and after `k2 tables maintain`, against floors.

A table of --trades trades over several symbols and days is written the way the sink writes it: many
small appends in time order (one file per partition touched per append). Four queries run through the
`k2 query` engine (DuckDB with the REST catalog attached: every statement loads the table's metadata
and plans its scan), and the same four run with DuckDB `read_parquet` over exactly the table's current
data files (the floor: no metadata work at all). DuckDB's read_parquet detects the hive-style paths
(`symbol=ETHUSDT/`) and takes `symbol` from the directory name, which Iceberg never promises (its
partition values live in the manifests; a row's value in the file): the files-only floor reads every
column from the files (`hive_partitioning = false`), as Iceberg readers do. Then `k2 tables maintain`
compacts, and all are measured again. Medians of --repeat runs each. The metadata line is what a
statement spends before it reads a row (`SELECT * ... LIMIT 0` through the engine).

The whole command is measured too: `k2 query` as a subprocess (Python start-up, CLI, extension loading,
ATTACH, query, CSV output) against a plain Python script that loads the same extensions, attaches the
same catalog and writes the same query's rows as CSV with DuckDB's own writer; wall time, median of
--command-repeat runs.

    python benchmarks/query_speed.py --trades 5000000 --appends 500
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
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


COMMANDS = ("count per symbol", "newest 100 of a symbol")  # a small result and a wide one
PLAIN_SCRIPT = """
import sys
from pathlib import Path

import duckdb
import duckdb_extension_avro, duckdb_extension_httpfs, duckdb_extension_iceberg

uri, sql = sys.argv[1:]
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
for module in (duckdb_extension_avro, duckdb_extension_httpfs, duckdb_extension_iceberg):
    con.execute(f"LOAD '{sorted(Path(module.__file__).parent.glob('extensions/*/*.duckdb_extension'))[-1]}'")
con.execute("SET TimeZone = 'UTC'")
con.execute(f"ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
con.sql(sql).write_csv("/dev/stdout")  # DuckDB's own CSV writer: no Python objects, no pyarrow
"""


def measure(catalog_uri: str, identifier: str, repeat: int) -> dict[str, tuple[float, float, float]]:
    import duckdb

    from k2.connect.tables import rest_catalog
    from k2.query.engine import Lake

    lake = Lake(catalog_uri)
    table = rest_catalog(catalog_uri).load_table(identifier)
    files = table.inspect.files()["file_path"].to_pylist()
    floor = duckdb.connect()
    floor.execute("SET TimeZone = 'UTC'")
    listing = ", ".join("'" + f.removeprefix("file:") + "'" for f in files)
    floor.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{listing}])")
    floor.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet([{listing}], hive_partitioning = false)")
    results = {}
    for name, sql in QUERIES.items():
        ours = median_time(lambda sql=sql: lake.query(sql.format(t=identifier)), repeat)
        base = median_time(lambda sql=sql: floor.execute(sql.format(t="t")).to_arrow_table(), repeat)
        files = median_time(lambda sql=sql: floor.execute(sql.format(t="f")).to_arrow_table(), repeat)
        results[name] = (ours, base, files)
    metadata = median_time(lambda: lake.query(f"select * from {identifier} limit 0"), repeat)
    results["metadata per statement"] = (metadata, 0.0, 0.0)
    return results


def commands(catalog_uri: str, identifier: str, repeat: int) -> dict[str, tuple[float, float]]:
    """Wall time of `k2 query` and of the plain script, each a fresh process, for each of COMMANDS."""

    def wall(argv: list[str]) -> float:
        def run() -> None:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        return median_time(run, repeat)

    results = {}
    for name in COMMANDS:
        sql = QUERIES[name]
        k2 = [sys.executable, "-m", "k2.cli", "--catalog-uri", catalog_uri, "query", sql.format(t=identifier)]
        k2 += ["--format", "csv"]
        plain = [sys.executable, "-c", PLAIN_SCRIPT, catalog_uri, sql.format(t=f"lake.{identifier}")]
        results[name] = (wall(k2), wall(plain))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--command-repeat", type=int, default=5)
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
    commands_before = commands(args.catalog_uri, identifier, args.command_repeat)
    today = (START + timedelta(days=DAYS + 1)).date()  # every written day counts as finished
    report = maintain(catalog, identifier, today=today, retain=timedelta(0), orphan_age=timedelta(0))
    after = measure(args.catalog_uri, identifier, args.repeat)
    commands_after = commands(args.catalog_uri, identifier, args.command_repeat)
    print(
        f"{args.trades:,} trades, {len(SYMBOLS)} symbols, {DAYS} days, {args.appends} appends: "
        f"{files_before:,} data files before maintain, {report.data_files_after:,} after "
        f"(maintain took {report.partitions_compacted} partitions)"
    )

    def against(ours: float, base: float) -> str:
        return f"{base:>7.3f}s {ours / base:>5.2f}x"

    print("per statement (medians): k2, then each floor with k2's ratio to it")
    heads = f"{'floor':>15} {'files-only':>15}"
    print(f"{'query':<28} {'before: k2':>11} {heads}   {'after: k2':>10} {heads}")
    for name in QUERIES:
        (b_ours, b_floor, b_files), (a_ours, a_floor, a_files) = before[name], after[name]
        print(
            f"{name:<28} {b_ours:>10.3f}s {against(b_ours, b_floor)} {against(b_ours, b_files)}   "
            f"{a_ours:>9.3f}s {against(a_ours, a_floor)} {against(a_ours, a_files)}"
        )
    b_meta, a_meta = before["metadata per statement"][0], after["metadata per statement"][0]
    print(f"{'metadata per statement':<28} {b_meta:>10.3f}s {'':>31}   {a_meta:>9.3f}s")
    print(f"whole command, median of {args.command_repeat}: `k2 query` / plain script (same extensions, ATTACH, query)")
    print(f"{'command':<28} {'before: k2':>11} {'script':>15}   {'after: k2':>10} {'script':>15}")
    for name in COMMANDS:
        (b_k2, b_plain), (a_k2, a_plain) = commands_before[name], commands_after[name]
        print(f"{name:<28} {b_k2:>10.3f}s {against(b_k2, b_plain)}   {a_k2:>9.3f}s {against(a_k2, a_plain)}")
    catalog.purge_table(identifier)
    catalog.drop_namespace(identifier.split(".")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
