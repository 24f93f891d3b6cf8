"""Landing: freshness (ingest -> visible to a query) and sustained throughput through Kafka Connect.

Against a running local stack (`k2 stack up`), with the shipped connector file under a unique name:

1. Freshness: trades stream at a steady rate through the Binance stand-in and `k2 produce` while a
   DuckDB poller (the `k2 query` engine) looks at the table every 0.25 s; each trade's freshness is
   the poll time it first became visible minus its ingest_time. Reported as p50 / p95 / max at the
   connector's default commit interval (connect/variables.toml).
2. Throughput: a backlog of trades is written to a fresh topic first, then a fresh connector is
   deployed and timed until every trade is queryable: trades/s through Connect into Iceberg.

    python benchmarks/landing_freshness.py --rate 200 --seconds 30 --backlog 200000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def k2(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "k2.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"k2 {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def make_sink(tmp: Path, bootstrap: str, catalog_uri: str, commit_interval_ms: str | None) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2.connect.tables import apply_table, load_table_specs, rest_catalog

    suffix = uuid.uuid4().hex[:8]
    topic, control, table = f"bench.trades.{suffix}", f"bench.control.{suffix}", f"bench_{suffix}.trades"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new_topics = [NewTopic(topic, 6, 1), NewTopic(f"{topic}.dlq", 1, 1), NewTopic(control, 1, 1)]
    for future in admin.create_topics(new_topics).values():
        future.result(timeout=30)
    apply_table(rest_catalog(catalog_uri), replace(load_table_specs()["market_data.trades"], identifier=table))
    data = json.loads((ROOT / "connect" / "k2-iceberg-trades.json").read_text())
    data["name"] = f"bench-sink-{suffix}"
    path = tmp / f"{data['name']}.json"
    path.write_text(json.dumps(data))
    sets = ["--set", f"TRADES_TOPIC={topic}", "--set", f"ICEBERG_TABLE={table}", "--set", f"CONTROL_TOPIC={control}"]
    if commit_interval_ms:
        sets += ["--set", f"COMMIT_INTERVAL_MS={commit_interval_ms}"]
    return {"topic": topic, "table": table, "file": str(path), "name": data["name"], "sets": json.dumps(sets)}


def drop_table(catalog_uri: str, table: str) -> None:
    """Benchmark tables are scratch: purge them so `trades` and the warehouse stay the user's."""
    from k2.connect.tables import rest_catalog

    catalog = rest_catalog(catalog_uri)
    catalog.purge_table(table)
    catalog.drop_namespace(table.split(".")[0])


class Poller:
    """Watches a table with the query engine and notes when each trade first became visible."""

    def __init__(self, catalog_uri: str, table: str) -> None:
        from k2.query.engine import Lake

        self.lake = Lake(catalog_uri)  # every statement reads the table's newest snapshot
        self.table = table
        self.visible_at: dict[tuple[str, int], float] = {}
        self.ingest_ms: dict[tuple[str, int], int] = {}

    def poll(self) -> int:
        now = time.time()
        rows = self.lake.query(
            f"select symbol, trade_id, epoch_ms(ingest_time) as ingest_ms from {self.table}"
        ).to_pylist()
        for row in rows:
            key = (row["symbol"], row["trade_id"])
            if key not in self.visible_at:
                self.visible_at[key] = now
                self.ingest_ms[key] = row["ingest_ms"]
        return len(self.visible_at)


def freshness(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from k2.producer.binance_standin.server import BinanceStandIn
    from k2.producer.sample import generate_events

    sink = make_sink(tmp, args.bootstrap_servers, args.catalog_uri, None)
    k2("deploy-connectors", sink["file"], *json.loads(sink["sets"]))
    count = int(args.rate * args.seconds)
    warmup = int(args.rate * 5)
    events = list(
        generate_events(["BTCUSDT", "ETHUSDT", "BNBUSDT"], args.seconds + 5, args.rate, int(time.time() * 1000))
    )
    poller = Poller(args.catalog_uri, sink["table"])
    with BinanceStandIn(events[:warmup], rate=args.rate) as server:
        # Warm-up: the sink's first commit round after deploy is not what a running pipeline sees.
        produce_args = ["--ws-url", server.ws_url, "--rest-url", server.rest_url, "--topic", sink["topic"]]
        produce_args += ["--dlq-topic", sink["topic"] + ".dlq"]
        k2("produce", "--symbols", "BTCUSDT,ETHUSDT,BNBUSDT", *produce_args, "--max-messages", str(warmup))
        while poller.poll() < warmup:
            time.sleep(0.25)
    poller.visible_at.clear()
    poller.ingest_ms.clear()
    events = events[warmup:]
    count = len(events)
    with BinanceStandIn(events, rate=args.rate) as server:
        producer = threading.Thread(
            target=k2,
            args=(
                "produce",
                "--symbols",
                "BTCUSDT,ETHUSDT,BNBUSDT",
                "--ws-url",
                server.ws_url,
                "--rest-url",
                server.rest_url,
                "--topic",
                sink["topic"],
                "--dlq-topic",
                sink["topic"] + ".dlq",
                "--max-messages",
                str(count),
            ),
        )
        producer.start()
        deadline = time.monotonic() + args.seconds + 120
        while poller.poll() < count + warmup and time.monotonic() < deadline:
            time.sleep(0.25)
        producer.join()
    k2("connectors", "delete", sink["name"], "--yes")
    fresh_keys = {(str(e["s"]), int(str(e["t"]))) for e in events}
    lags = sorted(poller.visible_at[k] - poller.ingest_ms[k] / 1000 for k in poller.visible_at if k in fresh_keys)
    return {
        "trades": len(lags),
        "expected": count,
        "p50_s": statistics.median(lags),
        "p95_s": lags[int(0.95 * (len(lags) - 1))],
        "max_s": lags[-1],
    }


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from k2.producer.sample import generate_events, write_frames

    sink = make_sink(tmp, args.bootstrap_servers, args.catalog_uri, None)
    frames = tmp / "backlog.jsonl"
    start = int(time.time() * 1000) - 3_600_000
    write_frames(frames, generate_events(["BTCUSDT", "ETHUSDT", "BNBUSDT"], args.backlog / 1000, 1000, start, seed=5))
    k2("produce", "--replay", str(frames), "--topic", sink["topic"], "--dlq-topic", sink["topic"] + ".dlq")
    poller = Poller(args.catalog_uri, sink["table"])
    poller.lake.con.execute("SET threads = 1")  # leave the other core to Connect
    started = time.monotonic()
    k2("deploy-connectors", sink["file"], *json.loads(sink["sets"]))
    deadline = started + 900
    while poller.poll() < args.backlog and time.monotonic() < deadline:
        time.sleep(1)
    elapsed = time.monotonic() - started
    k2("connectors", "delete", sink["name"], "--yes")
    drop_table(args.catalog_uri, sink["table"])
    landed = len(poller.visible_at)
    return {"trades": landed, "expected": args.backlog, "seconds": elapsed, "trades_per_s": landed / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="trades/s for the freshness run")
    parser.add_argument("--seconds", type=float, default=30, help="length of the freshness run")
    parser.add_argument("--backlog", type=int, default=200_000, help="trades for the throughput run")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("K2_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--catalog-uri", default=os.environ.get("K2_CATALOG_URI", "http://127.0.0.1:8181"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = freshness(args, Path(tmp))
        speed = throughput(args, Path(tmp))
    print(
        f"freshness at the default commit interval, {fresh['trades']:,}/{fresh['expected']:,} trades at "
        f"{args.rate:g}/s: p50 {fresh['p50_s']:.1f}s, p95 {fresh['p95_s']:.1f}s, max {fresh['max_s']:.1f}s "
        f"(target p95 < 15 s: {'met' if fresh['p95_s'] < 15 else 'NOT met'})"
    )
    print(
        f"throughput through Connect into Iceberg: {speed['trades']:,}/{speed['expected']:,} trades in "
        f"{speed['seconds']:.1f}s = {speed['trades_per_s']:,.0f} trades/s (backlog, from deploy to all visible)"
    )
    return 0 if fresh["trades"] == fresh["expected"] and speed["trades"] == speed["expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
