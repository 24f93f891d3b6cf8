"""`k2 query --as-of T` reads the snapshot that was current on the table's main branch at T.

The table (built with pyiceberg on the real catalog) has a branch `audit` with its own commit after
main's, and a rollback on main: --as-of must follow main's snapshot log, never the newest snapshot by
time (the branch's) nor a snapshot main was rolled back from.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from k2.connect.tables import apply_table, load_table_specs, rest_catalog

from .conftest import LocalStack, unique
from .helpers import arrow, make_trades

pytestmark = pytest.mark.integration

# Batch sizes whose sums tell every combination apart.
SIZES = {"a": 10, "b": 20, "c": 40, "audit": 80, "e": 160}


def moment() -> str:
    """Now, as --as-of takes it; then a pause so that the next commit is strictly later."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    time.sleep(1.1)
    return now


@pytest.fixture(scope="module")
def history(local_stack: LocalStack) -> dict[str, Any]:
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('q_asof')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    batches = {name: make_trades(size, seed=60 + index) for index, (name, size) in enumerate(SIZES.items())}
    times = {"created": moment()}
    ids = {}
    for name in ("a", "b"):
        table.append(arrow(batches[name], table))
        ids[name] = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
        times[name] = moment()
    table.manage_snapshots().create_branch(ids["b"], "audit").commit()
    table.append(arrow(batches["c"], table))
    ids["c"] = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    times["c"] = moment()
    table.append(arrow(batches["audit"], table), branch="audit")  # newer than every main snapshot so far
    times["audit"] = moment()
    table.manage_snapshots().rollback_to_snapshot(ids["b"]).commit()  # main is b again; c is off main
    times["rollback"] = moment()
    table.append(arrow(batches["e"], table))
    times["e"] = moment()
    return {"identifier": identifier, "times": times, "ids": ids, "table": table}


def count_as_of(local_stack: LocalStack, identifier: str, when: str) -> Any:
    done = local_stack.k2("query", f"select count(*) as n from {identifier}", "--as-of", when, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]["n"]


@pytest.mark.parametrize(
    ("after", "batches"),
    [
        ("a", ["a"]),
        ("b", ["a", "b"]),
        ("c", ["a", "b", "c"]),
        ("audit", ["a", "b", "c"]),  # the branch's commit is the newest snapshot, but not main's
        ("rollback", ["a", "b"]),  # c was main's head until the rollback
        ("e", ["a", "b", "e"]),
    ],
)
def test_as_of_reads_mains_snapshot_at_that_time(
    local_stack: LocalStack, history: dict[str, Any], after: str, batches: list[str]
) -> None:
    got = count_as_of(local_stack, history["identifier"], history["times"][after])
    assert got == sum(SIZES[b] for b in batches)


def test_snapshots_name_the_branch_heads_and_snapshot_reads_a_branch(
    local_stack: LocalStack, history: dict[str, Any]
) -> None:
    identifier = history["identifier"]
    listed = json.loads(local_stack.k2("tables", "snapshots", identifier, "--format", "json").stdout)
    heads = {row["refs"]: row for row in listed if row["refs"]}
    assert set(heads) == {"main", "audit"} and heads["main"]["current"] and not heads["audit"]["current"]
    audit = local_stack.k2(
        "query",
        f"select count(*) as n from {identifier}",
        "--snapshot",
        str(heads["audit"]["snapshot_id"]),
        "--format",
        "json",
    )
    assert json.loads(audit.stdout)[0]["n"] == SIZES["a"] + SIZES["b"] + SIZES["audit"]
    now = count_as_of(local_stack, identifier, datetime.now(UTC).isoformat())
    assert now == SIZES["a"] + SIZES["b"] + SIZES["e"]


def test_outside_the_retained_history_is_one_line(local_stack: LocalStack, history: dict[str, Any]) -> None:
    identifier = history["identifier"]
    before = local_stack.k2("query", f"select count(*) from {identifier}", "--as-of", history["times"]["created"])
    assert before.returncode == 1 and len(before.stderr.strip().splitlines()) == 1, before.stderr
    assert f"{identifier} has no snapshot on its main branch at" in before.stderr
    assert "retained history starts at" in before.stderr
    # Expiring main's first snapshots cuts its snapshot log: the time after `a` is no longer known.
    table = history["table"]
    table.maintenance.expire_snapshots().by_ids([history["ids"]["a"]]).commit()
    expired = local_stack.k2("query", f"select count(*) from {identifier}", "--as-of", history["times"]["a"])
    assert expired.returncode == 1 and "retained history starts at" in expired.stderr, expired.stderr
    assert count_as_of(local_stack, identifier, history["times"]["e"]) == SIZES["a"] + SIZES["b"] + SIZES["e"]
