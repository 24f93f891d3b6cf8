"""Creating and updating the declared Kafka topics, idempotently."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from .contract import TopicSpec
from .exceptions import TopicError

TIMEOUT = 30.0


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An admin client whose librdkafka log lines (a "Connection refused" per retry while the broker is
    away: about 200 in 10 s) go nowhere: an unreachable broker is reported once, as one line."""
    quiet = logging.getLogger("k2.kafka-admin")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    return AdminClient(
        {"bootstrap.servers": bootstrap_servers, "socket.connection.setup.timeout.ms": 5000}, logger=quiet
    )


def existing_partitions(admin: AdminClient, bootstrap_servers: str) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        raise TopicError(
            f"Kafka at {bootstrap_servers} is unreachable ({exc.args[0].str()}); start the stack with "
            "`k2 stack up` or point --bootstrap-servers / K2_BOOTSTRAP_SERVERS at a running broker"
        ) from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def apply_topics(bootstrap_servers: str, specs: Iterable[TopicSpec], dry_run: bool = False) -> list[dict[str, object]]:
    """Create missing topics, raise partition counts and align configs; report one row per topic."""
    admin = admin_client(bootstrap_servers)
    existing = existing_partitions(admin, bootstrap_servers)
    rows: list[dict[str, object]] = []
    for spec in specs:
        if spec.name not in existing:
            if not dry_run:
                future = admin.create_topics([NewTopic(spec.name, spec.partitions, config=spec.config)])[spec.name]
                try:
                    future.result(timeout=TIMEOUT)
                except KafkaException as exc:
                    raise TopicError(f"creating topic {spec.name} failed: {exc.args[0].str()}") from exc
            rows.append({"topic": spec.name, "action": "created", "partitions": spec.partitions, "changes": ""})
            continue
        changes = []
        current_partitions = existing[spec.name]
        if spec.partitions > current_partitions:
            changes.append(f"partitions {current_partitions}->{spec.partitions}")
            if not dry_run:
                future = admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name]
                future.result(timeout=TIMEOUT)
        resource = ConfigResource(ResourceType.TOPIC, spec.name)
        described = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
        differing = {k: v for k, v in spec.config.items() if k not in described or described[k].value != v}
        if differing:
            for key, value in sorted(differing.items()):
                old = described[key].value if key in described else "(unset)"
                changes.append(f"{key} {old} -> {value}")
            if not dry_run:
                entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in differing.items()]
                update = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=entries)
                try:
                    admin.incremental_alter_configs([update])[update].result(timeout=TIMEOUT)
                except KafkaException as exc:
                    raise TopicError(f"updating topic {spec.name} failed: {exc.args[0].str()}") from exc
        if spec.partitions < current_partitions:
            changes.append(f"declares {spec.partitions} partitions but has {current_partitions} (Kafka cannot shrink)")
        rows.append(
            {
                "topic": spec.name,
                "action": ("would update" if dry_run else "updated")
                if differing or spec.partitions > current_partitions
                else "unchanged",
                "partitions": max(spec.partitions, current_partitions),
                "changes": "; ".join(changes),
            }
        )
    if dry_run:
        for row in rows:
            if row["action"] == "created":
                row["action"] = "would create"
    return rows
