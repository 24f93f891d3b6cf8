"""A sink connector's lag: per partition of its topics, the topic's end offset against the offset its
consumer group committed, both from Kafka's AdminClient. `k2 status` shows it and benchmarks/soak.py
samples it; the stack's dashboards read Connect's own figure (kafka_connect_sink_consumer_records_lag)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end_offset: int
    committed: int | None  # None: the group has committed nothing for this partition yet
    lag: int  # records not yet committed by the sink (all of them when nothing was committed)


def sink_group(connector: str) -> str:
    """The consumer group of a sink connector: Kafka Connect names it ``connect-<connector>``
    (SinkUtils.consumerGroupId) unless the connector overrides group.id, which K2's do not."""
    return f"connect-{connector}"


def sink_lag(admin: AdminClient, connector: str, topics: Iterable[str], timeout: float = 10.0) -> list[PartitionLag]:
    """The lag of ``connector``'s group on every partition of ``topics`` (topics that do not exist are
    left out), sorted by topic and partition. Kafka errors are raised as KafkaException."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    group = sink_group(connector)
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    committed = {(tp.topic, tp.partition): tp.offset for tp in future.result(timeout=timeout).topic_partitions}
    metadata = admin.list_topics(timeout=timeout)
    partitions = [TopicPartition(t, p) for t in topics if t in metadata.topics for p in metadata.topics[t].partitions]
    if not partitions:
        return []
    ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
    rows = []
    for tp, result in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition)):
        end = result.result(timeout=timeout).offset
        done = committed.get((tp.topic, tp.partition), -1)  # librdkafka's OFFSET_INVALID is negative too
        rows.append(PartitionLag(group, tp.topic, tp.partition, end, done if done >= 0 else None, end - max(done, 0)))
    return rows
