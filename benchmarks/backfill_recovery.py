"""Backfill recovery under Binance's REST weight budget: how fast a restarted producer catches up.

Binance allows 6,000 request weight a minute per IP and historicalTrades weighs 25, so REST can
return at most 4 pages of 1,000 trades a second: a ceiling of 4,000 trades/s. The producer spends 90%
of the budget (WeightBudget), so 3,600 trades/s is its own ceiling.

The run, on the local stack and the Binance stand-in (real-time limits, no time scaling):
1. the first trade of each of --symbols symbols is produced to a new topic (what a producer that
   stopped right after them would have left);
2. the stand-in plays --per-symbol trades per symbol, then keeps trading (its tape loops);
3. `k2 produce` starts again on that topic, reads each symbol's last id back from Kafka, and backfills
   everything since over REST while the live trades wait behind the gaps.
Recovery rate = trades that arrived through REST / time between the first and the last of them
(their ingest_time in Kafka); requests/s = REST requests made / the same time.

    python benchmarks/backfill_recovery.py --symbols 50 --per-symbol 4000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CEILING_REQUESTS_PER_S = 6000 / 25 / 60


def _k2(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "k2.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"k2 {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done


def _ingest_times(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """(source, ingest_time) of every record in the topic, decoded with the registry's schema."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry_url = os.environ.get("K2_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    with SchemaRegistryClient({"url": registry_url}) as registry:
        decode = AvroDeserializer(registry)
        out: list[tuple[str, int]] = []
        seen = dict.fromkeys(partitions, 0)
        while any(seen[p] < ends[p] for p in partitions):
            message = consumer.poll(5)
            if message is None or message.error():
                continue
            seen[message.partition() or 0] = (message.offset() or 0) + 1
            value: Any = decode(message.value(), SerializationContext(topic, MessageField.VALUE))
            ingest = value["ingest_time"]
            out.append((value["vendor_data"].get("source", ""), int(ingest.timestamp() * 1000)))
    consumer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--per-symbol", type=int, default=4000, help="trades per symbol to recover")
    parser.add_argument("--live-rate", type=float, default=2000, help="stand-in trades/s (the tape loops)")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("K2_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args(argv)

    from confluent_kafka.admin import AdminClient, NewTopic

    from k2.producer.binance_standin.server import BinanceStandIn
    from k2.producer.sample import generate_events, write_frames

    symbols = [f"K2B{index:03d}USDT" for index in range(args.symbols)]
    total = args.symbols * args.per_symbol
    seconds = total / args.live_rate
    events = list(generate_events(symbols, seconds, args.live_rate, int(time.time() * 1000) - 3_600_000, seed=5))
    first: dict[str, dict[str, object]] = {}
    for event in events:
        first.setdefault(str(event["s"]), event)
    topic = f"bench.backfill.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 6, 1), NewTopic(f"{topic}.dlq", 1, 1)]).values():
        future.result(timeout=30)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        seed_frames = Path(tmp) / "first.jsonl"
        write_frames(seed_frames, iter(first.values()))
        _k2(env, "produce", "--replay", str(seed_frames), "--topic", topic, "--dlq-topic", f"{topic}.dlq")

    with BinanceStandIn(events, rate=args.live_rate, loop_tape=True) as server:
        from websockets.sync.client import connect

        # Start the market without the producer: a client on a stream nobody trades, so it reads nothing.
        with connect(f"{server.ws_url}/stream?streams=nothing@trade", ping_interval=None):
            while server.position < len(events):
                time.sleep(0.5)
        started = time.monotonic()
        done = _k2(
            env, "produce", "--symbols", ",".join(symbols), "--ws-url", server.ws_url, "--rest-url", server.rest_url,
            "--topic", topic, "--dlq-topic", f"{topic}.dlq", "--duration", str(max(60.0, total / 3000 + 30)),
            "--gap-timeout", "120", "--format", "json",
        )  # fmt: skip
        wall = time.monotonic() - started
        throttled = (server.rest_429, server.rest_418)
    summary = json.loads(done.stdout)
    rest = sorted(ms for source, ms in _ingest_times(args.bootstrap_servers, topic) if source == "rest")
    span = (rest[-1] - rest[0]) / 1000 if len(rest) > 1 else float("nan")
    rate = len(rest) / span
    requests_per_s = summary["backfill_requests"] / span
    print(f"{args.symbols} symbols x {args.per_symbol:,} trades to recover; live tape {args.live_rate:,.0f}/s")
    print(f"recovered through REST   {len(rest):,} trades in {span:.1f} s = {rate:,.0f} trades/s")
    print(f"REST requests            {summary['backfill_requests']:,} = {requests_per_s:.2f}/s "
          f"(ceiling {CEILING_REQUESTS_PER_S:.1f}/s: {requests_per_s / CEILING_REQUESTS_PER_S:.0%} of it)")  # fmt: skip
    print(f"vs the 4,000 trades/s ceiling: {rate / 4000:.0%}; 429/418 from the stand-in: {throttled}")
    print(f"unrecovered gaps {summary['gaps_unrecovered']}, resumed symbols {summary['resumed_symbols']}, "
          f"producer wall time {wall:.0f} s")  # fmt: skip
    return 0 if summary["gaps_unrecovered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
