"""`k2 status` shows what the supervisor did, from its metrics page (no stack needed: a local HTTP server
serves a page the supervisor's own collector wrote)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from k2.cli.status_cmd import _supervisor, rows
from k2.stack.supervisor import CONNECTOR_REASONS, SERVICE_REASONS, Stats, metric_families


def _page(stats: Stats) -> bytes:
    class Fixed(Collector):
        def collect(self) -> Iterator[Any]:
            return metric_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry)


@pytest.fixture
def served() -> Iterator[tuple[Stats, str]]:
    stats = Stats()
    stats.know("service", "connect", SERVICE_REASONS)
    stats.know("connector", "k2-iceberg-trades", CONNECTOR_REASONS)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = _page(stats)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stats, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_restarts_failed_tasks_and_give_ups_are_read_from_the_supervisors_metrics(served: tuple[Stats, str]) -> None:
    stats, url = served
    assert _supervisor(url) == {"state": "running", "url": url, "restarts": [], "given_up": [], "tasks_failed": {}}
    stats.restarts[("k2-iceberg-trades", "task-failed")] = 3
    stats.restarts[("connect", "unresponsive")] = 1
    stats.tasks_failed["k2-iceberg-trades"] = 1
    stats.given_up["k2-iceberg-trades"] = True
    found = _supervisor(url)
    assert found["restarts"] == [
        {"target": "connect", "reason": "unresponsive", "count": 1},
        {"target": "k2-iceberg-trades", "reason": "task-failed", "count": 3},
    ]
    assert found["given_up"] == ["k2-iceberg-trades"] and found["tasks_failed"] == {"k2-iceberg-trades": 1}


def test_a_supervisor_that_does_not_answer_is_not_running() -> None:
    assert _supervisor("http://127.0.0.1:9/metrics")["state"] == "not running"


def test_the_rows_show_the_supervisor_and_each_connectors_restarts_and_error() -> None:
    status: dict[str, Any] = {
        "services": [],
        "producer": {"url": "http://127.0.0.1:9091/metrics", "state": "not running"},
        "supervisor": {
            "state": "running",
            "url": "http://127.0.0.1:9465/metrics",
            "restarts": [{"target": "k2-iceberg-trades", "reason": "task-failed", "count": 2}],
            "given_up": ["k2-iceberg-trades"],
            "tasks_failed": {"k2-iceberg-trades": 1},
        },
        "connectors": [
            {
                "name": "k2-iceberg-trades",
                "state": "RUNNING",
                "tasks": "0:FAILED",
                "error": "ConnectException: Exiting WorkerSinkTask | Caused by: NoSuchTableException: x",
                "supervisor_restarts": 2,
            }
        ],
        "lag": [],
        "tables": [],
        "dead_letters": {},
        "ksql": {"url": "http://127.0.0.1:8088", "state": "not answering", "queries": []},
        "healthy": False,
        "unhealthy": ["connector k2-iceberg-trades RUNNING (tasks 0:FAILED)"],
    }
    shown = {row["part"]: row for row in rows(status)}
    assert shown["supervisor"]["detail"] == "restarts: k2-iceberg-trades 2x (task-failed); gave up on k2-iceberg-trades"
    assert shown["connector"]["detail"] == (
        "tasks 0:FAILED; restarted 2x by the supervisor; "
        "ConnectException: Exiting WorkerSinkTask | Caused by: NoSuchTableException: x"
    )
    assert shown["pipeline"]["state"] == "UNHEALTHY"
