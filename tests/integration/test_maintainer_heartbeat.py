"""The maintainer's heartbeat says whether its last cycle worked, not only that the process is alive: with
the catalog down, cycles go on (the heartbeat stays fresh) and each records what failed and since when,
and the metrics count it; the first cycle that reaches the catalog again clears it."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pyiceberg.catalog import Catalog

from k2.connect.maintainer import last_cycle_problem, watch
from k2.connect.tables import rest_catalog

from .conftest import LocalStack, unique

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_failing_cycles_are_in_the_heartbeat_and_the_metrics_until_one_works(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    away = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: the catalog is down
    uri = {"now": away}

    def catalog_factory() -> Catalog:
        return rest_catalog(uri["now"])

    heartbeat = tmp_path / "maintainer.heartbeat"
    port = _free_port()
    table = f"{unique('beat')}.trades"
    watch(catalog_factory, [table], timedelta(0), heartbeat=heartbeat, cycles=2, metrics_port=port)
    record = json.loads(heartbeat.read_text())
    assert record["cycle"] == 2 and set(record["last_cycle_problems"]) == {"catalog"}, record
    assert record["failing_since"] and record["failing_cycles"] == 2
    problem = last_cycle_problem(heartbeat)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("catalog: unavailable:") and "failing since" in problem
    page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {s.name: s.value for family in text_string_to_metric_families(page) for s in family.samples}
    assert values["k2_maintainer_last_cycle_problems"] == 1

    uri["now"] = local_stack.catalog_uri  # the catalog answers again (the table does not exist yet: nothing to do)
    watch(catalog_factory, [table], timedelta(0), heartbeat=heartbeat, cycles=1)
    record = json.loads(heartbeat.read_text())
    assert record["last_cycle_problems"] == {} and record["failing_since"] is None, record
    assert record["failing_cycles"] == 0
    assert last_cycle_problem(heartbeat) is None
