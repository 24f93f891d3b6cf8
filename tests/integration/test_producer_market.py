"""`k2 produce --symbols ALL` on the real stack against a market that changes while it runs, and
`--redundancy 2` against a dropped connection (the Binance stand-in, not Binance)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import requests

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.binance_standin.tape import stream_name

from .conftest import LocalStack
from .helpers import (
    assert_exactly,
    consume,
    free_port,
    make_events,
    make_topics,
    produce_cmd,
    produce_summary,
    round_robin,
    start_producer,
)

pytestmark = pytest.mark.integration

MARKET = ["AAAUSDT", "BBBUSDT", "NEWUSDT", "CCCFDUSD"]  # CCCFDUSD is left out by --quote USDT
LISTED_AT, BREAK_AT, ROUNDS = 300, 700, 600  # tape positions; every round trades each symbol once


def market_cmd(server: BinanceStandIn, topic: str, dlq: str, *extra: str) -> list[str]:
    args = produce_cmd(server, topic, dlq, "--quote", "USDT", "--symbols-refresh", "1s", *extra)
    args[args.index("--symbols") + 1] = "ALL"
    return args


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def metrics_of(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_whole_market_follows_a_listing_and_a_break_and_a_restart_resumes_it(local_stack: LocalStack) -> None:
    events = round_robin(MARKET, ROUNDS)
    script = Script(status_changes={LISTED_AT: {"NEWUSDT": "TRADING"}, BREAK_AT: {"BBBUSDT": "BREAK"}})
    topic, dlq = make_topics(local_stack)
    metrics_port = free_port()
    with BinanceStandIn(events, rate=100, script=script, symbol_status={"NEWUSDT": None}) as server:
        quoted = [e for e in server.trades_made() if str(e["s"]).endswith("USDT")]
        # The first run lives through the listing and the BREAK, then stops.
        dry = local_stack.k2(*market_cmd(server, topic, dlq, "--dry-run"))
        first_run = start_producer(local_stack, market_cmd(server, topic, dlq, "--metrics-port", str(metrics_port)))
        unsubscribed = ("UNSUBSCRIBE", [stream_name("BBBUSDT")])
        wait_for(lambda: unsubscribed in server.control_requests, 60, "BBBUSDT to be unsubscribed")
        time.sleep(1.5)  # past one more refresh: nothing else changes
        metrics = metrics_of(metrics_port)
        first_run.send_signal(signal.SIGTERM)
        out, first_err = first_run.communicate(timeout=120)
        assert first_run.returncode == 0, first_err
        first = produce_summary(out)
        stopped_at = server.position
        time.sleep(2)  # the market goes on while no producer runs
        # The second run resumes every symbol it streams after its last trade in the topic.
        rest = len(quoted) - first["trades_acknowledged"]
        done = local_stack.k2(*market_cmd(server, topic, dlq, "--max-messages", str(rest), "--duration", "120"))
        assert done.returncode == 0, done.stderr
        second = produce_summary(done.stdout)
        assert server.position - stopped_at > 150, "the stand-in kept trading between the runs"

    assert dry.returncode == 0, dry.stderr
    report = produce_summary(dry.stdout)
    # Before the listing two symbols trade in USDT, AAAUSDT and BBBUSDT: one connection.
    assert (report["symbols"], report["quotes"], report["symbols_to_stream"], report["connections"]) == (
        "ALL",
        "USDT",
        2,
        1,
    )
    assert first["symbols_added"] == ["NEWUSDT (listed)"]
    assert first["symbols_removed"] == ["BBBUSDT (BREAK)"]
    assert first["symbols_subscribed"] == 2
    assert first["gaps_unrecovered"] == 0 and first["lost_ranges"] == [], "nothing after BREAK is reported lost"
    assert "UNRECOVERED" not in first_err and "never received" not in first_err
    assert ("SUBSCRIBE", [stream_name("NEWUSDT")]) in server.control_requests
    # Where NEWUSDT starts was asked by time (its first trade since the exchangeInfo that did not list it).
    assert server.requests_by_endpoint["/api/v3/aggTrades"] == 1
    assert server.incoming_limit_disconnects == 0, "control messages stayed within 5 a second"
    assert metrics['k2_symbol_changes_total{change="added",reason="listed"}'] == 1
    assert metrics['k2_symbol_changes_total{change="removed",reason="BREAK"}'] == 1
    assert metrics['k2_symbol_changes_total{change="removed",reason="delisted"}'] == 0
    assert (
        metrics["k2_symbols_subscribed"] == 2 and metrics['k2_stream_control_requests_total{method="SUBSCRIBE"}'] == 1
    )

    assert second["resumed_symbols"] == 2 and "last trade id of 2 of 2 symbols found" in done.stderr
    assert second["symbols_subscribed"] == 2 and second["symbols_added"] == second["symbols_removed"] == []
    assert second["gaps_unrecovered"] == 0 and second["trades_backfilled"] > 0
    # Every trade of the USDT market exactly once: NEWUSDT's from its listing on (those made before it was
    # subscribed came over REST), BBBUSDT's until its BREAK, and what traded while no producer ran.
    landed = consume(local_stack, topic)
    assert_exactly(quoted, landed)
    new_ids = [e["t"] for e in quoted if e["s"] == "NEWUSDT"]
    assert new_ids and min(new_ids) > 30_000 + LISTED_AT // len(MARKET) - 1
    assert not any(r.value["symbol"] == "CCCFDUSD" for r in landed)


def test_with_two_connection_sets_a_dropped_connection_needs_no_backfill(local_stack: LocalStack) -> None:
    events = make_events(3000, seed=31)
    # One of the two connections is dropped and new connections are refused for 1.5 s: its set misses
    # about 200 trades that the other set delivers.
    script = Script(disconnect_some_at={1000: 1}, refuse_after_disconnect_s=1.5)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=150, script=script) as server:
        args = produce_cmd(server, topic, dlq, "--redundancy", "2", "--max-messages", "3000", "--duration", "120")
        done = local_stack.k2(*args)
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert server.partial_disconnects == 1 and server.connections >= 3, "one connection dropped and came back"
    assert server.requests_by_endpoint["/api/v3/historicalTrades"] == 0, "no REST request was needed"
    assert summary["backfill_requests"] == 0 and summary["gaps_backfilled"] == summary["gaps_unrecovered"] == 0
    assert summary["reconnects"] >= 1 and summary["duplicates_dropped"] == 0
    assert summary["redundant_copies_dropped"] > 2000, "the other set's copies were dropped by trade id"
    assert summary["trades_acknowledged"] == 3000
    assert_exactly(events, consume(local_stack, topic))
