"""Helpers shared by several integration test modules, so that no test module imports from another.

They used to live in the test module that first needed them (test_producer, test_landing, test_query) and
were imported from there; a test module importing another one drags that module's tests, fixtures and
imports along. Here they are in one place:

- producing: the symbols, stand-in events and bad frames, topics, `k2 produce` arguments and processes,
  the summary `k2 produce --format json` prints, and reading a topic back to check it exactly;
- landing: copies of the shipped Iceberg sink connector, deploying them, and reading the landed table back;
- querying: trades written with pyiceberg, and candles computed independently in Python decimals.

Helpers only one module uses stay in that module.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from k2.connect.tables import TableSpec, load_table_specs
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.sample import generate_events

from .conftest import LocalStack, unique

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR_FILE = ROOT / "connect" / "k2-iceberg-trades.json"

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
INTERVAL_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


# --- producing (from test_producer) ---------------------------------------------------------------------


@dataclass
class Landed:
    key: str
    value: dict[str, Any]
    partition: int
    offset: int
    headers: dict[str, bytes]


def make_events(count: int, seed: int = 11) -> list[dict[str, Any]]:
    return list(
        generate_events(SYMBOLS, seconds=count / 50, trades_per_second=50, start_ms=1_790_000_000_000, seed=seed)
    )


def round_robin(symbols: list[str], rounds: int, step_ms: int = 40) -> list[dict[str, Any]]:
    """``rounds`` trades of every symbol, round by round and symbols in order: every symbol trades in
    every round, whatever its name or position (ids and prices differ per symbol and round)."""
    events = []
    for number in range(rounds):
        for index, symbol in enumerate(symbols):
            when = 1_790_000_000_000 + number * step_ms + index
            events.append(
                {
                    "e": "trade",
                    "E": when + 1,
                    "s": symbol,
                    "t": 10_000 * (index + 1) + number,
                    "p": f"{10 + index}.{number:04d}0000",
                    "q": "1.25000000",
                    "T": when,
                    "m": number % 3 == 0,
                    "M": True,
                }
            )
    return events


def make_topics(stack: LocalStack) -> tuple[str, str]:
    topic, dlq = unique("trades"), unique("trades_dlq")
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq, 1, 1)]).values():
        future.result(timeout=30)
    return topic, dlq


def consume(stack: LocalStack, topic: str, avro: bool = True, idle_s: float = 5.0) -> list[Landed]:
    """Every record of the topic, each partition in offset order."""
    registry = SchemaRegistryClient({"url": stack.registry_url})
    deserializer = AvroDeserializer(registry) if avro else None
    consumer = Consumer(
        {
            "bootstrap.servers": stack.bootstrap_servers,
            "group.id": unique("verify"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    landed: list[Landed] = []
    done = {p for p, end in ends.items() if end == 0}
    last_message = time.monotonic()
    try:
        while len(done) < len(partitions) and time.monotonic() - last_message < idle_s:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            last_message = time.monotonic()
            value: Any = message.value()
            if deserializer:
                value = deserializer(value, SerializationContext(topic, MessageField.VALUE))
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            headers: dict[str, bytes] = {}
            raw_headers: list[Any] = list(message.headers() or [])
            for name, header_value in raw_headers:
                headers[str(name)] = header_value if isinstance(header_value, bytes) else str(header_value).encode()
            key = message.key()
            landed.append(
                Landed(
                    key=key.decode() if isinstance(key, bytes) else str(key or ""),
                    value=value,
                    partition=partition,
                    offset=offset,
                    headers=headers,
                )
            )
            if offset + 1 >= ends[partition]:
                done.add(partition)
    finally:
        consumer.close()
        registry.close()
    return landed


def produce_cmd(server: BinanceStandIn, topic: str, dlq: str, *extra: str) -> list[str]:
    return [
        "produce",
        "--symbols",
        ",".join(SYMBOLS),
        "--ws-url",
        server.ws_url,
        "--rest-url",
        server.rest_url,
        "--topic",
        topic,
        "--dlq-topic",
        dlq,
        "--format",
        "json",
        *extra,
    ]


def produce_summary(stdout: str) -> dict[str, Any]:
    """The run summary `k2 produce --format json` printed: the shared output's JSON array, of exactly one object."""
    rows = json.loads(stdout)
    assert isinstance(rows, list) and len(rows) == 1, f"expected a JSON array of one summary, got {stdout!r}"
    summary: dict[str, Any] = rows[0]
    return summary


def live_options(stack: LocalStack, server: BinanceStandIn, topic: str, dlq: str, **extra: Any) -> Any:
    """ProduceOptions for run_live in the test process (what `k2 produce` builds), on the stand-in."""
    from k2.producer.app import ProduceOptions

    return ProduceOptions(
        bootstrap_servers=stack.bootstrap_servers,
        registry_url=stack.registry_url,
        topic=topic,
        dlq_topic=dlq,
        symbols=SYMBOLS,
        ws_url=server.ws_url,
        rest_url=server.rest_url,
        **extra,
    )


def assert_exactly(events: list[dict[str, Any]], landed: list[Landed]) -> None:
    """The topic holds each event exactly once, in trade-id order per symbol, with exact values."""
    by_key = {(e["s"], e["t"]): e for e in events}
    seen = [(r.value["symbol"], r.value["trade_id"]) for r in landed]
    assert len(seen) == len(set(seen)), "duplicates in the topic"
    assert set(seen) == set(by_key), (
        f"missing {len(set(by_key) - set(seen))}, unexpected {len(set(seen) - set(by_key))}"
    )
    last: dict[str, int] = {}
    for record in sorted(landed, key=lambda r: (r.partition, r.offset)):
        symbol, trade_id = record.value["symbol"], record.value["trade_id"]
        assert record.key == symbol
        assert trade_id > last.get(symbol, -1), f"{symbol} {trade_id} out of order"
        last[symbol] = trade_id
        event = by_key[(symbol, trade_id)]
        assert record.value["price"] == Decimal(event["p"])
        assert record.value["quantity"] == Decimal(event["q"])
        assert record.value["trade_time"] == datetime.fromtimestamp(event["T"] / 1000, UTC)
        assert record.value["side"] == ("SELL" if event["m"] else "BUY")
        assert record.value["is_buyer_maker"] is event["m"]
        expected_event_time = event["E"] if record.value["vendor_data"]["source"] == "ws" else event["T"]
        assert record.value["event_time"] == datetime.fromtimestamp(expected_event_time / 1000, UTC)


BAD_FRAMES = {
    "invalid JSON": '{"stream": "btcusdt@trade", "data": {',
    "trade_id (t) is missing or not a non-negative integer": json.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "p": "1.0", "q": "1.0", "T": 1, "m": True},
        }
    ),
    "price 'twelve' is not a positive decimal": json.dumps(
        {
            "stream": "ethusdt@trade",
            "data": {"e": "trade", "E": 1, "s": "ETHUSDT", "t": 1, "p": "twelve", "q": "1.0", "T": 1, "m": True},
        }
    ),
    "price '-3.5' is not a positive decimal": json.dumps(
        {
            "stream": "bnbusdt@trade",
            "data": {"e": "trade", "E": 1, "s": "BNBUSDT", "t": 1, "p": "-3.5", "q": "1.0", "T": 1, "m": False},
        }
    ),
    "quantity '0.00000000' is not positive": json.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "2.0", "q": "0.00000000", "T": 1, "m": False},
        }
    ),
}


def start_producer(stack: LocalStack, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "k2.cli", *args],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- landing (from test_landing) ------------------------------------------------------------------------


def connector_copy(tmp_path: Path) -> Path:
    """The shipped connector file under a unique connector name (file name = connector name)."""
    name = unique("k2-it-sink").replace("_", "-")
    data = json.loads(CONNECTOR_FILE.read_text())
    data["name"] = name
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def table_spec(identifier: str) -> TableSpec:
    return replace(load_table_specs()["market_data.trades"], identifier=identifier)


def deploy(
    stack: LocalStack, path: Path, topic: str, table: str, *extra: str, control: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`k2 deploy-connectors` of a connector copy; a new control topic unless one is given."""
    if control is None:
        control = unique("k2_control")
        admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
        admin.create_topics([NewTopic(control, 1, 1)])[control].result(timeout=30)
    return stack.k2(
        "deploy-connectors",
        str(path),
        "--set",
        f"TRADES_TOPIC={topic}",
        "--set",
        f"ICEBERG_TABLE={table}",
        "--set",
        f"CONTROL_TOPIC={control}",
        "--set",
        "COMMIT_INTERVAL_MS=3000",
        "--format",
        "json",
        *extra,
    )


def query(stack: LocalStack, sql: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "k2.cli", "query", sql, "--format", "json"],
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def wait_for_rows(
    stack: LocalStack, table: str, expected: int, timeout: float = 180, env: dict[str, str] | None = None
) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = int(query(stack, f"select count(*) as n from {table}", env)[0]["n"])
        if count >= expected:
            # One more commit interval: anything beyond `expected` (a duplicate) would show up too.
            time.sleep(4)
            return int(query(stack, f"select count(*) as n from {table}", env)[0]["n"])
        time.sleep(2)
    return count


def assert_table_holds_exactly(
    stack: LocalStack, table: str, events: list[dict[str, Any]], env: dict[str, str] | None = None
) -> None:
    rows = query(stack, f"select symbol, trade_id, price, quantity, trade_time, side from {table}", env)
    keys = [(r["symbol"], r["trade_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(events), (
        f"{len(keys)} rows, {len(set(keys))} distinct, {len(events)} sent"
    )
    by_key = {(e["s"], e["t"]): e for e in events}
    assert set(keys) == set(by_key)
    for row in rows:
        event = by_key[(row["symbol"], row["trade_id"])]
        assert Decimal(row["price"]) == Decimal(event["p"])
        assert Decimal(row["quantity"]) == Decimal(event["q"])
        assert row["trade_time"] == datetime.fromtimestamp(event["T"] / 1000, UTC).isoformat().replace("+00:00", "Z")
        assert row["side"] == ("SELL" if event["m"] else "BUY")


def pid_of(stack: LocalStack, name: str) -> int:
    rows = json.loads(stack.k2("stack", "status", "--format", "json").stdout)
    return int(next(r["pid"] for r in rows if r["service"] == name))


# --- querying (from test_query) -------------------------------------------------------------------------


def make_trades(count: int, seed: int) -> list[dict[str, Any]]:
    """Trades over two days; several share a millisecond so open/close need the trade_id tie-break."""
    rng = random.Random(seed)
    trades = []
    ids = {s: 10_000 * (i + 1) for i, s in enumerate(SYMBOLS)}
    for _ in range(count):
        symbol = rng.choice(SYMBOLS)
        ids[symbol] += 1
        moment = DAY0 + timedelta(milliseconds=rng.randrange(0, 2 * 86_400_000, 250))
        price = Decimal(rng.randrange(1, 10**13)) / Decimal(10**8)  # up to 99,999.99999999
        quantity = Decimal(rng.randrange(1, 10**11)) / Decimal(10**8)
        trades.append(
            {
                "exchange": "BINANCE",
                "symbol": symbol,
                "trade_id": ids[symbol],
                "price": price,
                "quantity": quantity,
                "side": "BUY",
                "is_buyer_maker": False,
                "trade_time": moment,
                "event_time": moment,
                "ingest_time": moment,
                "vendor_data": {"source": "test"},
            }
        )
    return trades


def arrow(trades: list[dict[str, Any]], table: Any) -> pa.Table:
    schema = table.schema().as_arrow()
    rows = [dict(t, vendor_data=list(t["vendor_data"].items())) for t in trades]
    return pa.Table.from_pylist(rows, schema=schema)


def expected_candles(trades: list[dict[str, Any]], symbol: str, interval: str) -> list[dict[str, Any]]:
    """Candles computed independently, in Python's decimal arithmetic."""
    width = INTERVAL_SECONDS[interval]
    buckets: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for trade in trades:
        if trade["symbol"] == symbol:
            buckets[int(trade["trade_time"].timestamp()) // width * width].append(trade)
    rows = []
    for start in sorted(buckets):
        group = sorted(buckets[start], key=lambda t: (t["trade_time"], t["trade_id"]))
        volume = sum((t["quantity"] for t in group), Decimal(0))
        quote = sum((t["price"] * t["quantity"] for t in group), Decimal(0))
        with localcontext() as context:
            context.prec = 80
            vwap = (quote / volume).quantize(Decimal("0.00000001"), rounding=ROUND_HALF_EVEN)
        rows.append(
            {
                "symbol": symbol,
                "interval_start": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"),
                "open": group[0]["price"],
                "high": max(t["price"] for t in group),
                "low": min(t["price"] for t in group),
                "close": group[-1]["price"],
                "volume": volume,
                "quote_volume": quote,
                "vwap": vwap,
                "trade_count": len(group),
            }
        )
    out: list[dict[str, Any]] = [{k: (v if isinstance(v, int) else str(v)) for k, v in row.items()} for row in rows]
    return out


def normalised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decimal strings compared as numbers (DuckDB prints scale 8/16; Python keeps its own exponent)."""
    out = []
    for row in rows:
        item = {}
        for key, value in row.items():
            item[key] = Decimal(value) if key not in ("symbol", "interval_start", "trade_count") else value
        out.append(item)
    return out


def free_port() -> int:
    """A loopback port nothing listens on now (for a metrics server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
