"""Table layouts for the whole market, at a day's volume: what one-symbol queries read, before and after
the day is closed (not in CI).

    k2 stack up && python benchmarks/layouts.py                          # 20M trades, day vs day+bucket[16]
    python benchmarks/layouts.py --trades 60000000 --layouts day,day-bucket16,day-bucket8

benchmarks/whole_market.py runs the real pipeline for minutes: too little data for a query to feel the
layout. This writes one UTC day of --trades trades over --symbols symbols with Zipf-like rates (rank r
trades ~ 1/r) into one table per layout, the way the sink and the maintainer leave it: --appends appends
in arrival order (one commit round each: a file per partition touched), and the maintainer's cycle
(`maintain` with that day as today, size-tier merges) after every --maintain-every appends. Then, for
the busiest symbol and a symbol of middle rank, 1-minute candles of the day (median of --repeat, through
the `k2 query` engine: DuckDB with the REST catalog attached) and the data files DuckDB reads for them
(its EXPLAIN ANALYZE), against the same for the whole table; then the day is closed (maintain with the
next day as today: each partition compacted, sorted by symbol) and everything is measured again.
Printed as JSON.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
import numpy as np
import pyarrow as pa

LAYOUTS = {
    "day": [("trade_time", "day", "trade_day")],
    "day-bucket8": [("trade_time", "day", "trade_day"), ("symbol", "bucket[8]", "symbol_bucket")],
    "day-bucket16": [("trade_time", "day", "trade_day"), ("symbol", "bucket[16]", "symbol_bucket")],
    "day-bucket32": [("trade_time", "day", "trade_day"), ("symbol", "bucket[32]", "symbol_bucket")],
}
DAY = date(2026, 11, 2)
CANDLES = (
    "select time_bucket(interval '1 minute', trade_time) as m, arg_min(price, trade_time) o, max(price) h, "
    "min(price) l, arg_max(price, trade_time) c, sum(quantity) v, count(*) n from {t} "
    "where symbol = '{symbol}' and trade_time >= timestamptz '{day} 00:00:00+00' "
    "and trade_time < timestamptz '{day} 00:00:00+00' + interval 1 day group by 1 order by 1"
)
GROUP_BY = "select symbol, count(*) n, sum(quantity) v from {t} group by symbol"


def day_of_trades(count: int, symbols: list[str], appends: int, seed: int = 5) -> list[pa.Table]:
    """One day of trades in arrival order, cut into ``appends`` batches (each a sink commit round)."""
    from k2.connect.tables import load_table_specs

    schema = load_table_specs()["market_data.trades"].schema.as_arrow()
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(symbols) + 1)
    picks = rng.choice(len(symbols), size=count, p=weights / weights.sum())
    start_us = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp() * 1_000_000)
    times = np.sort(rng.integers(start_us, start_us + 86_400_000_000, size=count))
    ids = np.empty(count, dtype=np.int64)
    for index in range(len(symbols)):  # consecutive trade ids per symbol, as on Binance
        mine = picks == index
        ids[mine] = np.arange(1, int(mine.sum()) + 1) + 10_000_000 * index
    prices = rng.integers(10**8, 10**13, size=count)
    quantities = rng.integers(1, 10**10, size=count)
    names = np.array(symbols, dtype=object)[picks]
    batches = []
    for chunk in np.array_split(np.arange(count), appends):
        n = len(chunk)
        stamps = pa.array(times[chunk], pa.timestamp("us", tz="UTC"))
        decimal = schema.field("price").type
        columns = {
            "exchange": pa.array(["BINANCE"] * n),
            "symbol": pa.array(names[chunk].tolist()),
            "trade_id": pa.array(ids[chunk]),
            "price": _scaled(prices[chunk], decimal),
            "quantity": _scaled(quantities[chunk], decimal),
            "side": pa.array(np.where(rng.random(n) < 0.5, "BUY", "SELL").tolist()),
            "is_buyer_maker": pa.array((rng.random(n) < 0.5).tolist()),
            "trade_time": stamps,
            "event_time": stamps,
            "ingest_time": stamps,
            "vendor_data": pa.array([[("source", "bench")]] * n, pa.map_(pa.string(), pa.string())),
        }
        batches.append(pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema))
    return batches


def _scaled(units: np.ndarray, decimal: pa.DataType) -> pa.Array:
    """Non-negative integers of 10^-8 units as exact decimal(p, 8) values: the unscaled 128-bit integers
    written straight into Arrow's buffer (low 64 bits the units, high 64 bits zero)."""
    words = np.zeros((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    return pa.Array.from_buffers(decimal, len(units), [None, pa.py_buffer(words.tobytes())])


def files_read(lake: Any, sql: str) -> int:
    profile = lake.con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]
    return sum(int(n.replace(",", "")) for n in re.findall(r"Total Files Read:\s*([\d,]+)", profile))


def timed(run: Any, repeat: int) -> float:
    run()  # warm: metadata and OS caches, as an interactive user has them
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples), 3)


def measure(catalog_uri: str, identifier: str, probes: dict[str, str], repeat: int) -> dict[str, Any]:
    from k2.connect.maintenance import max_files_per_partition
    from k2.connect.tables import rest_catalog
    from k2.query.engine import Lake

    lake = Lake(catalog_uri)
    table = f"lake.{identifier}"
    table_files = rest_catalog(catalog_uri).load_table(identifier)
    result: dict[str, Any] = {
        "data_files": len(table_files.inspect.files()),
        "max_files_per_partition": max_files_per_partition(table_files),
    }
    for name, symbol in probes.items():
        sql = CANDLES.format(t=table, symbol=symbol, day=DAY.isoformat())
        result[f"candles_{name}_s"] = timed(lambda sql=sql: lake.con.execute(sql).fetchall(), repeat)
        result[f"candles_{name}_files_read"] = files_read(lake, sql)
    group = GROUP_BY.format(t=table)
    result["group_by_symbol_s"] = timed(lambda: lake.con.execute(group).fetchall(), repeat)
    result["group_by_symbol_files_read"] = files_read(lake, group)
    return result


@click.command()
@click.option("--trades", type=click.IntRange(min=1000), default=20_000_000, show_default=True)
@click.option("--symbols", "symbol_count", type=click.IntRange(min=3), default=1600, show_default=True)
@click.option("--appends", type=click.IntRange(min=1), default=600, show_default=True, help="Sink commit rounds.")
@click.option("--maintain-every", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--layouts", default="day,day-bucket16", show_default=True, help=f"Of: {', '.join(LAYOUTS)}.")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
def main(trades: int, symbol_count: int, appends: int, maintain_every: int, layouts: str, repeat: int) -> None:
    """One day of the whole market in each layout; one-symbol reads before and after the day closes."""
    from k2.connect.maintenance import maintain, policy_for
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog
    from k2.producer.sample import market_symbols
    from k2.stack.ports import default_home, stack_ports, urls

    names = [name.strip() for name in layouts.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYOUTS]
    if unknown:
        raise click.UsageError(f"unknown layouts {unknown}; known: {', '.join(LAYOUTS)}")
    catalog_uri = urls(stack_ports(default_home()))["catalog"]
    catalog = rest_catalog(catalog_uri)
    symbols = market_symbols(symbol_count)
    probes = {"busiest": symbols[0], "middle_rank": symbols[symbol_count // 2]}
    started = time.monotonic()
    batches = day_of_trades(trades, symbols, appends)
    print(f"generated {trades:,} trades in {time.monotonic() - started:.0f}s", file=sys.stderr)
    declared = load_table_specs()["market_data.trades"]
    policy = policy_for("market_data.trades")
    results: dict[str, Any] = {"trades": trades, "symbols": symbol_count, "appends": appends, "probes": probes}
    for layout in names:
        identifier = f"bench_layout_{layout.replace('-', '_')}_{uuid.uuid4().hex[:6]}.trades"
        apply_table(catalog, replace(declared, identifier=identifier, partition=LAYOUTS[layout]))
        written = merges_seconds = 0.0
        for index, batch in enumerate(batches, 1):
            begun = time.monotonic()
            catalog.load_table(identifier).append(batch)
            written += time.monotonic() - begun
            if index % maintain_every == 0:
                begun = time.monotonic()
                maintain(catalog, identifier, today=DAY, policy=policy, orphans=False)
                merges_seconds += time.monotonic() - begun
            if index % 100 == 0:
                print(f"{layout}: {index}/{appends} appends", file=sys.stderr)
        open_day = measure(catalog_uri, identifier, probes, repeat)
        begun = time.monotonic()
        closed = maintain(catalog, identifier, today=DAY + timedelta(days=1), policy=policy, orphans=False)
        close_seconds = time.monotonic() - begun
        results[layout] = {
            "append_seconds": round(written, 1),
            "maintain_seconds_during_day": round(merges_seconds, 1),
            "day_open": open_day,
            "close_seconds": round(close_seconds, 1),
            "partitions_compacted": closed.partitions_compacted,
            "day_closed": measure(catalog_uri, identifier, probes, repeat),
        }
        print(json.dumps({layout: results[layout]}), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
