"""`k2 ksql` against KsqlDbStandIn (ksqlDB itself only runs in Compose), and reconciliation with Iceberg.

The Iceberg side of the reconciliation is real (a table in the test stack's catalog); the ksqlDB side
is the stand-in serving candles_1m rows shaped as a ksqlDB pull query returns them.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from k2.connect.tables import apply_table, load_table_specs, rest_catalog
from k2.ksql.client import EVENTS_STREAM, VERSIONS_TABLE, KsqlClient, metadata_statements
from k2.ksql.migrations import Migration, load_migrations, resolve

from .conftest import LocalStack, unique
from .helpers import arrow, expected_candles, make_trades
from .ksql_standin import KsqlDbStandIn

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


def _file_md5(migration: Migration) -> str:
    return hashlib.md5(migration.path.read_bytes(), usedforsecurity=False).hexdigest()


def test_apply_records_each_migration_as_ksql_migrations_does(standin: KsqlDbStandIn) -> None:
    done = k2(standin.url, "ksql", "apply", "--format", "json")
    assert done.returncode == 0, done.stderr
    migrations = load_migrations()
    assert [(r["version"], r["action"]) for r in json.loads(done.stdout)] == [
        (m.version, "applied") for m in migrations
    ]
    # The record's stream and table exactly as `ksql-migrations initialize-metadata` creates them
    # (InitializeMigrationCommand), on the topics named after the server's service id (MigrationConfig).
    stream, table = metadata_statements("default_")
    assert standin.statements[:2] == [stream, table]
    assert "KAFKA_TOPIC='default_ksql_MIGRATION_EVENTS'" in stream
    assert "version_key STRING KEY, version STRING, name STRING, state STRING, checksum STRING, " in stream
    created = [s.split()[5] for s in standin.statements if s.startswith("CREATE") and "IF NOT EXISTS" in s]
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
    # Per state change, CURRENT then the version (MetadataUtil.writeRow): RUNNING, then MIGRATED.
    events = standin.events(EVENTS_STREAM)
    expected = []
    previous = "<none>"
    for m in migrations:
        number = str(int(m.version))
        for state in ("RUNNING", "MIGRATED"):
            for key in ("CURRENT", number):
                expected.append((key, number, m.name.replace("_", " "), state, _file_md5(m), previous, "N/A"))
        previous = number
    got = [(e["VERSION_KEY"], e["VERSION"], e["NAME"], e["STATE"], e["CHECKSUM"], e["PREVIOUS"], e["ERROR_REASON"])
           for e in events]  # fmt: skip
    assert got == expected
    assert all(e["STARTED_ON"].isdigit() for e in events)
    assert [e["COMPLETED_ON"] == "" for e in events] == [e["STATE"] == "RUNNING" for e in events]
    # The versions table was just created: its first pull queries were refused as not ready, and retried.
    assert standin.objects[VERSIONS_TABLE].pull_attempts > standin.not_ready_queries


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
    recorded = dict(standin.events(EVENTS_STREAM)[-1 - 4 * 3])  # V000002's MIGRATED row
    assert (recorded["VERSION_KEY"], recorded["STATE"]) == ("2", "MIGRATED")
    standin.events(EVENTS_STREAM).append(dict(recorded, CHECKSUM="0" * 32))  # applied from another text
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
    line = next(s.line for s in load_migrations()[2].statements if "candles_5m_changelog" in s.text)
    assert message.startswith(f"Error: V000003__create_candles_5m.sql line {line}: ksqlDB refused it (HTTP 400):")
    assert "Invalid Aggregate: LATEST_BY_OFFSET does not accept DECIMAL" in message
    assert "statement: CREATE TABLE IF NOT EXISTS candles_5m_changelog" in message
    versions = [e for e in standin.events(EVENTS_STREAM) if e["VERSION_KEY"] != "CURRENT"]
    assert [(e["VERSION"], e["STATE"]) for e in versions] == [
        ("1", "RUNNING"), ("1", "MIGRATED"), ("2", "RUNNING"), ("2", "MIGRATED"), ("3", "RUNNING"), ("3", "ERROR")
    ]  # fmt: skip
    assert versions[-1]["ERROR_REASON"].startswith("Failed to execute sql: CREATE TABLE IF NOT EXISTS candles_5m_")
    del standin.fail_when["candles_5m_changelog"]
    resumed = k2(standin.url, "ksql", "apply", "--format", "json")
    assert [r["action"] for r in json.loads(resumed.stdout)] == [
        "unchanged",
        "unchanged",
        "applied",
        "applied",
        "applied",
    ]
    retried = [e for e in standin.events(EVENTS_STREAM) if e["VERSION_KEY"] == "3"][-1]
    assert (retried["STATE"], retried["PREVIOUS"]) == ("MIGRATED", "2")


def test_migrations_applied_by_ksql_migrations_are_continued(standin: KsqlDbStandIn) -> None:
    """V000001 and V000002 applied by ksqlDB's own tool: k2 sees them and applies the rest after them."""
    migrations = load_migrations()
    client = KsqlClient(standin.url)
    for metadata in metadata_statements("default_"):
        client.execute(metadata)
    previous = "<none>"
    for migration in migrations[:2]:
        for statement in resolve(migration, {"trades_topic": "market.crypto.trades.binance"}):
            client.execute(statement.text)
        number = str(int(migration.version))
        for state, completed in (("RUNNING", ""), ("MIGRATED", "1795000000000")):
            for key in ("CURRENT", number):
                standin.events(EVENTS_STREAM).append({
                    "VERSION_KEY": key, "VERSION": number, "NAME": migration.description, "STATE": state,
                    "CHECKSUM": _file_md5(migration), "STARTED_ON": "1794999999000", "COMPLETED_ON": completed,
                    "PREVIOUS": previous, "ERROR_REASON": "N/A",
                })  # fmt: skip
        previous = number
    listed = k2(standin.url, "ksql", "list", "--format", "json")
    assert [r["state"] for r in json.loads(listed.stdout)] == ["applied", "applied", "pending", "pending", "pending"]
    done = k2(standin.url, "ksql", "apply", "--format", "json")
    assert [r["action"] for r in json.loads(done.stdout)] == ["unchanged", "unchanged", "applied", "applied", "applied"]
    first_new = next(e for e in standin.events(EVENTS_STREAM) if e["VERSION_KEY"] == "3")
    assert first_new["PREVIOUS"] == "2"


def test_drop_then_apply_recreates_everything(standin: KsqlDbStandIn) -> None:
    assert k2(standin.url, "ksql", "apply").returncode == 0
    dropped = k2(standin.url, "ksql", "drop", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert standin.objects == {}
    assert "market.crypto.trades.binance" not in standin.deleted_topics, "the trades topic is never deleted"
    assert {"default_ksql_MIGRATION_EVENTS", "market.crypto.candles.binance.1m"} <= set(standin.deleted_topics)
    sent_before = len(standin.statements)
    again = k2(standin.url, "ksql", "apply", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert {r["action"] for r in json.loads(again.stdout)} == {"applied"}
    recreated = [s.split()[5] for s in standin.statements[sent_before:] if s.startswith("CREATE")]
    assert len(recreated) == 2 + 8 and "candles_1h_changelog" in recreated


def test_drop_refuses_without_yes_and_dry_run_lists_the_order(standin: KsqlDbStandIn) -> None:
    refused = k2(standin.url, "ksql", "drop")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    dry = k2(standin.url, "ksql", "drop", "--dry-run", "--format", "json")
    assert dry.returncode == 0 and standin.statements == []
    lines = [row["statement"] for row in json.loads(dry.stdout)]
    assert lines[0] == "DROP TABLE IF EXISTS volume_1h_rolling DELETE TOPIC;"
    assert "DROP STREAM IF EXISTS trades_stream;" in lines  # a stream over the trades topic: no DELETE TOPIC
    assert lines[-2:] == [
        "DROP TABLE IF EXISTS MIGRATION_SCHEMA_VERSIONS DELETE TOPIC;",
        "DROP STREAM IF EXISTS MIGRATION_EVENTS DELETE TOPIC;",
    ]


def test_a_server_that_never_serves_the_record_fails_in_one_line(standin: KsqlDbStandIn) -> None:
    standin.not_ready_queries = 10**6
    done = k2(standin.url, "ksql", "apply", "--timeout", "3")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: ksqlDB could not serve a pull query for 3s (Cannot determine which host contains the required "
        "partitions): the table's query is still starting; run the command again in a minute"
    ]


def test_dry_run_prints_statements_and_sends_none(standin: KsqlDbStandIn) -> None:
    done = k2(standin.url, "ksql", "apply", "--dry-run", "-d", "trades_topic=market.crypto.trades.other",
              "--format", "json")  # fmt: skip
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    assert any("KAFKA_TOPIC = 'market.crypto.trades.other'" in row["statement"] for row in rows)
    assert "V000005__create_rolling_volume.sql" in {row["file"] for row in rows}
    assert standin.statements == []


def test_query_streams_rows_up_to_the_limit_with_exact_numbers(standin: KsqlDbStandIn) -> None:
    # ksqlDB writes DECIMALs as plain JSON numbers with every digit: a float would end this one in ...813.
    rows = [["BTCUSDT", 1_795_000_000_000 + i * 60_000, Decimal("4018512.1234567812345678"), i] for i in range(10)]
    standin.tables["candles_1m_changelog"] = (["SYMBOL", "INTERVAL_START", "VOLUME", "TRADE_COUNT"], [], rows)
    done = k2(standin.url, "ksql", "query", "SELECT * FROM candles_1m_changelog EMIT CHANGES;", "--limit", "3",
              "--format", "jsonl")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [
        {"symbol": "BTCUSDT", "interval_start": r[1], "volume": "4018512.1234567812345678", "trade_count": r[3]}
        for r in rows[:3]
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


KSQL_COLUMNS = ["SYMBOL", "WINDOWSTART", "WINDOWEND", "INTERVAL_START", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME",
                "QUOTE_VOLUME", "VWAP", "TRADE_COUNT"]  # fmt: skip


def _ksql_rows(candles: list[dict[str, Any]]) -> list[list[Any]]:
    """Candles as ksqlDB's pull query on candles_1m returns them (key, WINDOWSTART, WINDOWEND, then the
    values): exact DECIMALs, and vwap computed as the migration does, both sums to DOUBLE, then divided."""
    rows = []
    for c in candles:
        start = int(datetime.fromisoformat(c["interval_start"].replace("Z", "+00:00")).timestamp() * 1000)
        vwap = float(Decimal(c["quote_volume"])) / float(Decimal(c["volume"]))
        rows.append([c["symbol"], start, start + 60_000, start] + [Decimal(c[k]) for k in ("open", "high", "low",
                    "close", "volume", "quote_volume")] + [vwap, c["trade_count"]])  # fmt: skip
    return rows


def test_reconcile_agrees_within_the_stated_vwap_precision_and_reports_differences(
    local_stack: LocalStack, standin: KsqlDbStandIn
) -> None:
    catalog = rest_catalog(local_stack.catalog_uri)
    identifier = f"{unique('rec')}.trades"
    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=identifier))
    table = catalog.load_table(identifier)
    trades = make_trades(1500, seed=41)
    table.append(arrow(trades, table))
    since, until = "2026-11-20T00:00:00Z", "2026-11-20T06:00:00Z"
    window = [t for t in trades if t["trade_time"].isoformat() < "2026-11-20T06:00:00"]
    candles = [c for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT") for c in expected_candles(window, s, "1m")]
    rows = _ksql_rows(candles)
    standin.tables["candles_1m"] = (KSQL_COLUMNS, [], rows)
    args = ["ksql", "reconcile", "--since", since, "--until", until, "--table", identifier]
    agreed = k2(standin.url, *args, env=local_stack.env)
    assert agreed.returncode == 0, agreed.stderr
    assert f"agree on {len(candles)} 1m candles" in agreed.stderr

    close, vwap = KSQL_COLUMNS.index("CLOSE"), KSQL_COLUMNS.index("VWAP")
    rows[7][close] += Decimal("0.01")  # one close differs
    rows[9][vwap] = None  # an expression that failed in ksqlDB: written as NULL
    rows[11][vwap] *= 1 + 1e-13  # a VWAP beyond the stated precision
    standin.tables["candles_1m"] = (KSQL_COLUMNS, [], rows)
    differs = k2(standin.url, *args, "--format", "json", env=local_stack.env)
    assert differs.returncode == 1, differs.stderr
    reported = json.loads(differs.stdout)
    when = [datetime.fromtimestamp(rows[i][1] / 1000, UTC).isoformat().replace("+00:00", "Z") for i in (7, 9, 11)]
    assert [(r["symbol"], r["interval_start"], r["field"], r["note"][:18]) for r in reported] == sorted([
        (rows[7][0], when[0], "close", "differs"),
        (rows[9][0], when[1], "vwap", "NULL in ksqlDB"),
        (rows[11][0], when[2], "vwap", "differs by 1.0e-13"),
    ])  # fmt: skip
    assert "3 difference(s) between ksqlDB and Iceberg candles" in differs.stderr
