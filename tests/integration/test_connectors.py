"""`k2 deploy-connectors` and `k2 connectors` off the happy path, on the real Connect worker."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka.admin import AdminClient, NewTopic

from k2.connect.deploy import fill, load_connector, variable_values
from k2.connect.tables import apply_table, rest_catalog
from k2.producer.binance_standin.server import BinanceStandIn
from k2.schemas.contract import load_topics

from .conftest import LocalStack, unique
from .helpers import connector_copy, deploy, make_events, make_topics, produce_cmd, table_spec, wait_for_rows

pytestmark = pytest.mark.integration


def connector_status(stack: LocalStack, name: str) -> dict[str, Any] | None:
    """The connector's status, None once it is no longer deployed (its status may outlive it a moment)."""
    if name not in requests.get(f"{stack.connect_url}/connectors", timeout=30).json():
        return None
    response = requests.get(f"{stack.connect_url}/connectors/{name}/status", timeout=30)
    return None if response.status_code == 404 else dict(response.json())


def wait_for_task_state(stack: LocalStack, name: str, state: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        status = connector_status(stack, name)
        if status and status["tasks"] and all(t["state"] == state for t in status["tasks"]):
            return status
        time.sleep(1)
    raise AssertionError(f"{name} tasks not {state} within {timeout}s: {status}")


def filled_config(stack: LocalStack, path: Path, **values: str) -> dict[str, str]:
    """The config `k2 deploy-connectors` would send, computed with its own functions."""
    settings = {"catalog_uri": stack.catalog_uri, "bootstrap_servers": stack.bootstrap_servers}
    topics = {key: spec.name for key, spec in load_topics().items()}
    known = variable_values(settings, topics, values, {})
    return fill(load_connector(path), known)


def test_deploying_before_the_table_exists_is_refused_and_a_failed_sink_is_restarted(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    topic, dlq = make_topics(local_stack)
    table = f"{unique('cn')}.trades"
    path = connector_copy(tmp_path)
    name = path.stem
    try:
        # The natural first mistake: deploy before `k2 tables apply`. One line, nothing created.
        refused = deploy(local_stack, path, topic, table)
        assert refused.returncode == 1
        errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and table in errors[0] and "k2 tables apply" in errors[0], refused.stderr
        assert connector_status(local_stack, name) is None
        dry = deploy(local_stack, path, topic, table, "--dry-run")
        assert dry.returncode == 1 and "k2 tables apply" in dry.stderr

        # A sink deployed without that check (by hand, or by an older K2) fails on its first trades.
        control = unique("k2_control")
        admin = AdminClient({"bootstrap.servers": local_stack.bootstrap_servers})
        admin.create_topics([NewTopic(control, 1, 1)])[control].result(timeout=30)
        config = filled_config(
            local_stack,
            path,
            TRADES_TOPIC=topic,
            ICEBERG_TABLE=table,
            CONTROL_TOPIC=control,
            COMMIT_INTERVAL_MS="3000",
        )
        created = requests.put(f"{local_stack.connect_url}/connectors/{name}/config", json=config, timeout=30)
        assert created.status_code == 201, created.text
        events = make_events(60, seed=5)
        with BinanceStandIn(events, rate=1000) as server:
            produced = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "60"))
        assert produced.returncode == 0, produced.stderr
        failed = wait_for_task_state(local_stack, name, "FAILED")
        assert "NoSuchTableException" in failed["tasks"][0]["trace"]

        # After `k2 tables apply`, deploying the same config restarts the failed task and waits for RUNNING.
        apply_table(rest_catalog(local_stack.catalog_uri), table_spec(table))
        again = deploy(local_stack, path, topic, table, control=control)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == [
            {"connector": name, "result": "Restarted", "state": "RUNNING", "file": str(path)}
        ]
        assert wait_for_rows(local_stack, table, 60) == 60
    finally:
        requests.delete(f"{local_stack.connect_url}/connectors/{name}", timeout=30)


def test_a_restarted_sink_stops_its_coordinator_and_keeps_committing(local_stack: LocalStack, tmp_path: Path) -> None:
    """A restart stops the task; its commit coordinator must stop with it. Under Iceberg 1.10 it could
    survive on a closed catalog client ("Connection pool shut down") and keep the control topic, so that
    nothing committed again until the worker itself restarted."""
    topic, dlq = make_topics(local_stack)
    table = f"{unique('cn')}.trades"
    apply_table(rest_catalog(local_stack.catalog_uri), table_spec(table))
    path = connector_copy(tmp_path)
    name = path.stem
    log = local_stack.home / "logs" / "connect.log"
    events = make_events(120, seed=8)
    try:
        assert deploy(local_stack, path, topic, table).returncode == 0
        with BinanceStandIn(events[:60], rate=1000) as server:
            assert local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "60")).returncode == 0
        assert wait_for_rows(local_stack, table, 60) == 60

        def since(offset: int) -> str:
            with log.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")

        before = log.stat().st_size
        for _ in range(3):
            mark = log.stat().st_size
            restarted = local_stack.k2("connectors", "restart", name, "--format", "json")
            assert restarted.returncode == 0, restarted.stderr
            wait_for_task_state(local_stack, name, "RUNNING")
            # RUNNING comes before the task has its partitions; the next restart must find a coordinator.
            deadline = time.monotonic() + 120
            while f"Task {name}-0 elected leader, starting commit coordinator" not in since(mark):
                assert time.monotonic() < deadline, "the restarted task never started its coordinator"
                time.sleep(1)
        with BinanceStandIn(events[60:], rate=1000) as server:
            assert local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "60")).returncode == 0
        assert wait_for_rows(local_stack, table, 120) == 120
        closed = [line for line in since(before).splitlines() if f"{name}-0 stopped. Closing coordinator" in line]
        assert len(closed) >= 3, "each restart must stop the coordinator of the task it stops"
        assert "Connection pool shut down" not in since(before)
    finally:
        requests.delete(f"{local_stack.connect_url}/connectors/{name}", timeout=30)


@pytest.fixture
def other_team_connector(local_stack: LocalStack) -> Any:
    """A connector K2 does not define, as another team would run on the same worker."""
    name = unique("other-team-sink").replace("_", "-")
    topic, _dlq = make_topics(local_stack)
    config = {
        "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "iceberg.tables": "other_team.events",
        "iceberg.catalog.type": "rest",
        "iceberg.catalog.uri": local_stack.catalog_uri,
        "iceberg.control.topic": unique("other_control"),
    }
    response = requests.put(f"{local_stack.connect_url}/connectors/{name}/config", json=config, timeout=30)
    assert response.status_code == 201, response.text
    yield name
    requests.delete(f"{local_stack.connect_url}/connectors/{name}", timeout=30)


def test_bulk_actions_touch_only_connectors_k2_defines(local_stack: LocalStack, other_team_connector: str) -> None:
    other = other_team_connector
    ours = "k2-iceberg-trades"
    for setup in (("topics", "apply"), ("schemas", "register"), ("tables", "apply"), ("deploy-connectors",)):
        done = local_stack.k2(*setup)
        assert done.returncode == 0, f"{setup}: {done.stderr}"

    dry = local_stack.k2("connectors", "pause", "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == [{"connector": ours, "action": "would pause"}]
    assert other in dry.stderr and "K2 does not define" in dry.stderr
    assert connector_status(local_stack, ours)["connector"]["state"] == "RUNNING"  # type: ignore[index]

    paused = local_stack.k2("connectors", "pause", "--format", "json")
    assert json.loads(paused.stdout) == [{"connector": ours, "action": "paused"}]
    wait_for_task_state(local_stack, ours, "PAUSED")
    assert connector_status(local_stack, other)["connector"]["state"] != "PAUSED"  # type: ignore[index]
    resumed = local_stack.k2("connectors", "resume")
    assert resumed.returncode == 0, resumed.stderr
    wait_for_task_state(local_stack, ours, "RUNNING")

    # Not a terminal and no --yes: refused, nothing deleted.
    unasked = local_stack.k2("connectors", "delete")
    assert unasked.returncode == 1
    assert unasked.stderr.strip().splitlines()[-1].startswith("Error: refusing to delete k2-iceberg-trades without")
    assert connector_status(local_stack, ours) is not None and connector_status(local_stack, other) is not None

    dry_delete = local_stack.k2("connectors", "delete", "--dry-run", "--format", "json")
    assert json.loads(dry_delete.stdout) == [{"connector": ours, "action": "would delete"}]
    assert connector_status(local_stack, ours) is not None

    deleted = local_stack.k2("connectors", "delete", "--yes", "--format", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == [{"connector": ours, "action": "deleted"}]
    assert connector_status(local_stack, ours) is None
    assert connector_status(local_stack, other) is not None, "another team's connector must survive"

    nothing = local_stack.k2("connectors", "restart", "--format", "json")
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == []
    assert "No connector to restart" in nothing.stderr

    # Named, it can be acted on: the user said which one.
    named = local_stack.k2("connectors", "delete", other, "--yes", "--format", "json")
    assert json.loads(named.stdout) == [{"connector": other, "action": "deleted"}]
    assert connector_status(local_stack, other) is None
    unknown = local_stack.k2("connectors", "pause", "no-such-connector")
    assert unknown.returncode == 1 and "no connector no-such-connector" in unknown.stderr


def test_catalog_errors_in_table_commands_are_one_line(local_stack: LocalStack) -> None:
    for args in (("tables", "apply"), ("tables", "snapshots", "market_data.trades")):
        done = local_stack.k2("--catalog-uri", "http://127.0.0.1:9", *args)
        assert done.returncode == 1
        assert re.fullmatch(
            r"Error: Iceberg REST catalog at http://127\.0\.0\.1:9 is unreachable \(\w+\); start the stack with "
            r"`k2 stack up` or point --catalog-uri / K2_CATALOG_URI at a running catalog",
            done.stderr.strip(),
        ), (args, done.stderr)
    not_a_catalog = local_stack.k2("--catalog-uri", local_stack.connect_url, "tables", "apply")
    assert not_a_catalog.returncode == 1 and "did not answer as an Iceberg REST catalog" in not_a_catalog.stderr
    assert len(not_a_catalog.stderr.strip().splitlines()) == 1
