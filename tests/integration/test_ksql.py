"""`k2 ksql` against KsqlDbStandIn (ksqlDB itself only runs in Compose), and reconciliation with Iceberg.

The Iceberg side of the reconciliation is real (a table in the test stack's catalog); the ksqlDB side
is the stand-in serving candles_1m rows shaped as a ksqlDB pull query returns them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from k2.connect.tables import apply_table, load_table_specs, rest_catalog
from k2.ksql.client import EVENTS_STREAM, VERSIONS_TABLE
from k2.ksql.migrations import load_migrations
from k2.ksql.standin import KsqlDbStandIn

from .conftest import LocalStack, unique
from .test_query import arrow, expected_candles, make_trades

pytestmark = pytest.mark.integration


def k2(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2.cli", "--ksql-url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def standin() -> Iterator[KsqlDbStandIn]:
    with KsqlDbStandIn() as server:
        yield server


def test_apply_runs_migrations_in_order_and_records_each(standin: KsqlDbStandIn) -> None:
    done = k2(standin.url, "ksql", "apply", "--format", "json")
    assert done.returncode == 0, done.stderr
    migrations = load_migrations()
    assert [(r["version"], r["action"]) for r in json.loads(done.stdout)] == [
        (m.version, "applied") for m in migrations
    ]
    created = [s.split()[5] for s in standin.statements if s.startswith("CREATE") and "IF NOT EXISTS" in s]
    assert created[:2] == [EVENTS_STREAM, VERSIONS_TABLE]
    assert created[2:] == [
        "trades_stream",
        "candles_1m",
        "candles_1m_changelog",
        "candles_5m",
        "candles_5m_changelog",
        "candles_1h",
        "candles_1h_changelog",
        "volume_1h_rolling",
    ]
    assert "KAFKA_TOPIC = 'market.crypto.trades.binance'" in next(
        s for s in standin.statements if "trades_stream (" in s
    )
    assert [(e["VERSION"], e["CHECKSUM"], e["STATE"]) for e in standin.events] == [
        (m.version, m.checksum, "APPLIED") for m in migrations
    ]


def test_a_second_apply_does_nothing(standin: KsqlDbStandIn) -> None:
    assert k2(standin.url, "ksql", "apply").returncode == 0
    statements_before = len([s for s in standin.statements if s.startswith("CREATE")])
    again = k2(standin.url, "ksql", "apply", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert {r["action"] for r in json.loads(again.stdout)} == {"unchanged"}
    creates = [s for s in standin.statements if s.startswith("CREATE")][statements_before:]
    assert all(EVENTS_STREAM in s or VERSIONS_TABLE in s for s in creates), "only the idempotent metadata objects"
    listed = k2(standin.url, "ksql", "list", "--format", "json")
    assert {r["state"] for r in json.loads(listed.stdout)} == {"applied"}


def test_a_changed_applied_migration_is_refused(standin: KsqlDbStandIn) -> None:
    assert k2(standin.url, "ksql", "apply").returncode == 0
    standin.events[1]["CHECKSUM"] = "0000000000000000"  # as if V000002 had been applied from another text
    refused = k2(standin.url, "ksql", "apply")
    assert refused.returncode == 1
    assert "V000002__create_candles_1m.sql changed after being applied" in refused.stderr
    listed = k2(standin.url, "ksql", "list", "--format", "json")
    assert listed.returncode == 1
    assert [r["state"] for r in json.loads(listed.stdout)][1] == "changed"


def test_a_failing_statement_shows_ksqldbs_message_and_the_statement(standin: KsqlDbStandIn) -> None:
    standin.fail_when["candles_5m_changelog"] = "Invalid Aggregate: LATEST_BY_OFFSET does not accept DECIMAL"
    done = k2(standin.url, "ksql", "apply")
    assert done.returncode == 1
    message = done.stderr.strip()
    assert message.startswith("Error: V000003__create_candles_5m.sql line 34: ksqlDB refused it (HTTP 400):")
    assert "Invalid Aggregate: LATEST_BY_OFFSET does not accept DECIMAL" in message
    assert "statement: CREATE TABLE IF NOT EXISTS candles_5m_changelog" in message
    assert [e["STATE"] for e in standin.events] == ["APPLIED", "APPLIED", "ERROR"]
    del standin.fail_when["candles_5m_changelog"]
    resumed = k2(standin.url, "ksql", "apply", "--format", "json")
    assert [r["action"] for r in json.loads(resumed.stdout)] == [
        "unchanged",
        "unchanged",
        "applied",
        "applied",
        "applied",
    ]


def test_dry_run_prints_statements_and_sends_none(standin: KsqlDbStandIn) -> None:
    done = k2(standin.url, "ksql", "apply", "--dry-run", "-d", "trades_topic=market.crypto.trades.other")
    assert done.returncode == 0
    assert "KAFKA_TOPIC = 'market.crypto.trades.other'" in done.stdout
    assert "-- V000005__create_rolling_volume.sql" in done.stdout
    assert standin.statements == []


def test_query_streams_rows_up_to_the_limit(standin: KsqlDbStandIn) -> None:
    rows = [["BTCUSDT", 1_795_000_000_000 + i * 60_000, "1.5", i] for i in range(10)]
    standin.tables["candles_1m_changelog"] = (["SYMBOL", "INTERVAL_START", "CLOSE", "TRADE_COUNT"], [], rows)
    done = k2(standin.url, "ksql", "query", "SELECT * FROM candles_1m_changelog EMIT CHANGES;", "--limit", "3",
              "--format", "jsonl")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [
        {"symbol": "BTCUSDT", "interval_start": r[1], "close": "1.5", "trade_count": r[3]} for r in rows[:3]
    ]
    unknown = k2(standin.url, "ksql", "query", "SELECT * FROM nope;")
    assert unknown.returncode == 1 and "NOPE does not exist." in unknown.stderr


def test_info_and_connection_refused(standin: KsqlDbStandIn) -> None:
    info = k2(standin.url, "ksql", "info", "--format", "json")
    assert json.loads(info.stdout)[0]["version"] == "0.29.0"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    refused = k2(closed, "ksql", "apply")
    assert refused.returncode == 1
    assert f"ksqlDB at {closed} is unreachable" in refused.stderr and "docker compose up" in refused.stderr


def _ksql_rows(candles: list[dict[str, Any]]) -> list[list[Any]]:
    """Candles as ksqlDB's pull query returns them: WINDOWSTART-based interval_start in epoch ms, and a
    VWAP carrying more decimals than Iceberg's 8 (ksqlDB divides with its own scale)."""
    rows = []
    for c in candles:
        start = int(datetime.fromisoformat(c["interval_start"].replace("Z", "+00:00")).timestamp() * 1000)
        vwap = str(Decimal(c["quote_volume"]) / Decimal(c["volume"]))
        rows.append([c["symbol"], start, c["open"], c["high"], c["low"], c["close"], c["volume"], c["quote_volume"],
                     vwap, c["trade_count"]])  # fmt: skip
    return rows


def test_reconcile_agrees_and_then_reports_one_changed_candle(local_stack: LocalStack, standin: KsqlDbStandIn) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('rec')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    trades = make_trades(1500, seed=41)
    table.append(arrow(trades, table))
    since, until = "2026-11-20T00:00:00Z", "2026-11-20T06:00:00Z"
    window = [t for t in trades if t["trade_time"].isoformat() < "2026-11-20T06:00:00"]
    candles = [c for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT") for c in expected_candles(window, s, "1m")]
    columns = [
        "SYMBOL",
        "INTERVAL_START",
        "OPEN",
        "HIGH",
        "LOW",
        "CLOSE",
        "VOLUME",
        "QUOTE_VOLUME",
        "VWAP",
        "TRADE_COUNT",
    ]
    rows = _ksql_rows(candles)
    standin.tables["candles_1m"] = (columns, [], rows)
    args = ["ksql", "reconcile", "--since", since, "--until", until, "--table", identifier]
    agreed = k2(standin.url, *args, env=local_stack.env)
    assert agreed.returncode == 0, agreed.stderr
    assert f"agree on {len(candles)} 1m candles" in agreed.stdout

    rows[7][5] = str(Decimal(rows[7][5]) + Decimal("0.01"))  # one close differs
    standin.tables["candles_1m"] = (columns, [], rows)
    differs = k2(standin.url, *args, "--format", "json", env=local_stack.env)
    assert differs.returncode == 1
    reported = json.loads(differs.stdout)
    assert len(reported) == 1 and reported[0]["field"] == "close" and reported[0]["symbol"] == rows[7][0]
    assert "1 difference(s) between ksqlDB and Iceberg candles" in differs.stderr
