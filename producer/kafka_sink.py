"""Writing trades (Avro, Confluent framing) and dead letters to Kafka, counting every delivery."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .avro import TradeEncoder
from .exceptions import ProducerError
from .model import Trade
from .stats import HISTOGRAM_SAMPLE, DeliveryStats

SAMPLE_MASK = HISTOGRAM_SAMPLE - 1  # the histograms observe trades whose running count is a multiple of it

log = logging.getLogger("k2.producer")

REASON_HEADER = "k2.error.reason"
TOPIC_CHECKS = 3  # looks at the broker's topics, a second apart, before calling a topic missing
OVERFLOW_LIMIT = 500_000  # records held beyond librdkafka's own queue before the live producer blocks


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """The producer settings K2 relies on: per-symbol order and no loss or duplicates on retry."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,  # implies acks=all and ordered, de-duplicated retries
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        # Ride out a broker restart: keep retrying for up to 5 minutes before a delivery fails.
        "delivery.timeout.ms": 300_000,
        "socket.connection.setup.timeout.ms": 10_000,
    }
    config.update(overrides)
    return config


def schema_id_for(registry_url: str, topic: str) -> int:
    """The registry id of the trades schema for ``topic``, registered the way `k2 schemas register` does.

    One path for both: a new subject gets the declared compatibility (BACKWARD) before its first version.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.contract import load_topics
    from k2.schemas.registry import register

    declared = load_topics()["trades"]
    spec = replace(declared, name=topic)  # --topic may name another topic: its own subject, same contract
    with SchemaRegistryClient({"url": registry_url}) as client:
        result = register(client, registry_url, spec)
    assert result.schema_id is not None  # registered or unchanged: both carry the id
    return result.schema_id


def check_topics_exist(bootstrap_servers: str, topics: list[str]) -> None:
    """Raise ProducerError naming each topic the broker does not have, before any frame is read."""
    from k2.schemas.exceptions import TopicError
    from k2.schemas.topics import admin_client, existing_partitions

    admin = admin_client(bootstrap_servers)
    for attempt in range(TOPIC_CHECKS):
        try:
            existing = existing_partitions(admin, bootstrap_servers)
        except TopicError as exc:
            raise ProducerError(str(exc)) from exc
        missing = [topic for topic in topics if topic not in existing]
        if not missing:
            return
        if attempt < TOPIC_CHECKS - 1:
            time.sleep(1.0)  # a topic created a moment ago may not be in the broker's metadata yet
    if missing:
        raise ProducerError(
            f"topic {', '.join(missing)} does not exist on {bootstrap_servers}: create the declared topics with "
            "`k2 topics apply`, or pass --topic / --dlq-topic naming existing ones"
        )


class KafkaSink:
    """Produces trades keyed by symbol, and raw bad frames to the dead-letter topic."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        dlq_topic: str,
        schema_id: int,
        block_when_full: bool = True,
        overflow_limit: int = OVERFLOW_LIMIT,
        metered: bool = False,
        **overrides: Any,
    ) -> None:
        self.topic = topic
        # librdkafka's queue full (Kafka slow or away): block until there is room (replay), or keep the
        # records here in order and return at once, so the event loop goes on answering Binance's pings
        # (live). Past overflow_limit records the live producer blocks too.
        self.block_when_full = block_when_full
        self.overflow_limit = overflow_limit
        self._overflow: deque[tuple[str, bytes, bytes | None, Any]] = deque()
        self.dlq_topic = dlq_topic
        self.stats = DeliveryStats()
        self.metered = metered  # histograms only while metrics are served
        self.encoder = TradeEncoder()
        self._prefix = b"\x00" + schema_id.to_bytes(4, "big")  # Confluent framing: magic byte + schema id
        self._keys: dict[str, bytes] = {}
        quiet = logging.getLogger("k2.producer.librdkafka")
        quiet.setLevel(logging.ERROR)  # librdkafka retries (e.g. while a broker restarts) are not errors
        self._producer = Producer(
            producer_config(bootstrap_servers, on_delivery=self._delivered, logger=quiet, **overrides)
        )

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        is_trade = msg.topic() == self.topic
        if err is None:
            if is_trade:
                acknowledged = self.stats.trades_acknowledged = self.stats.trades_acknowledged + 1
                if self.metered and not acknowledged & SAMPLE_MASK and (latency := msg.latency()) is not None:
                    self.stats.delivery_latency.observe(latency)
            else:
                self.stats.dead_letters_acknowledged += 1
            return
        if is_trade:
            self.stats.trade_failures += 1
        else:
            self.stats.dead_letter_failures += 1
        log.error("delivery to %s failed: %s", msg.topic(), err.str())

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: Any = None) -> None:
        if self._overflow or not self._try_produce(topic, value, key, headers):
            if self.block_when_full or len(self._overflow) >= self.overflow_limit:
                self._drain_overflow(block=True)
                while not self._try_produce(topic, value, key, headers):
                    self._producer.poll(0.05)  # serve delivery reports until there is room
            else:
                self._overflow.append((topic, value, key, headers))
        self._producer.poll(0)

    def _try_produce(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> bool:
        try:
            self._producer.produce(topic, value, key, headers=headers)
            return True
        except BufferError:
            return False
        except KafkaException as exc:
            raise ProducerError(f"producing to {topic} failed: {exc.args[0].str()}") from exc

    def _drain_overflow(self, block: bool) -> None:
        """Hand held records to librdkafka in order; stop at the first that does not fit unless ``block``."""
        while self._overflow:
            if self._try_produce(*self._overflow[0]):
                self._overflow.popleft()
            elif block:
                self._producer.poll(0.05)
            else:
                return

    @property
    def overflowed(self) -> int:
        """Records held here because librdkafka's queue was full."""
        return len(self._overflow)

    def send(self, trade: Trade) -> None:
        key = self._keys.get(trade.symbol)
        if key is None:
            key = self._keys[trade.symbol] = trade.symbol.encode()
        now_ms = int(time.time() * 1000)
        body = self.encoder.encode_trade(trade, now_ms)
        self._produce(self.topic, self._prefix + body, key)
        self.stats.trades_sent += 1
        if self.metered and not self.stats.trades_sent & SAMPLE_MASK:
            self.stats.event_lag.observe((now_ms - trade.trade_time) / 1000)

    def dead_letter(self, raw: bytes | str, reason: str, symbol: str | None, source: str) -> None:
        value = raw.encode() if isinstance(raw, str) else raw
        headers = [
            (REASON_HEADER, reason.encode()),
            ("k2.source", source.encode()),
            ("k2.ingest_time", str(int(time.time() * 1000)).encode()),
        ]
        self._produce(self.dlq_topic, value, symbol.encode() if symbol else None, headers)
        self.stats.dead_letters_sent += 1

    def poll(self, timeout: float = 0) -> None:
        self._drain_overflow(block=False)
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait (at most ``timeout`` seconds) for outstanding deliveries; return how many are unacknowledged."""
        deadline = time.monotonic() + timeout
        while self._overflow and time.monotonic() < deadline:
            self._drain_overflow(block=False)
            self._producer.poll(0.05)
        remaining = int(self._producer.flush(max(0.0, deadline - time.monotonic()))) + len(self._overflow)
        self.stats.unacknowledged = remaining
        return remaining
