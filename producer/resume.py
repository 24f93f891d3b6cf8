"""Where each symbol stopped: the last trade id the trades topic holds, read backwards from its end.

A restarted producer resumes every symbol after its last trade in Kafka, so trades made while it was
down open a gap at the first live trade and are backfilled over REST like any other gap. Only the
key (the symbol: the producer keys by symbol) and the first fields of the Avro body are decoded:
Confluent framing (magic byte 0, 4-byte schema id), then ``exchange`` (string), ``symbol`` (string)
and ``trade_id`` (long), as producer/avro.py writes them.

Each partition is read from its end in chunks that grow backwards (a few thousand records first: a
restart usually finds every symbol there), until every wanted symbol that lives there was found, the
partition's beginning is reached, or ``budget`` records were read from it. A symbol lives in the
partition librdkafka's default partitioner gives its key (``consistent_random``: CRC32 of the key
modulo the partition count, librdkafka CONFIGURATION.md), which the producer uses; so a symbol new to
the topic costs one partition's budget, not every partition's. A symbol met in another partition is
taken too. A symbol not found starts from its first live trade, as a new symbol does. The consumer is
assigned partitions and seeks; it joins no group and commits nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from .defaults import RESUME_BUDGET
from .exceptions import ProducerError

log = logging.getLogger("k2.producer")
_QUIET = logging.getLogger("k2.producer.librdkafka.resume")
_QUIET.setLevel(logging.CRITICAL)

FIRST_CHUNK = 2_000
MAX_CHUNK = 50_000


@dataclass
class _Partition:
    number: int
    lives_here: set[str]  # wanted symbols whose key the producer's partitioner sends here
    floor: int  # lowest offset the budget lets us read
    high: int  # the partition's end when the scan started
    end: int  # exclusive end of the chunk being read
    chunk: int
    start: int = 0
    latest: dict[str, int] = field(default_factory=dict)  # in the chunk being read
    found: set[str] = field(default_factory=set)  # in this partition, from a later chunk
    read: int = 0

    def next_chunk(self) -> bool:
        """Move to the chunk before the current one; False once the floor is reached."""
        if self.end <= self.floor:
            return False
        self.start = max(self.floor, self.end - self.chunk)
        self.latest = {}
        return True


def read_long(data: bytes, position: int) -> tuple[int, int]:
    """Avro long (zig-zag, base-128 varint) at ``position`` -> (value, next position)."""
    shift = 0
    zigzag = 0
    while True:
        byte = data[position]
        position += 1
        zigzag |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (zigzag >> 1) ^ -(zigzag & 1), position
        shift += 7


def trade_id_of(value: bytes) -> int | None:
    """The trade_id of a Confluent-framed trade record, or None if the value is not one."""
    if len(value) < 8 or value[0] != 0:
        return None
    try:
        position = 5  # magic byte + schema id
        for _ in range(2):  # exchange, then symbol: skip each string
            length, position = read_long(value, position)
            position += length
        trade_id, _ = read_long(value, position)
    except IndexError:
        return None
    return trade_id


def last_trade_ids(
    bootstrap_servers: str,
    topic: str,
    symbols: list[str],
    budget: int = RESUME_BUDGET,
    timeout: float = 120.0,
    first_chunk: int = FIRST_CHUNK,
) -> dict[str, int]:
    """The last trade id in ``topic`` of each of ``symbols`` that is there, read backwards from the end.

    Kafka unreachable for a while is waited for, up to ``timeout`` seconds in all; then ProducerError.
    """
    started = time.monotonic()
    deadline = started + timeout
    wanted = {symbol.encode(): symbol for symbol in symbols}
    found: dict[str, int] = {}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"k2-resume-{uuid.uuid4().hex}",  # required by the client; never joined or committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # Only what exists is read: a fetch at a partition's end must not wait (500 ms by default) for
            # records that are not coming, which after each seek would delay the next chunk.
            "fetch.wait.max.ms": 20,
            "auto.offset.reset": "earliest",  # a chunk start removed by retention meanwhile: read what is left
            "logger": _QUIET,  # connection retries are librdkafka's; what fails for good is raised
        }
    )
    records = 0
    try:
        partitions = _open_partitions(consumer, topic, symbols, budget, first_chunk, deadline)
        records = _scan(consumer, topic, partitions, wanted, found, deadline)
    finally:
        consumer.close()
    missing = [s for s in symbols if s not in found]
    log.info(
        "resume: last trade id of %d of %d symbols found in %s in %.2fs (%d records read)%s",
        len(found),
        len(symbols),
        topic,
        time.monotonic() - started,
        records,
        f"; not found, so starting at their first live trade: {_listed(missing)}" if missing else "",
    )
    return found


def partition_of(symbol: str, partitions: int) -> int:
    """The partition librdkafka's default ``consistent_random`` partitioner gives a symbol's key."""
    return zlib.crc32(symbol.encode()) % partitions


def _open_partitions(
    consumer: Consumer, topic: str, symbols: list[str], budget: int, first_chunk: int, deadline: float
) -> dict[int, _Partition]:
    """Each partition to read, with its bounds; waits for Kafka (a broker restarting) until ``deadline``."""
    while True:
        wait = max(1.0, min(10.0, deadline - time.monotonic()))
        try:
            metadata = consumer.list_topics(topic, timeout=wait).topics.get(topic)
            if metadata is None or metadata.error is not None:
                raise KafkaException(metadata.error if metadata else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
            count = len(metadata.partitions)
            partitions: dict[int, _Partition] = {}
            for number in sorted(metadata.partitions):
                lives_here = {s for s in symbols if partition_of(s, count) == number}
                if not lives_here:
                    continue
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=wait)
                part = _Partition(number, lives_here, max(low, high - budget), high, high, first_chunk)
                if part.next_chunk():
                    partitions[number] = part
            return partitions
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            if time.monotonic() + 1 > deadline:
                raise ProducerError(
                    f"cannot read the last trades of {topic} from Kafka ({reason}): check that Kafka is up, "
                    "or start with --from-latest (trades made while no producer ran are then not backfilled)"
                ) from exc
            log.warning("resume: reading %s failed (%s); trying again", topic, reason)
            time.sleep(1)


def _scan(
    consumer: Consumer,
    topic: str,
    partitions: dict[int, _Partition],
    wanted: dict[bytes, str],
    found: dict[str, int],
    deadline: float,
) -> int:
    """Read chunks of every partition in parallel until each is done; returns the records read."""
    active = dict(partitions)
    consumer.assign([TopicPartition(topic, p.number, p.start) for p in active.values()])
    records = 0
    while active:
        if time.monotonic() > deadline:
            log.warning("resume: gave up reading %s after the time limit; unfound symbols start live", topic)
            break
        moved: set[int] = set()  # partitions sought in this batch: its later messages predate the seek
        for message in consumer.consume(num_messages=5000, timeout=0.5):
            number = message.partition()
            part = active.get(number) if number is not None else None
            if part is None or part.number in moved:
                continue
            error = message.error()
            offset = message.offset()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    if error.fatal():
                        raise ProducerError(f"cannot read the last trades of {topic}: {error.str()}")
                    continue  # transient (a broker restarting): librdkafka retries, the deadline bounds it
                # The newest chunk may end in offsets that hold no record (transaction markers): the end
                # of the partition ends it. Any other chunk ends at a record of the chunk after it.
                finished = part.end == part.high
            else:
                if offset is None or offset < part.start:
                    continue
                if offset < part.end:
                    records += 1
                    part.read += 1
                    symbol = wanted.get(message.key() or b"")
                    if symbol is not None and symbol not in part.found:
                        trade_id = trade_id_of(message.value() or b"")
                        if trade_id is not None:
                            part.latest[symbol] = max(trade_id, part.latest.get(symbol, trade_id))
                # librdkafka drops what it fetched before a seek (and this batch's rest is skipped), so
                # an offset at or past the chunk's end means the chunk was read through.
                finished = offset >= part.end - 1
            if not finished:
                continue
            for symbol, trade_id in part.latest.items():  # the newest chunk holding a symbol has its last trade
                part.found.add(symbol)
                found[symbol] = max(trade_id, found.get(symbol, trade_id))
            part.end = part.start
            part.chunk = min(MAX_CHUNK, part.chunk * 4)
            moved.add(part.number)
            if not part.lives_here.issubset(found) and part.next_chunk():
                consumer.seek(TopicPartition(topic, part.number, part.start))
            else:
                del active[part.number]
                consumer.pause([TopicPartition(topic, part.number)])
    return records


def _listed(symbols: list[str], shown: int = 10) -> str:
    more = len(symbols) - shown
    return ", ".join(symbols[:shown]) + (f" and {more} more" if more > 0 else "")
