"""The stack's metrics side, running: the JMX exporter on the broker and the Connect worker, the metrics
server (VictoriaMetrics) scraping them, and vmalert with the stack's alert rules loaded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from k2.stack.services import CONFIG_DIR

from .conftest import PRODUCER_METRICS_PORT, TEST_PORTS, LocalStack, unique

pytestmark = pytest.mark.integration

METRICS = f"http://127.0.0.1:{TEST_PORTS['K2_METRICS_PORT']}"
ALERTS = f"http://127.0.0.1:{TEST_PORTS['K2_ALERTS_PORT']}"


@pytest.fixture(scope="module")
def metrics_stack(local_stack: LocalStack) -> LocalStack:
    done = local_stack.k2("stack", "status", "--format", "json")
    states = {row["service"]: row["state"] for row in json.loads(done.stdout)}
    if states["metrics"] == "skipped":
        pytest.skip("the metrics server was skipped (Go not found): nothing to test here")
    assert states["metrics"] == states["alerts"] == "running", states
    return local_stack


def _eventually(check: Callable[[], Any], timeout: float = 90, what: str = "") -> Any:
    """The first truthy result of ``check`` within ``timeout`` seconds (scrapes run every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(1)


def _targets() -> dict[str, list[dict[str, Any]]]:
    body = requests.get(f"{METRICS}/api/v1/targets", timeout=10).json()
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in body["data"]["activeTargets"]:
        jobs.setdefault(target["labels"]["job"], []).append(target)
    return jobs


def _query(expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{METRICS}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_the_metrics_server_scrapes_broker_and_connect_through_the_jmx_exporter(metrics_stack: LocalStack) -> None:
    def up() -> dict[str, list[dict[str, Any]]] | None:
        jobs = _targets()
        wanted = ("kafka", "connect", "maintainer", "registry", "supervisor")
        ok = all(job in jobs and {t["health"] for t in jobs[job]} == {"up"} for job in wanted)
        return jobs if ok else None

    jobs = _eventually(up, what=f"kafka, connect, maintainer, registry and supervisor up in {_targets()}")
    assert jobs["kafka"][0]["scrapeUrl"] == f"http://127.0.0.1:{TEST_PORTS['K2_KAFKA_JMX_PORT']}/metrics"
    assert jobs["connect"][0]["scrapeUrl"] == f"http://127.0.0.1:{TEST_PORTS['K2_CONNECT_JMX_PORT']}/metrics"
    assert jobs["supervisor"][0]["scrapeUrl"] == f"http://127.0.0.1:{TEST_PORTS['K2_SUPERVISOR_PORT']}/metrics"
    # `k2 stack up` in the tests points the k2-producer job at PRODUCER_METRICS_PORT, where a test's
    # producer serves when it asks to (test_dashboards_live.py); the other producers serve none.
    assert [t["scrapeUrl"] for t in jobs["k2-producer"]] == [f"http://127.0.0.1:{PRODUCER_METRICS_PORT}/metrics"]
    # The exporter's rules apply: the broker's health gauges and the worker's counts are there.
    _eventually(lambda: _query("kafka_controller_kafkacontroller_activecontrollercount == 1"), what="controller")
    _eventually(lambda: _query('kafka_connect_worker_connector_count{job="connect"}'), what="worker series")
    # The supervisor's series exist from its start (at 0), for its alert rules to read.
    _eventually(lambda: _query('k2_supervisor_restarts_total{job="supervisor"}'), what="supervisor series")


def test_vmalert_loaded_every_rule_of_the_stack(metrics_stack: LocalStack) -> None:
    declared = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())["groups"]
    expected = {group["name"]: {rule["alert"] for rule in group["rules"]} for group in declared}
    assert set().union(*expected.values()) == {
        "ProducerDown",
        "ProducerDisconnected",
        "UnrecoveredGap",
        "DeadLettersGrowing",
        "ConnectorTaskNotRunning",
        "SinkLagHigh",
        "TableStale",
        "MaintainerFailing",
        "SupervisorDown",
        "SinkTaskRestarted",
        "ServiceRestarted",
        "RestartsGivenUp",
    }

    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = requests.get(f"{ALERTS}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = {group["name"]: {rule["name"]: rule for rule in group["rules"]} for group in groups}
        done = all(rule.get("lastEvaluation", "").startswith("20") for g in rules.values() for rule in g.values())
        return rules if done else None

    rules = _eventually(evaluated, what="every rule evaluated once")
    assert {name: set(group) for name, group in rules.items()} == expected
    errors = {name: rule["lastError"] for group in rules.values() for name, rule in group.items() if rule["lastError"]}
    assert not errors, f"rules that fail to evaluate against the metrics server: {errors}"


def test_the_broker_throughput_counter_of_a_topic_grows_with_what_is_produced(metrics_stack: LocalStack) -> None:
    topic = unique("k2.metrics.probe")
    admin = AdminClient({"bootstrap.servers": metrics_stack.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": metrics_stack.bootstrap_servers, "linger.ms": 5})
    series = f'kafka_server_brokertopicmetrics_messagesinpersec_total{{job="kafka", topic="{topic}"}}'

    def produce_and_read(count: int, at_least: float) -> float:
        for index in range(count):
            producer.produce(topic, key=b"BTCUSDT", value=f"probe {index}".encode())
        assert producer.flush(30) == 0

        def counted() -> float | None:
            result = _query(series)
            value = float(result[0]["value"][1]) if result else 0.0
            return value if value >= at_least else None

        return float(_eventually(counted, what=f"{series} >= {at_least}"))

    first = produce_and_read(40, 40)
    second = produce_and_read(60, first + 60)
    assert second >= first + 60
    bytes_in = _query(f'kafka_server_brokertopicmetrics_bytesinpersec_total{{topic="{topic}"}}')
    assert bytes_in and float(bytes_in[0]["value"][1]) > 0
