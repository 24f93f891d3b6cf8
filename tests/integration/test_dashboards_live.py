"""Every dashboard panel has data on the local metrics server after a stand-in run through the real
pipeline (declared topics, table and connector), every scrape target is up, counters move with traffic,
and the sink's lag returns to 0 once the producer stops."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn
from k2.schemas.contract import load_topics
from k2.stack.dashboard_sync import load, queries
from k2.stack.services import SCRAPE_TEMPLATE as SCRAPE

from .conftest import PRODUCER_METRICS_PORT, TEST_PORTS, LocalStack
from .helpers import BAD_FRAMES, make_events, produce_cmd, start_producer

pytestmark = pytest.mark.integration

METRICS = f"http://127.0.0.1:{TEST_PORTS['K2_METRICS_PORT']}"
# Every job the stack scrapes, read from the one scrape file both stacks use: a new job is checked here too.
JOBS = {job["job_name"] for job in yaml.safe_load(SCRAPE.read_text())["scrape_configs"]}


def _query(expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{METRICS}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _total(expr: str) -> float:
    return sum(float(series["value"][1]) for series in _query(expr))


def _up() -> dict[str, bool]:
    body = requests.get(f"{METRICS}/api/v1/targets", timeout=10).json()
    return {t["labels"]["job"]: t["health"] == "up" for t in body["data"]["activeTargets"]}


def _within(seconds: float, check: Callable[[], Any], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f}s: {what()}")
        time.sleep(2)


def test_every_panel_has_data_and_every_target_is_up_after_a_standin_run(local_stack: LocalStack) -> None:
    status = json.loads(local_stack.k2("stack", "status", "--format", "json").stdout)
    if {row["service"]: row["state"] for row in status}["metrics"] == "skipped":
        pytest.skip("the metrics server was skipped (Go not found)")
    for step in (("topics", "apply"), ("schemas", "register"), ("tables", "apply"), ("deploy-connectors",)):
        done = local_stack.k2(*step)
        assert done.returncode == 0, (step, done.stderr)
    topics = load_topics()
    topic, dlq = topics["trades"].name, topics["trades-dlq"].name
    panels = [(title, expr) for dashboard in load().values() for title, expr in queries(dashboard)]
    script = Script(bad_frames={300: list(BAD_FRAMES.values())})
    with BinanceStandIn(make_events(40_000, seed=31), rate=200, script=script) as server:
        args = produce_cmd(server, topic, dlq, "--from-latest", "--duration", "4m")
        producer = start_producer(local_stack, [*args, "--metrics-port", PRODUCER_METRICS_PORT])
        try:
            _within(60, lambda: _up().get("k2-producer"), lambda: f"targets {_up()}")
            before = _total("k2_trades_acknowledged_total")
            # The maintainer reports a table after its first cycle with it (60 s in the stack).
            empty: list[tuple[str, str]] = []

            def all_have_data() -> bool:
                empty[:] = [panel for panel in panels if not _query(panel[1])]
                return not empty

            _within(180, all_have_data, lambda: f"panels without data: {empty}")
            assert _up() == dict.fromkeys(JOBS, True), _up()
            after = _total("k2_trades_acknowledged_total")
            assert after > before, "the producer's counter moved with the traffic"
            assert _total(f'sum(kafka_server_brokertopicmetrics_messagesinpersec_total{{topic="{topic}"}})') > 0
        finally:
            producer.send_signal(signal.SIGTERM)
            _, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err
    # Once nothing new arrives the sink catches up: its consumer lag on the trades topic returns to 0.
    lag = f'sum(max by (partition) (kafka_connect_sink_consumer_records_lag{{topic="{topic}"}}))'
    _within(180, lambda: _query(lag) and _total(lag) == 0, lambda: f"lag {_query(lag)}")
