"""`k2 produce` serves Prometheus metrics while it runs: scraped twice mid-run, parsed with the Prometheus
client's text parser, every name and label valid, counters moving with the traffic the stand-in sends."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.stats import HISTOGRAM_SAMPLE

from .conftest import LocalStack
from .helpers import (
    BAD_FRAMES,
    SYMBOLS,
    free_port,
    make_events,
    make_topics,
    produce_cmd,
    produce_summary,
    start_producer,
)

pytestmark = pytest.mark.integration

# The Prometheus data model (https://prometheus.io/docs/concepts/data_model/): the seed's one open bug
# was a label name outside it.
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert METRIC_NAME.match(family.name) and family.name.startswith("k2_"), family.name
        for sample in family.samples:
            assert all(LABEL_NAME.match(label) and not label.startswith("__") for label in sample.labels), sample
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_traffic_and_every_name_is_valid(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    events = make_events(3000, seed=23)
    port = free_port()
    script = Script(disconnect_at={1500}, bad_frames={200: list(BAD_FRAMES.values())})
    with BinanceStandIn(events, rate=300, script=script) as server:
        args = produce_cmd(server, topic, dlq, "--max-messages", str(len(events)), "--duration", "3m")
        producer = start_producer(local_stack, [*args, "--metrics-port", str(port)])
        try:
            deadline = time.monotonic() + 60
            first: dict[Any, float] = {}
            while time.monotonic() < deadline and not _value(first, "k2_trades_acknowledged_total"):
                time.sleep(0.5)
                try:
                    first = _scrape(port)
                except requests.ConnectionError:
                    assert producer.poll() is None, producer.communicate()[1]
            assert _value(first, "k2_connection_up", connection="0") == 1.0
            assert _value(first, "k2_connection_streams", connection="0") == 3.0
            time.sleep(3)
            second = _scrape(port)
            out, err = producer.communicate(timeout=180)
        finally:
            producer.kill()
    assert producer.returncode == 0, err
    summary = produce_summary(out)
    for symbol in SYMBOLS:
        assert _value(second, "k2_trades_received_total", symbol=symbol) > _value(
            first, "k2_trades_received_total", symbol=symbol
        ), f"{symbol}: trades received did not move"
    moved = _value(second, "k2_trades_acknowledged_total") - _value(first, "k2_trades_acknowledged_total")
    assert moved > 300, "at 300 trades/s, 3 s later"
    # The histograms observe every HISTOGRAM_SAMPLE-th trade acknowledged / sent.
    acknowledged, sent = _value(second, "k2_trades_acknowledged_total"), _value(second, "k2_trades_sent_total")
    assert _value(second, "k2_delivery_latency_seconds_count") == acknowledged // HISTOGRAM_SAMPLE > 0
    assert _value(second, "k2_event_lag_seconds_count") == sent // HISTOGRAM_SAMPLE > 0
    reasons = {dict(labels)["reason"] for name, labels in second if name == "k2_dead_lettered_total"}
    # A fixed word per kind of defect (never a value from the frame: that would be a series per bad value).
    assert reasons and reasons <= {"invalid_json", "not_an_object", "not_a_trade", "bad_field", "bad_decimal"}
    assert sum(v for (name, _), v in second.items() if name == "k2_dead_lettered_total") == len(BAD_FRAMES)
    assert summary["trades_acknowledged"] == len(events) and summary["dead_lettered"] == len(BAD_FRAMES)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # the server ends with the producer


def test_a_busy_metrics_port_is_one_line_before_anything_is_sent(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with BinanceStandIn(make_events(100), rate=100) as server:
            done = local_stack.k2(*produce_cmd(server, topic, dlq, "--metrics-port", str(port)), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"Error: metrics port 127.0.0.1:{port} is not free")
