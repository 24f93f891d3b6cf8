"""`k2 stack` against the real services: Kafka, Apicurio (Confluent API), Connect, Iceberg REST."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pyiceberg.catalog import load_catalog
from pyiceberg.schema import Schema as IcebergSchema
from pyiceberg.types import DecimalType, LongType, NestedField, StringType

from k2.stack.manager import port_in_use
from k2.stack.services import SERVICE_NAMES

from .conftest import TEST_PORTS, LocalStack, unique

pytestmark = pytest.mark.integration

TRADE_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Probe",
        "namespace": "k2.test",
        "fields": [
            {"name": "symbol", "type": "string"},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 8}},
        ],
    }
)


def _status(stack: LocalStack) -> tuple[int, list[dict[str, Any]]]:
    done = stack.k2("stack", "status", "--format", "json")
    return done.returncode, json.loads(done.stdout)


def _create_topic(stack: LocalStack, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=30)


def _catalog(stack: LocalStack) -> Any:
    return load_catalog("k2-test", type="rest", uri=stack.catalog_uri)


def test_up_from_nothing_starts_every_service(local_stack: LocalStack) -> None:
    rows = json.loads(local_stack.first_up.stdout)
    # The metrics server and vmalert are Go programs: built once when Go is on PATH, else skipped (said so).
    metrics_state = next(r["state"] for r in rows if r["service"] == "metrics")
    assert metrics_state == "running" or (metrics_state == "skipped" and not shutil.which("go"))
    if metrics_state == "skipped":
        assert "metrics, alerts: skipped (Go not found" in local_stack.first_up.stderr
    assert [(r["service"], r["state"]) for r in rows] == [
        ("kafka", "running"),
        ("registry", "running"),
        ("catalog", "running"),
        ("connect", "running"),
        ("maintainer", "running"),
        ("metrics", metrics_state),
        ("alerts", metrics_state),
        ("supervisor", "running"),
    ], local_stack.first_up.stderr
    assert all(r["pid"] for r in rows)
    print(f"cold/warm `k2 stack up` from an empty state dir took {local_stack.first_up_seconds:.1f}s")


def test_second_up_leaves_running_services_alone(local_stack: LocalStack) -> None:
    _, rows = _status(local_stack)
    before = {r["service"]: r["pid"] for r in rows}
    assert all(before.values())
    again = local_stack.k2("stack", "up", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert {r["service"]: r["pid"] for r in json.loads(again.stdout)} == before


def test_every_port_listens_on_loopback_only(local_stack: LocalStack) -> None:
    listening = [
        line.split() for name in ("tcp", "tcp6") for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]
    ]
    for port in map(int, TEST_PORTS.values()):
        local = [cols[1] for cols in listening if cols[3] == "0A" and cols[1].endswith(f":{port:04X}")]
        assert local, f"nothing listens on {port}"
        for address in local:
            host = address.split(":")[0]
            # 127.0.0.1 in /proc/net/tcp is 0100007F; IPv4-mapped in tcp6 ends with it too.
            assert host.endswith("0100007F"), f"port {port} listens on {host}, not loopback"


def test_broker_round_trip(local_stack: LocalStack) -> None:
    topic = unique("k2_probe")
    _create_topic(local_stack, topic)
    failures: list[Any] = []
    producer = Producer({"bootstrap.servers": local_stack.bootstrap_servers, "acks": "all", "enable.idempotence": True})

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    producer.produce(topic, key=b"BTCUSDT", value=b"hello", on_delivery=delivered)
    assert producer.flush(30) == 0 and not failures
    consumer = Consumer(
        {"bootstrap.servers": local_stack.bootstrap_servers, "group.id": unique("g"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1)
        assert message is not None and message.error() is None
        assert (message.key(), message.value()) == (b"BTCUSDT", b"hello")
    finally:
        consumer.close()


def test_registry_speaks_the_confluent_api(local_stack: LocalStack) -> None:
    subject = unique("k2_probe") + "-value"
    with SchemaRegistryClient({"url": local_stack.registry_url}) as client:
        schema_id = client.register_schema(subject, Schema(TRADE_SCHEMA, "AVRO"))
        fetched = client.get_schema(schema_id)
        assert json.loads(fetched.schema_str) == json.loads(TRADE_SCHEMA)
        assert client.get_latest_version(subject).schema_id == schema_id


def test_connect_offers_the_iceberg_sink_and_the_avro_converter(local_stack: LocalStack) -> None:
    plugins = requests.get(f"{local_stack.connect_url}/connector-plugins", timeout=10).json()
    assert "org.apache.iceberg.connect.IcebergSinkConnector" in {p["class"] for p in plugins}
    every = requests.get(f"{local_stack.connect_url}/connector-plugins?connectorsOnly=false", timeout=10).json()
    assert "io.apicurio.registry.utils.converter.AvroConverter" in {p["class"] for p in every}


def test_catalog_creates_and_lists_namespaces_and_tables(local_stack: LocalStack) -> None:
    catalog = _catalog(local_stack)
    namespace = unique("k2_ns")
    catalog.create_namespace(namespace)
    schema = IcebergSchema(
        NestedField(1, "symbol", StringType(), required=True),
        NestedField(2, "trade_id", LongType(), required=True),
        NestedField(3, "price", DecimalType(18, 8), required=True),
    )
    catalog.create_table(f"{namespace}.trades", schema)
    assert (namespace,) in catalog.list_namespaces()
    assert (namespace, "trades") in catalog.list_tables(namespace)
    location = catalog.load_table(f"{namespace}.trades").metadata_location
    assert location.startswith(str(local_stack.home / "data" / "warehouse"))


def test_status_reports_all_running(local_stack: LocalStack) -> None:
    code, rows = _status(local_stack)
    assert code == 0
    assert {r["state"] for r in rows} == {"running"}


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}/stat"):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)


def test_a_crashed_service_is_reported_then_restarted_by_up(local_stack: LocalStack) -> None:
    _, rows = _status(local_stack)
    # The supervisor would restart the catalog before `status` could see it crashed (test_supervisor.py
    # shows that): stop it first; it is a service too, and `up` starts both again.
    supervisor_pid = next(r["pid"] for r in rows if r["service"] == "supervisor")
    os.kill(supervisor_pid, signal.SIGTERM)
    _gone(supervisor_pid)
    catalog_pid = next(r["pid"] for r in rows if r["service"] == "catalog")
    os.kill(catalog_pid, signal.SIGKILL)
    _gone(catalog_pid)
    code, rows = _status(local_stack)
    assert code == 1
    states = {r["service"]: r["state"] for r in rows}
    assert (states["catalog"], states["supervisor"]) == ("crashed", "crashed")
    up = local_stack.k2("stack", "up", "--format", "json")
    assert up.returncode == 0, up.stderr
    states = {r["service"]: r["state"] for r in json.loads(up.stdout)}
    assert (states["catalog"], states["supervisor"]) == ("running", "running")


def test_restart_keeps_topic_schema_and_table_and_down_frees_every_port(local_stack: LocalStack) -> None:
    topic = unique("k2_persist")
    _create_topic(local_stack, topic)
    with SchemaRegistryClient({"url": local_stack.registry_url}) as registry:
        schema_id = registry.register_schema(f"{topic}-value", Schema(TRADE_SCHEMA, "AVRO"))
    catalog = _catalog(local_stack)
    catalog.create_namespace(topic)
    catalog.create_table(f"{topic}.t", IcebergSchema(NestedField(1, "x", LongType(), required=False)))

    planned = local_stack.k2("stack", "down", "--dry-run", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    assert all(row["result"].startswith("would stop pid") for row in json.loads(planned.stdout)), planned.stdout
    assert all(port_in_use(port) for port in map(int, TEST_PORTS.values())), "--dry-run stopped something"
    down = local_stack.k2("stack", "down", "--format", "json")
    assert down.returncode == 0, down.stderr
    assert [row["result"] for row in json.loads(down.stdout)] == ["stopped"] * len(SERVICE_NAMES), down.stdout
    busy = [port for port in map(int, TEST_PORTS.values()) if port_in_use(port)]
    assert not busy, f"ports still in use after down: {busy}"
    again = local_stack.k2("stack", "down")
    assert again.returncode == 0 and again.stdout.count("was not running") == len(SERVICE_NAMES)

    up = local_stack.k2("stack", "up", "--timeout", "10m")
    assert up.returncode == 0, up.stderr
    admin = AdminClient({"bootstrap.servers": local_stack.bootstrap_servers})
    assert topic in admin.list_topics(timeout=30).topics
    with SchemaRegistryClient({"url": local_stack.registry_url}) as registry:
        assert registry.get_latest_version(f"{topic}-value").schema_id == schema_id
        assert json.loads(registry.get_schema(schema_id).schema_str) == json.loads(TRADE_SCHEMA)
    assert (topic, "t") in _catalog(local_stack).list_tables(topic)


def test_topics_apply_brings_declared_retention_to_existing_topics_and_says_what_changed(
    local_stack: LocalStack,
) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    from k2.schemas.contract import load_topics

    assert local_stack.k2("topics", "apply").returncode == 0
    declared = load_topics()
    trades, dlq = declared["trades"], declared["trades-dlq"]
    assert trades.config["retention.ms"] == "604800000" and trades.config["segment.ms"] == "86400000"
    assert int(dlq.config["retention.ms"]) > int(trades.config["retention.ms"])
    admin = AdminClient({"bootstrap.servers": local_stack.bootstrap_servers})
    # Someone shortened the trades topic's retention by hand: apply puts the declaration back.
    entry = ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, trades.name, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)

    dry = local_stack.k2("topics", "apply", "--dry-run", "--format", "json")
    rows = {row["topic"]: row for row in json.loads(dry.stdout)}
    assert rows[trades.name]["action"] == "would update"
    assert rows[trades.name]["changes"] == "retention.ms 3600000 -> 604800000"
    assert rows[dlq.name]["action"] == "unchanged"
    applied = local_stack.k2("topics", "apply", "--format", "json")
    assert json.loads(applied.stdout)[0]["changes"] == "retention.ms 3600000 -> 604800000"
    described = ConfigResource(ResourceType.TOPIC, trades.name)
    config = admin.describe_configs([described])[described].result(timeout=30)
    assert (config["retention.ms"].value, config["segment.ms"].value) == ("604800000", "86400000")
    again = local_stack.k2("topics", "apply", "--format", "json")
    assert {row["action"] for row in json.loads(again.stdout)} == {"unchanged"}
