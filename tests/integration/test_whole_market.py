"""The whole market's shape on the real sink: a thousand symbols in one commit window, one-symbol reads bounded.

The Iceberg sink keeps one open Parquet writer per partition value until each commit (iceberg
PartitionedFanoutWriter): with identity(symbol) partitions, ~800 symbols in one window ran Connect's 1 GB
heap out (issue 19). The declared layout (connect/tables.toml) must land any number of symbols at the test
stack's heap, and DuckDB must still read only a bounded part of the table for one symbol.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from k2.connect.tables import apply_table, load_table_specs, rest_catalog, transform
from k2.producer.sample import market_symbols, write_frames
from k2.query.engine import Lake

from .conftest import LocalStack, unique
from .helpers import assert_table_holds_exactly, connector_copy, deploy, make_topics, wait_for_rows

pytestmark = pytest.mark.integration

SYMBOL_COUNT = 1200
TRADES_PER_SYMBOL = 3


def many_symbol_events() -> list[dict[str, Any]]:
    """Three trades of each of 1,200 symbols within one second: every symbol in one commit window."""
    start = 1_790_000_000_000
    events = []
    for index, symbol in enumerate(market_symbols(SYMBOL_COUNT)):
        for n in range(TRADES_PER_SYMBOL):
            moment = start + (index * TRADES_PER_SYMBOL + n) % 1000
            events.append(
                {
                    "e": "trade",
                    "E": moment + 1,
                    "s": symbol,
                    "t": 10_000 * index + n,
                    "p": f"{1 + index % 97}.{n:02d}000000",
                    "q": f"0.{index % 10}{n}100000",
                    "T": moment,
                    "m": n % 2 == 0,
                    "M": True,
                }
            )
    return events


def files_read(lake: Lake, sql: str) -> int:
    """How many data files DuckDB's Iceberg scan opened for ``sql`` (its EXPLAIN ANALYZE profile)."""
    profile = lake.con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]
    found = re.search(r"Total Files Read:\s*(\d+)", profile)
    assert found, f"no file count in DuckDB's profile:\n{profile}"
    return int(found.group(1))


@pytest.fixture
def sink(local_stack: LocalStack, tmp_path: Path) -> Iterator[dict[str, str]]:
    topic, dlq = make_topics(local_stack)
    table = f"{unique('wm')}.trades"
    apply_table(rest_catalog(local_stack.catalog_uri), replace_identifier(table))
    path = connector_copy(tmp_path)
    yield {"topic": topic, "dlq": dlq, "table": table, "file": str(path), "name": path.stem}
    requests.delete(f"{local_stack.connect_url}/connectors/{path.stem}", timeout=30)


def replace_identifier(identifier: str) -> Any:
    from dataclasses import replace

    return replace(load_table_specs()["market_data.trades"], identifier=identifier)


def test_a_thousand_symbols_in_one_commit_window_land_and_one_symbol_reads_few_files(
    local_stack: LocalStack, sink: dict[str, str], tmp_path: Path
) -> None:
    events = many_symbol_events()
    frames = tmp_path / "many.jsonl"
    write_frames(frames, iter(events))
    produced = local_stack.k2(
        "produce", "--replay", str(frames), "--topic", sink["topic"], "--dlq-topic", sink["dlq"], "--format", "json"
    )
    assert produced.returncode == 0, produced.stderr
    # The whole backlog is in the topic before the sink starts: its first commit window holds every symbol.
    deployed = deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"])
    assert deployed.returncode == 0, deployed.stderr
    assert wait_for_rows(local_stack, sink["table"], len(events), timeout=300) == len(events)
    assert_table_holds_exactly(local_stack, sink["table"], events)
    status = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/status", timeout=30).json()
    assert status["connector"]["state"] == "RUNNING"
    assert [task["state"] for task in status["tasks"]] == ["RUNNING"], status

    # Files per commit are bounded by the layout, not by the 1,200 symbols.
    spec = load_table_specs()["market_data.trades"]
    assert ("symbol", "identity") not in [(source, text) for source, text, _ in spec.partition]
    buckets = 1
    for _, text, _ in spec.partition:
        if text.startswith("bucket"):
            buckets *= transform(text).num_buckets  # type: ignore[attr-defined]
    table = rest_catalog(local_stack.catalog_uri).load_table(sink["table"])
    files = table.inspect.files()
    per_partition: dict[str, int] = {}
    for value in files["partition"].to_pylist():
        key = json.dumps(value, default=str, sort_keys=True)
        per_partition[key] = per_partition.get(key, 0) + 1
    assert len(per_partition) <= buckets, per_partition  # one day: at most one partition per bucket
    # One commit round, or two if the backlog straddled a round: never a file per symbol.
    assert files.num_rows <= 2 * buckets, files.num_rows

    # One symbol: DuckDB opens only what its partition leaves (the files of its bucket).
    lake = Lake(local_stack.catalog_uri)
    symbol = market_symbols(SYMBOL_COUNT)[SYMBOL_COUNT // 2]
    one = files_read(lake, f"SELECT count(*) FROM lake.{sink['table']} WHERE symbol = '{symbol}'")
    everything = files_read(lake, f"SELECT count(*) FROM lake.{sink['table']} WHERE price > 0")
    assert everything == files.num_rows
    assert one <= max(per_partition.values())
    if buckets > 1:
        assert one < everything
    count = lake.con.execute(f"SELECT count(*) FROM lake.{sink['table']} WHERE symbol = '{symbol}'").fetchone()
    assert count == (TRADES_PER_SYMBOL,)
