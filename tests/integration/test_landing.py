"""Landing trades in Iceberg through the real Kafka Connect worker and Iceberg sink (connect/)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
import requests
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import StringType

from k2.connect.tables import apply_table, rest_catalog
from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn

from .conftest import LocalStack, unique
from .helpers import (
    BAD_FRAMES,
    SYMBOLS,
    assert_table_holds_exactly,
    connector_copy,
    deploy,
    expected_candles,
    free_port,
    make_events,
    make_topics,
    normalised,
    pid_of,
    produce_cmd,
    produce_summary,
    query,
    table_spec,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(local_stack: LocalStack, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A unique topic, table and connector; the connector is deleted afterwards."""
    topic, dlq = make_topics(local_stack)
    namespace = unique("it")
    table = f"{namespace}.trades"
    apply_table(rest_catalog(local_stack.catalog_uri), table_spec(table))
    path = connector_copy(tmp_path)
    yield {"topic": topic, "dlq": dlq, "table": table, "file": str(path), "name": path.stem}
    requests.delete(f"{local_stack.connect_url}/connectors/{path.stem}", timeout=30)


def test_trades_land_exactly_once_with_exact_values_and_partitions(
    local_stack: LocalStack, sink: dict[str, str]
) -> None:
    deployed = deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"])
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)[0]["result"] == "Created"
    events = make_events(2500, seed=21)
    script = Script(disconnect_at={900}, overlap_on_reconnect=60, bad_frames={50: list(BAD_FRAMES.values())})
    with BinanceStandIn(events, rate=1500, script=script) as server:
        done = local_stack.k2(*produce_cmd(server, sink["topic"], sink["dlq"], "--max-messages", "2500"))
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["duplicates_dropped"] > 0 and summary["dead_lettered"] == len(BAD_FRAMES)
    assert wait_for_rows(local_stack, sink["table"], 2500) == 2500
    assert_table_holds_exactly(local_stack, sink["table"], events)
    # k2 candles on the landed table equals candles computed from the input in Python decimals.
    as_trades = [
        {
            "symbol": e["s"],
            "trade_id": e["t"],
            "price": Decimal(e["p"]),
            "quantity": Decimal(e["q"]),
            "trade_time": datetime.fromtimestamp(e["T"] / 1000, UTC),
        }
        for e in events
    ]
    for symbol in SYMBOLS:
        shown = local_stack.k2(
            "candles", "--symbols", symbol, "--interval", "1m", "--table", sink["table"], "--format", "json"
        )
        assert shown.returncode == 0, shown.stderr
        assert normalised(json.loads(shown.stdout)) == normalised(expected_candles(as_trades, symbol, "1m"))
    table = rest_catalog(local_stack.catalog_uri).load_table(sink["table"])
    partitions = {
        (p["trade_day"].isoformat(), p["symbol_bucket"]) for p in table.inspect.partitions()["partition"].to_pylist()
    }
    days = {datetime.fromtimestamp(e["T"] / 1000, UTC).date().isoformat() for e in events}
    # Each row sits in its day and its symbol's bucket, computed by Iceberg's own bucket transform.
    bucket = BucketTransform(16).transform(StringType())
    assert partitions == {(day, bucket(symbol)) for day in days for symbol in SYMBOLS}


def meme_coin_events(count: int, seed: int) -> list[dict[str, Any]]:
    """PEPEUSDT-like trades: prices near 10^-5, quantities from 10^10 to 9.2x10^12 units (Binance's LOT_SIZE
    maxQty for PEPEUSDT), and a few at the widest value the contract holds, 10^20 - 10^-8."""
    rng = random.Random(seed)
    start = 1_790_000_000_000
    events = []
    for index in range(count):
        widest = index % 50 == 7
        quantity = "99999999999999999999.99999999" if widest else f"{rng.randrange(10**18, 922 * 10**18) / 10**8:.8f}"
        events.append(
            {
                "e": "trade",
                "E": start + index * 20 + 1,
                "s": "PEPEUSDT",
                "t": 5_000_000 + index,
                "p": "0.00000001" if widest else f"0.0000{rng.randrange(800, 1500)}",
                "q": quantity,
                "T": start + index * 20,
                "m": rng.random() < 0.5,
                "M": True,
            }
        )
    return events


def test_meme_coin_quantities_land_exactly_and_sum_without_overflow(
    local_stack: LocalStack, sink: dict[str, str]
) -> None:
    """Quantities past decimal(18,8) (10^10 units) are trades, not dead letters, all the way to k2 volume."""
    assert deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"]).returncode == 0
    events = meme_coin_events(300, seed=8)
    with BinanceStandIn(events, rate=1000) as server:
        args = produce_cmd(server, sink["topic"], sink["dlq"], "--max-messages", "300")
        args[args.index("--symbols") + 1] = "PEPEUSDT"
        done = local_stack.k2(*args)
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["dead_lettered"] == 0 and summary["trades_acknowledged"] == 300
    assert wait_for_rows(local_stack, sink["table"], 300) == 300
    assert_table_holds_exactly(local_stack, sink["table"], events)

    quantities = [Decimal(str(e["q"])) for e in events]
    with localcontext(prec=80):  # Python's default 28 digits would round these sums; DuckDB's must not
        total = sum(quantities, Decimal(0))
        quote = sum((Decimal(str(e["p"])) * Decimal(str(e["q"])) for e in events), Decimal(0))
    assert sum(q for q in quantities if q > Decimal("9.99e19")) >= Decimal("6e20")  # past decimal(28,8) itself
    day = datetime.fromtimestamp(int(events[0]["T"]) / 1000, UTC).date()
    since, until = f"{day}T00:00:00Z", f"{day + timedelta(days=1)}T00:00:00Z"
    shown = local_stack.k2("volume", "--since", since, "--until", until, "--table", sink["table"], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert (Decimal(row["volume"]), Decimal(row["quote_volume"]), row["trade_count"]) == (total, quote, 300)
    as_trades = [
        {
            "symbol": e["s"],
            "trade_id": e["t"],
            "price": Decimal(str(e["p"])),
            "quantity": Decimal(str(e["q"])),
            "trade_time": datetime.fromtimestamp(int(e["T"]) / 1000, UTC),
        }
        for e in events
    ]
    candles = local_stack.k2(
        "candles", "--symbols", "PEPEUSDT", "--interval", "1m", "--table", sink["table"], "--format", "json"
    )
    assert candles.returncode == 0, candles.stderr
    with localcontext(prec=80):
        expected = normalised(expected_candles(as_trades, "PEPEUSDT", "1m"))
    assert normalised(json.loads(candles.stdout)) == expected


def _kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}/stat").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.2)


def test_exactly_once_when_connect_is_killed_and_the_broker_restarts(
    local_stack: LocalStack, sink: dict[str, str]
) -> None:
    assert deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"]).returncode == 0
    events = make_events(6000, seed=22)
    with BinanceStandIn(events, rate=300) as server:
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "k2.cli",
                *produce_cmd(server, sink["topic"], sink["dlq"], "--max-messages", "6000"),
            ],
            env=local_stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(6)  # at least one commit has happened
        _kill(pid_of(local_stack, "connect"), signal.SIGKILL)
        assert local_stack.k2("stack", "up", "--timeout", "300").returncode == 0
        time.sleep(4)
        _kill(pid_of(local_stack, "kafka"), signal.SIGTERM)
        assert local_stack.k2("stack", "up", "--timeout", "300").returncode == 0
        out, err = producer.communicate(timeout=300)
    assert producer.returncode == 0, err
    assert produce_summary(out)["trades_acknowledged"] == 6000
    status = local_stack.k2("connectors", "status", sink["name"], "--format", "json")
    assert wait_for_rows(local_stack, sink["table"], 6000, timeout=300) == 6000, status.stdout
    assert_table_holds_exactly(local_stack, sink["table"], events)


def test_redeploying_an_unchanged_config_changes_nothing(local_stack: LocalStack, sink: dict[str, str]) -> None:
    assert deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"]).returncode == 0
    before = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/status", timeout=30).json()
    # Same variables (the control topic is the only generated one: reuse the deployed value).
    config = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/config", timeout=30).json()
    again = local_stack.k2(
        "deploy-connectors",
        sink["file"],
        "--set",
        f"TRADES_TOPIC={sink['topic']}",
        "--set",
        f"ICEBERG_TABLE={sink['table']}",
        "--set",
        f"CONTROL_TOPIC={config['iceberg.control.topic']}",
        "--set",
        "COMMIT_INTERVAL_MS=3000",
        "--format",
        "json",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["result"] == "Unchanged"
    after = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/status", timeout=30).json()
    assert after["tasks"] == before["tasks"], "an unchanged redeploy must not restart tasks"


def test_bad_connector_configs_fail_clearly_and_change_nothing(
    local_stack: LocalStack, sink: dict[str, str], tmp_path: Path
) -> None:
    assert deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"]).returncode == 0
    running = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/config", timeout=30).json()

    missing = local_stack.k2("deploy-connectors", sink["file"], "--set", "TRADES_TOPIC=")
    assert missing.returncode == 1
    assert "no value for TRADES_TOPIC" in missing.stderr

    data = json.loads(Path(sink["file"]).read_text())
    unknown = dict(data, config={**data["config"], "connector.class": "org.example.NoSuchSink"})
    Path(sink["file"]).write_text(json.dumps(unknown))
    refused = deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"])
    assert refused.returncode == 1
    assert "connector.class" in refused.stderr and "org.example.NoSuchSink" in refused.stderr

    bad_value = dict(data, config={**data["config"], "tasks.max": "many"})
    Path(sink["file"]).write_text(json.dumps(bad_value))
    refused = deploy(local_stack, Path(sink["file"]), sink["topic"], sink["table"])
    assert refused.returncode == 1
    assert "tasks.max" in refused.stderr

    after = requests.get(f"{local_stack.connect_url}/connectors/{sink['name']}/config", timeout=30).json()
    assert after == running, "a refused deploy must leave the running connector as it was"


def test_the_stack_runs_its_catalog_on_s3_from_stack_up_to_k2_query(
    local_stack: LocalStack, moto_s3: str, tmp_path: Path
) -> None:
    """`k2 stack up catalog --warehouse s3://...` (a second state directory), then tables, sink, producer, query."""
    catalog_uri = f"http://127.0.0.1:{free_port()}"
    s3_env = {
        "K2_HOME": str(tmp_path / "s3home"),
        "K2_CATALOG_PORT": catalog_uri.rsplit(":", 1)[1],
        "K2_CATALOG_URI": catalog_uri,
        "K2_S3_ENDPOINT": moto_s3,
        "AWS_REGION": "us-east-1",
    }
    s3_stack = replace(local_stack, env={**local_stack.env, **s3_env})
    path = connector_copy(tmp_path)
    try:
        up = s3_stack.k2("stack", "up", "catalog", "--warehouse", "s3://k2-it/warehouse", "--s3-endpoint", moto_s3)
        assert up.returncode == 0, up.stderr
        assert "warehouse s3://k2-it/warehouse" in up.stderr
        switch = s3_stack.k2("stack", "up", "catalog", "--warehouse", "s3://k2-it/elsewhere")
        assert switch.returncode == 1 and "already runs with warehouse s3://k2-it/warehouse" in switch.stderr

        applied = s3_stack.k2("tables", "apply", "--format", "json")
        assert applied.returncode == 0, applied.stderr
        table = "market_data.trades"
        loaded = requests.get(f"{catalog_uri}/v1/namespaces/market_data/tables/trades", timeout=30).json()
        assert loaded["metadata-location"].startswith("s3://k2-it/warehouse/"), loaded["metadata-location"]

        topic, dlq = make_topics(local_stack)
        deployed = deploy(s3_stack, path, topic, table, "--set", f"S3_ENDPOINT={moto_s3}")
        assert deployed.returncode == 0, deployed.stderr
        assert local_stack.env["AWS_SECRET_ACCESS_KEY"] not in deployed.stdout + deployed.stderr
        shown = requests.get(f"{local_stack.connect_url}/connectors/{path.stem}/config", timeout=30).json()
        assert shown["iceberg.catalog.uri"] == catalog_uri
        assert shown["iceberg.catalog.s3.secret-access-key"] == "${env:AWS_SECRET_ACCESS_KEY}", "left to the worker"
        events = make_events(1200, seed=23)
        with BinanceStandIn(events, rate=1000) as server:
            done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "1200"))
        assert done.returncode == 0, done.stderr
        assert wait_for_rows(s3_stack, table, 1200, env=s3_env) == 1200
        assert_table_holds_exactly(s3_stack, table, events, s3_env)

        # A plain restart keeps the recorded S3 warehouse: the same rows are there.
        assert s3_stack.k2("stack", "down").returncode == 0
        again = s3_stack.k2("stack", "up", "catalog")
        assert again.returncode == 0 and "warehouse s3://k2-it/warehouse" in again.stderr, again.stderr
        assert query(s3_stack, f"select count(*) as n from {table}", s3_env) == [{"n": 1200}]
    finally:
        requests.delete(f"{local_stack.connect_url}/connectors/{path.stem}", timeout=30)
        s3_stack.k2("stack", "down")


def test_the_main_job_runs_end_to_end_offline(local_stack: LocalStack) -> None:
    """`k2 run --standin` (what `make demo` runs): every trade of the run is queryable in Iceberg at the end."""
    done = local_stack.k2("run", "--standin", "--rate", "1000", timeout=900)
    assert done.returncode == 0, done.stderr
    landed = re.search(r"([\d,]+) of this run's ([\d,]+) trades queryable in market_data.trades", done.stderr)
    assert landed and landed.group(1) == landed.group(2), done.stderr
    assert int(landed.group(1).replace(",", "")) >= 3600  # the whole sample (held trades may add a few more)
    assert "k2-iceberg-trades" in done.stdout and "RUNNING" in done.stdout
    assert re.search(r"gaps_unrecovered\s+0", done.stdout)
    candle_rows = [line for line in done.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", line)]
    assert len(candle_rows) == 9, "three 1-minute candles for each of the three symbols"
