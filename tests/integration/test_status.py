"""`k2 status` on the real stack: every part on one screen, a `lag` field per partition, exit 1 naming
what is unhealthy (a paused connector), and healthy again once it runs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from .conftest import LocalStack

pytestmark = pytest.mark.integration


def _status(stack: LocalStack, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = stack.k2("status", "--format", "json", *extra, timeout=120)
    (found,) = json.loads(done.stdout)
    return done.returncode, found, done.stderr


def test_status_reports_every_part_and_names_what_is_unhealthy(local_stack: LocalStack) -> None:
    for step in (("topics", "apply"), ("schemas", "register"), ("tables", "apply"), ("deploy-connectors",)):
        done = local_stack.k2(*step)
        assert done.returncode == 0, (step, done.stderr)
    code, found, err = _status(local_stack)
    assert code == 0 and found["healthy"] and found["unhealthy"] == [], (found["unhealthy"], err)
    services = {s["name"]: s["state"] for s in found["services"]}
    assert {"kafka", "registry", "catalog", "connect", "maintainer"} <= set(services)
    assert found["producer"]["state"] == "not running"  # shown, and healthy without --require-producer
    lag = found["lag"]
    assert lag and {"topic", "partition", "end_offset", "committed", "lag", "group"} <= set(lag[0])
    assert all(row["lag"] >= 0 for row in lag)
    (table,) = [t for t in found["tables"] if t["name"] == "market_data.trades"]
    assert {"last_commit_age_s", "data_files", "snapshots", "bytes", "freshness_s"} <= set(table)
    assert found["dead_letters"]["topic"].endswith(".dlq") and found["dead_letters"]["count"] >= 0

    # Without a running producer, --require-producer makes the pipeline unhealthy and says why.
    code, found, err = _status(local_stack, "--require-producer")
    assert code == 1 and "producer not running" in found["unhealthy"]
    assert err.strip().splitlines()[-1].startswith("Error: unhealthy: producer not running")

    paused = local_stack.k2("connectors", "pause", "k2-iceberg-trades")
    assert paused.returncode == 0, paused.stderr
    try:
        deadline = time.monotonic() + 60
        while True:
            code, found, err = _status(local_stack)
            if code == 1 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert code == 1, found
        assert any(item.startswith("connector k2-iceberg-trades PAUSED") for item in found["unhealthy"]), found
        table = local_stack.k2("status", timeout=120)
        assert table.returncode == 1 and "UNHEALTHY" in table.stdout and "PAUSED" in table.stdout
    finally:
        local_stack.k2("connectors", "resume", "k2-iceberg-trades")
