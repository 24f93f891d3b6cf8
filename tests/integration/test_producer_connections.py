"""`k2 produce` against the stand-in's connection trouble and symbol rules, on the real stack: 600 symbols
under a URL limit, symbols refused by exchangeInfo, a Unicode symbol, connections closed at once, and a
connection that stays silent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn

from .conftest import LocalStack
from .helpers import (
    assert_exactly,
    consume,
    make_events,
    make_topics,
    produce_cmd,
    produce_summary,
    round_robin,
    start_producer,
)

pytestmark = pytest.mark.integration

UNICODE_SYMBOL = "这是测试币456"  # the Unicode symbol on Binance's spot testnet (CHANGELOG.md 2025-12-02)


def produce_symbols(server: BinanceStandIn, topic: str, dlq: str, symbols: list[str], *extra: str) -> list[str]:
    args = produce_cmd(server, topic, dlq, *extra)
    args[args.index("--symbols") + 1] = ",".join(symbols)
    return args


@contextmanager
def connection_times(server: BinanceStandIn) -> Iterator[list[float]]:
    """When the stand-in completed each handshake (its counter, sampled every 5 ms)."""
    times: list[float] = []
    done = threading.Event()

    def watch() -> None:
        seen = server.connections
        while not done.is_set():
            now = server.connections
            times.extend([time.monotonic()] * (now - seen))
            seen = now
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield times
    finally:
        done.set()
        watcher.join()


def test_600_symbols_are_split_under_the_url_limit_and_all_land(local_stack: LocalStack) -> None:
    symbols = [f"C{i:03d}{'X' * (i % 5)}USDT" for i in range(600)]
    events = round_robin(symbols, rounds=2, step_ms=1000)
    topic, dlq = make_topics(local_stack)
    # 600 streams in one URL are ~11,000 characters: the stand-in refuses anything over 8,000 with 414.
    with BinanceStandIn(events, rate=600, max_url_length=8000) as server:
        done = local_stack.k2(
            *produce_symbols(server, topic, dlq, symbols, "--max-messages", str(len(events)), "--duration", "90")
        )
        connections = server.connections
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["trades_acknowledged"] == len(events) and summary["reconnects"] == 0
    assert 3 <= connections <= 4, "4,000-character URLs: about 230 of these streams each"
    landed = consume(local_stack, topic)
    assert {r.key for r in landed} == set(symbols)
    assert_exactly(events, landed)


def test_unknown_and_not_trading_symbols_are_refused_in_one_line(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    events = make_events(300, seed=31)
    status = {"ETHUSDT": "CANCEL_ONLY", "BNBUSDT": "BREAK"}
    with BinanceStandIn(events, rate=100, symbol_status=status) as server:
        started = time.monotonic()
        symbols = ["BTCUSDT", "ETHUSDT", "NOPEUSDT", "BNBUSDT"]
        done = local_stack.k2(*produce_symbols(server, topic, dlq, symbols), timeout=60)
        elapsed = time.monotonic() - started
        assert server.connections == 0, "nothing is streamed before the symbols are checked"
    assert done.returncode == 1 and done.stdout == ""
    assert elapsed < 15
    assert done.stderr.strip().splitlines() == [
        f"Error: these symbols do not trade on {server.rest_url}: ETHUSDT (CANCEL_ONLY), NOPEUSDT (unknown), "
        "BNBUSDT (BREAK); only TRADING symbols have trades to stream: fix or drop them in --symbols"
    ]


def test_a_unicode_symbol_lands_keyed_by_its_utf8_name(local_stack: LocalStack) -> None:
    symbols = ["BTCUSDT", UNICODE_SYMBOL]
    events = round_robin(symbols, rounds=150, step_ms=1000)
    topic, dlq = make_topics(local_stack)
    # A forced disconnect makes the Unicode symbol's gap go through REST too.
    with BinanceStandIn(events, rate=300, script=Script(disconnect_at={120})) as server:
        done = local_stack.k2(
            *produce_symbols(server, topic, dlq, symbols, "--max-messages", str(len(events)), "--duration", "60")
        )
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["trades_acknowledged"] == len(events) and summary["trades_backfilled"] > 0
    landed = consume(local_stack, topic)
    unicode_records = [r for r in landed if r.value["symbol"] == UNICODE_SYMBOL]
    assert len(unicode_records) == 150 and all(r.key == UNICODE_SYMBOL for r in unicode_records)
    assert {r.value["vendor_data"]["source"] for r in unicode_records} == {"ws", "rest"}
    assert_exactly(events, landed)


def test_connections_closed_as_they_open_are_retried_with_growing_delays(local_stack: LocalStack) -> None:
    events = make_events(1500, seed=32)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=300, script=Script(close_on_open=5)) as server:
        with connection_times(server) as times:
            done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "1500", "--duration", "120"))
        closed_on_open = server.connections_closed_on_open
    assert done.returncode == 0, done.stderr
    assert closed_on_open == 5 and len(times) == 6
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # Backoff ceilings 0.5, 1, 2, 4, 8 s with delays drawn from [ceiling/2, ceiling]: each wait is at least
    # the one before (10 ms of slack for sampling), and together they take 7.75 s or more.
    assert all(later >= earlier - 0.01 for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[0] >= 0.24 and gaps[-1] >= 3.9 and sum(gaps) >= 7.7, gaps
    assert "(failure 5 in a row)" in done.stderr
    summary = produce_summary(done.stdout)
    assert summary["trades_acknowledged"] == 1500
    assert_exactly(events, consume(local_stack, topic))


def test_a_silent_connection_is_reopened_and_what_it_missed_backfilled(local_stack: LocalStack) -> None:
    events = make_events(1500, seed=33)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=300, script=Script(disconnect_at={400})) as server:
        args = produce_cmd(server, topic, dlq, "--max-messages", "1500", "--duration", "90", "--silence-timeout", "2")
        proc = start_producer(local_stack, args)
        deadline = time.monotonic() + 30
        while server.position < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.script.silent_connections = 1  # the reconnect after the forced disconnect gets no frame
        out, err = proc.communicate(timeout=120)
        connections = server.connections
    assert proc.returncode == 0, err
    summary = produce_summary(out)
    assert connections == 3 and summary["reconnects"] == 2
    assert "no frame for 2s (--silence-timeout): closed" in err
    assert summary["trades_acknowledged"] == 1500 and summary["trades_backfilled"] > 300
    assert summary["gaps_unrecovered"] == 0
    assert_exactly(events, consume(local_stack, topic))


def test_a_handshake_refused_with_a_4xx_stops_the_producer_in_seconds(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(make_events(300, seed=34), rate=100) as server:
        args = produce_cmd(server, topic, dlq, "--duration", "120")
        wrong = f"{server.ws_url}/v3"  # a --ws-url with a path the server does not serve: 404, forever
        args[args.index("--ws-url") + 1] = wrong
        started = time.monotonic()
        done = local_stack.k2(*args, timeout=60)
        elapsed = time.monotonic() - started
        assert server.connections == 0
    assert done.returncode == 1 and done.stdout == "" and elapsed < 20
    url = f"{wrong}/stream?streams=btcusdt@trade/ethusdt@trade/bnbusdt@trade"
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: stream connection failed: {wrong}/stream refused the stream handshake with HTTP 404 "
        f"({len(url)}-character URL, 3 streams); retrying cannot help: check --ws-url and --symbols"
    ]
    assert "reconnecting" not in done.stderr, "never retried"
