"""The maintainer keeps today's partitions small while the sink commits every second, and survives kill -9.

Trades go through the Binance stand-in, the producer, Kafka and the real Iceberg sink (1-s commits) into a
table of their own; `k2 tables maintain --watch` runs beside them as a subprocess, as `k2 stack up` runs it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from pyiceberg.table import Table

from k2.connect import rewrite
from k2.connect.maintenance import Policy, plan
from k2.connect.rewrite import HOLD_VARIABLE, REWRITE_PROPERTY
from k2.connect.tables import apply_table, rest_catalog
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.sample import generate_events

from .conftest import LocalStack, unique
from .helpers import (
    SYMBOLS,
    arrow,
    assert_table_holds_exactly,
    connector_copy,
    deploy,
    free_port,
    make_topics,
    make_trades,
    produce_cmd,
    produce_summary,
    table_spec,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


def today_events(count: int, seed: int, per_second: float = 50) -> list[dict[str, Any]]:
    """Trades timed from now on: they land in today's partitions, which only the size tiers maintain."""
    start = int(time.time() * 1000) - 60_000
    return list(generate_events(SYMBOLS, count / per_second, per_second, start_ms=start, seed=seed))


def files_per_partition(table: Table) -> Counter[str]:
    table.refresh()
    if table.current_snapshot() is None:
        return Counter()
    partitions = table.inspect.data_files()["partition"].to_pylist()
    return Counter(json.dumps(p, default=str, sort_keys=True) for p in partitions)


def watch_process(
    stack: LocalStack, table: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "k2.cli", "tables", "maintain", table, "--watch", "--interval", "2s", *extra],
        env={**stack.env, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_mid_rewrite_the_table_stays_exact_and_the_next_run_finishes(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    topic, dlq = make_topics(local_stack)
    table_name = f"{unique('maint')}.trades"
    catalog = rest_catalog(local_stack.catalog_uri)
    apply_table(catalog, table_spec(table_name))
    connector = connector_copy(tmp_path)
    deployed = deploy(local_stack, connector, topic, table_name, "--set", "COMMIT_INTERVAL_MS=1000")
    assert deployed.returncode == 0, deployed.stderr
    events = today_events(9000, seed=41)
    # Every merge waits 20 s between writing its files and committing them: the kill lands in that gap.
    maintainer = watch_process(local_stack, table_name, env={HOLD_VARIABLE: "20"})
    killed_in: list[str] = []
    try:
        with BinanceStandIn(events, rate=100) as server:
            producer = subprocess.Popen(
                [sys.executable, "-m", "k2.cli", *produce_cmd(server, topic, dlq, "--max-messages", str(len(events)))],
                env=local_stack.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert maintainer.stderr is not None
            seen: list[str] = []
            deadline = time.monotonic() + 400  # generous: the machine is shared (2 cores)
            while time.monotonic() < deadline:
                line = maintainer.stderr.readline()
                seen.append(line)
                if "committing" in line and "merging" in line:
                    killed_in.append(line.strip())
                    break
                assert line or maintainer.poll() is None, f"the maintainer exited before any merge: {seen[-5:]}"
            assert killed_in, f"no merge started within 400 s: {seen[-5:]}"
            maintainer.send_signal(signal.SIGKILL)
            maintainer.wait(timeout=30)
            out, err = producer.communicate(timeout=300)
        assert producer.returncode == 0, err
        assert produce_summary(out)["trades_acknowledged"] == len(events)
        assert wait_for_rows(local_stack, table_name, len(events), timeout=300) == len(events)
        assert_table_holds_exactly(local_stack, table_name, events)
        table = catalog.load_table(table_name)
        merges = [s for s in table.metadata.snapshots if s.summary is not None and s.summary[REWRITE_PROPERTY]]
        assert not merges, "the killed merge must not have committed"
        crowded = max(files_per_partition(table).values())
        assert crowded > Policy().tier_fanout, "the sink should have left small files to merge"

        # The next run finishes the job (the sink is idle now: every trade landed, so orphans are only ours).
        done = local_stack.k2("tables", "maintain", table_name, "--orphan-age", "0s", "--format", "json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)[0]
        assert report["files_merged"] > 0 and report["merges_abandoned"] == 0
        assert report["orphans_deleted"] >= 1, "the killed run's uncommitted file must be cleaned up"
        assert_table_holds_exactly(local_stack, table_name, events)
        after = files_per_partition(catalog.load_table(table_name))
        assert max(after.values()) < Policy().tier_fanout * 2, after
        again = local_stack.k2("tables", "maintain", table_name, "--dry-run", "--format", "json")
        assert not [row for row in json.loads(again.stdout) if row["step"] in ("merge", "compact")]
    finally:
        if maintainer.poll() is None:
            maintainer.kill()
        maintainer.wait(timeout=30)
        if maintainer.stderr is not None:
            maintainer.stderr.close()
        requests.delete(f"{local_stack.connect_url}/connectors/{connector.stem}", timeout=30)
    print(f"killed while: {killed_in[0]}; files per partition {crowded} -> {max(after.values())}")


def test_the_watcher_bounds_small_files_while_the_sink_commits_every_second(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    topic, dlq = make_topics(local_stack)
    table_name = f"{unique('maint')}.trades"
    catalog = rest_catalog(local_stack.catalog_uri)
    apply_table(catalog, table_spec(table_name))
    connector = connector_copy(tmp_path)
    deployed = deploy(local_stack, connector, topic, table_name, "--set", "COMMIT_INTERVAL_MS=1000")
    assert deployed.returncode == 0, deployed.stderr
    events = today_events(12000, seed=42)
    heartbeat = tmp_path / "heartbeat.json"
    maintainer = watch_process(local_stack, table_name, "--heartbeat", str(heartbeat))
    worst = 0
    try:
        with BinanceStandIn(events, rate=200) as server:
            producer = subprocess.Popen(
                [sys.executable, "-m", "k2.cli", *produce_cmd(server, topic, dlq, "--max-messages", str(len(events)))],
                env=local_stack.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            while producer.poll() is None:
                table = catalog.load_table(table_name)
                worst = max(worst, max(files_per_partition(table).values(), default=0))
                time.sleep(2)
            out, err = producer.communicate(timeout=60)
        assert producer.returncode == 0, err
        assert wait_for_rows(local_stack, table_name, len(events), timeout=300) == len(events)
        assert_table_holds_exactly(local_stack, table_name, events)
        status = json.loads(heartbeat.read_text())
        assert status["cycle"] >= 5 and "error" not in status["tables"][table_name], status
        table = catalog.load_table(table_name)
        merges = [s for s in table.metadata.snapshots if s.summary is not None and s.summary[REWRITE_PROPERTY]]
        assert merges, "the watcher merged nothing"
    finally:
        maintainer.kill()
        maintainer.wait(timeout=30)
        if maintainer.stderr is not None:
            maintainer.stderr.close()
        requests.delete(f"{local_stack.connect_url}/connectors/{connector.stem}", timeout=30)
    assert worst <= Policy().max_small_files_per_partition, worst
    print(f"60 s of 1-s commits: at most {worst} files in a partition; {len(merges)} merges committed")


def test_a_merge_lands_over_concurrent_appends_and_gives_up_when_its_files_were_rewritten(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    table_name = f"{unique('maint')}.trades"
    table = apply_table_and_load(catalog, table_name)
    schema = table.schema().as_arrow()
    now = datetime.now(UTC)

    def batch(first_id: int, count: int = 20) -> pa.Table:
        rows = [
            {
                "exchange": "BINANCE",
                "symbol": "BTCUSDT",
                "trade_id": first_id + i,
                "price": __import__("decimal").Decimal("1.5"),
                "quantity": __import__("decimal").Decimal("2"),
                "side": "BUY",
                "is_buyer_maker": False,
                "trade_time": now,
                "event_time": now,
                "ingest_time": now,
                "vendor_data": {},
            }
            for i in range(count)
        ]
        return pa.Table.from_pylist(rows, schema=schema)

    for index in range(8):
        catalog.load_table(table_name).append(batch(index * 100))
    policy = Policy()
    planned = plan(catalog, table_name, policy=policy)
    (merge,) = planned.merges
    assert len(merge.paths) == 8

    # An append lands between writing the merged file and committing it, as the sink's would.
    real_write = rewrite.write_rewrite

    def write_then_append(*args: Any) -> Any:
        result = real_write(*args)
        catalog.load_table(table_name).append(batch(10_000))
        return result

    def run(merges: list[rewrite.Rewrite], attempts: int) -> tuple[int, int, int, int]:
        outcome = rewrite.rewrite(catalog, table_name, merges, policy.target_file_size, attempts)
        return outcome.files_rewritten, outcome.files_written, outcome.commit_retries, len(outcome.abandoned)

    monkeypatch.setattr(rewrite, "write_rewrite", write_then_append)
    merged, written, retries, abandoned = run([merge], attempts=10)
    assert (merged, written, abandoned) == (8, 1, 0), retries
    table = catalog.load_table(table_name)
    assert table.scan().to_arrow().num_rows == 8 * 20 + 20
    assert sum(files_per_partition(table).values()) == 2

    # The same merge again: its files are gone (rewritten above), so it must give up and change nothing.
    monkeypatch.setattr(rewrite, "write_rewrite", real_write)
    before = table.current_snapshot()
    assert run([merge], attempts=3)[::3] == (0, 1)
    assert catalog.load_table(table_name).current_snapshot() == before

    # Two merges of the same files built on the same head: the second one to commit conflicts.
    for index in range(8):
        catalog.load_table(table_name).append(batch(20_000 + index * 100))
    (merge,) = plan(catalog, table_name, policy=policy).merges
    results: list[tuple[int, int, int, int]] = []
    barrier = threading.Barrier(2)

    def write_and_wait(*args: Any) -> Any:
        result = real_write(*args)
        barrier.wait(timeout=60)  # both have written their file before either commits
        return result

    monkeypatch.setattr(rewrite, "write_rewrite", write_and_wait)
    threads = [threading.Thread(target=lambda: results.append(run([merge], 5))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(r[0] for r in results) == [0, len(merge.paths)], results
    table = catalog.load_table(table_name)
    ids = table.scan().to_arrow()["trade_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 8 * 20 * 2 + 20


def apply_table_and_load(catalog: Any, identifier: str) -> Table:
    apply_table(catalog, table_spec(identifier))
    return catalog.load_table(identifier)


def test_stack_runs_the_maintainer_and_reports_it(local_stack: LocalStack) -> None:
    done = local_stack.k2("stack", "status", "--format", "json")
    rows = {row["service"]: row for row in json.loads(done.stdout)}
    assert rows["maintainer"]["state"] == "running", rows["maintainer"]
    heartbeat = Path(rows["maintainer"]["url"])
    status = json.loads(heartbeat.read_text())
    assert status["pid"] == rows["maintainer"]["pid"]


def test_the_watcher_serves_each_tables_state_as_metrics(local_stack: LocalStack, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('mm')}.trades"
    apply_table(catalog, table_spec(identifier))
    table = catalog.load_table(identifier)
    for seed in range(3):
        table.append(arrow(make_trades(200, seed=seed), table))
    port = free_port()
    watcher = watch_process(local_stack, identifier, "--metrics-port", str(port))
    try:
        values: dict[tuple[str, str], float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ("k2_table_records", identifier) not in values:
            time.sleep(1)
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    values[(sample.name, sample.labels.get("table", ""))] = sample.value
    finally:
        watcher.terminate()
        _, err = watcher.communicate(timeout=60)
    assert values.get(("k2_table_records", identifier)) == 600, err
    assert values[("k2_table_data_files", identifier)] >= 1
    assert values[("k2_table_snapshots", identifier)] >= 1
    assert 0 <= values[("k2_table_last_commit_age_seconds", identifier)] < 120
    assert values[("k2_maintainer_cycles_total", "")] >= 1
    took = values[("k2_table_maintain_seconds", identifier)]
    assert 0 < took < 60 and values[("k2_maintainer_last_cycle_duration_seconds", "")] >= took
