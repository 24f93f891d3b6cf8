"""Producer throughput: replayed Binance frames -> Avro -> Kafka (acknowledged), three pipelines, one run.

* ours: ``k2 produce --replay`` (the same code: parse, validate, order per symbol, encode, produce);
* straightforward: ``json.loads`` -> dict with Decimal/datetime -> confluent-kafka ``AvroSerializer`` ->
  ``produce``, what a user would write first;
* floor: raw confluent-kafka ``produce`` of records pre-encoded before the clock starts.

Every pipeline runs in a fresh process pinned to one CPU core (the broker gets the other), writes to
its own new topic with the same producer settings, and is timed until Kafka acknowledged every record.
Peak RSS is that process's maximum resident set.

    python benchmarks/producer_throughput.py --trades 300000 --bootstrap-servers 127.0.0.1:9092 \\
        --registry-url http://127.0.0.1:8081/apis/ccompat/v7
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

CORE = 1 if (os.cpu_count() or 1) > 1 else 0


def _pin() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CORE})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _topic(bootstrap: str, prefix: str) -> str:
    """A new 6-partition topic, and its 1-partition dead-letter topic ``<name>.dlq`` (the producer checks both)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench.{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 6, 1), NewTopic(f"{name}.dlq", 1, 1)]).values():
        future.result(timeout=30)
    return name


def run_ours(frames: Path, bootstrap: str, registry: str, queue: Any, metrics_port: int = 0) -> None:
    _pin()
    from k2.producer.app import ProduceOptions, run_replay

    topic = _topic(bootstrap, "ours")
    options = ProduceOptions(
        bootstrap, registry, topic, topic + ".dlq", replay=frames, rest_url=None, metrics_port=metrics_port
    )
    scrapes = 0
    done = threading.Event()

    def scrape() -> None:  # as Prometheus would, but every second (the stack scrapes every 5 s)
        nonlocal scrapes
        while not done.wait(1.0):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
                scrapes += 1
            except OSError:
                pass

    scraper = threading.Thread(target=scrape, daemon=True)
    if metrics_port:
        scraper.start()
    started = time.perf_counter()
    summary = run_replay(options)
    elapsed = time.perf_counter() - started
    done.set()
    queue.put({"acked": summary.trades_acknowledged, "seconds": elapsed, "rss_mb": _peak_rss_mb(), "scrapes": scrapes})


def run_ours_metered(frames: Path, bootstrap: str, registry: str, queue: Any) -> None:
    """The same pipeline with --metrics-port: counters, both histograms, and a scrape every second."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    run_ours(frames, bootstrap, registry, queue, metrics_port=port)


def run_straightforward(frames: Path, bootstrap: str, registry: str, queue: Any) -> None:
    _pin()
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from k2.producer.kafka_sink import producer_config
    from k2.schemas.contract import SCHEMA_DIR

    topic = _topic(bootstrap, "plain")
    acked = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    client = SchemaRegistryClient({"url": registry})
    serializer = AvroSerializer(client, (SCHEMA_DIR / "trade.avsc").read_text())
    producer = Producer(producer_config(bootstrap, on_delivery=delivered))
    context = SerializationContext(topic, MessageField.VALUE)
    lines = frames.read_bytes().splitlines()
    started = time.perf_counter()
    for line in lines:
        data = json.loads(line)["data"]
        record = {
            "exchange": "BINANCE",
            "symbol": data["s"],
            "trade_id": data["t"],
            "price": Decimal(data["p"]),
            "quantity": Decimal(data["q"]),
            "side": "SELL" if data["m"] else "BUY",
            "is_buyer_maker": data["m"],
            "trade_time": datetime.fromtimestamp(data["T"] / 1000, UTC),
            "event_time": datetime.fromtimestamp(data["E"] / 1000, UTC),
            "ingest_time": datetime.now(UTC),
            "vendor_data": {"source": "replay"},
        }
        while True:
            try:
                producer.produce(topic, serializer(record, context), data["s"].encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    queue.put({"acked": acked, "seconds": elapsed, "rss_mb": _peak_rss_mb()})


def run_floor(frames: Path, bootstrap: str, registry: str, queue: Any) -> None:
    _pin()
    from confluent_kafka import Producer

    from k2.producer.avro import TradeEncoder
    from k2.producer.frames import parse_frame
    from k2.producer.kafka_sink import producer_config, schema_id_for
    from k2.producer.model import Trade

    topic = _topic(bootstrap, "floor")
    prefix = b"\x00" + schema_id_for(registry, topic).to_bytes(4, "big")
    encoder = TradeEncoder()
    records = []
    for line in frames.read_bytes().splitlines():
        trade = parse_frame(line, "replay")
        assert isinstance(trade, Trade)
        records.append((trade.symbol.encode(), prefix + encoder.encode_trade(trade, 0)))
    acked = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    producer = Producer(producer_config(bootstrap, on_delivery=delivered))
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    queue.put({"acked": acked, "seconds": elapsed, "rss_mb": _peak_rss_mb()})


def measure(target: Any, frames: Path, bootstrap: str, registry: str) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(frames, bootstrap, registry, queue))
    process.start()
    result: dict[str, float] = queue.get(timeout=900)
    process.join(60)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument(
        "--repeat", type=int, default=6, help="Runs of ours with metrics off and on, alternated; medians reported."
    )
    parser.add_argument("--bootstrap-servers", default=os.environ.get("K2_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument(
        "--registry-url", default=os.environ.get("K2_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
    )
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)

    from k2.producer.sample import generate_events, write_frames

    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames.jsonl"
        start = int(time.time() * 1000) - 86_400_000
        events = generate_events(["BTCUSDT", "ETHUSDT", "BNBUSDT"], args.trades / 1000, 1000, start, seed=3)
        count = write_frames(frames, events)
        results: dict[str, dict[str, Any]] = {}
        # Metrics off and on alternate, so drift on the machine or the broker falls on both alike.
        pipelines = [("ours", run_ours), ("ours, metrics on", run_ours_metered)] * args.repeat
        pipelines += [("straightforward", run_straightforward), ("floor", run_floor)]
        runs: dict[str, list[dict[str, Any]]] = {}
        for name, target in pipelines:
            result = measure(target, frames, args.bootstrap_servers, args.registry_url)
            if result["acked"] != count:
                print(f"{name}: only {result['acked']} of {count} acknowledged", file=sys.stderr)
                return 1
            result["trades_per_s"] = count / result["seconds"]
            runs.setdefault(name, []).append(result)
        for name, measured in runs.items():  # the median run by throughput
            results[name] = sorted(measured, key=lambda r: r["trades_per_s"])[len(measured) // 2]
            results[name]["runs"] = [round(r["trades_per_s"]) for r in measured]
    ours, plain, floor = (results[k]["trades_per_s"] for k in ("ours", "straightforward", "floor"))
    print(f"{count:,} replayed trades, each pipeline pinned to CPU core {CORE}, acks=all, idempotent, zstd")
    print(f"{'pipeline':<17} {'trades/s':>12} {'vs straightforward':>19} {'vs floor':>9} {'peak RSS MB':>12}")
    for name, result in results.items():
        rate = result["trades_per_s"]
        print(f"{name:<17} {rate:>12,.0f} {rate / plain:>18.2f}x {rate / floor:>8.2f}x {result['rss_mb']:>12.0f}")
    metered = results["ours, metrics on"]
    cost = 1 - metered["trades_per_s"] / ours
    print(f"runs, metrics off: {results['ours']['runs']}, on: {metered['runs']} trades/s")
    print(
        f"metrics on vs off (medians): {metered['trades_per_s'] / ours:.3f}x ({cost:+.1%} cost, "
        f"{metered['scrapes']} scrapes; "
        f"target: within 5%, {'met' if cost <= 0.05 else 'NOT met'})"
    )
    print(
        f"targets: ours >= 50,000/s ({'met' if ours >= 50_000 else 'NOT met'}), "
        f">= 1.5x straightforward ({'met' if ours >= 1.5 * plain else 'NOT met'}), "
        f"peak RSS < 200 MB ({'met' if results['ours']['rss_mb'] < 200 else 'NOT met'})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trades": count, "core": CORE, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
