"""`k2 produce` backfilling gaps under Binance's REST limits, on the real stack, with the stand-in.

Each test makes one documented Binance condition real through the stand-in (producer/binance_standin/):
every connection dropped at once with 100+ symbols, ids that never existed, the request-weight limit
with its 429-then-418 escalation, a WAF block, and a ban while the producer is asked to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from k2.producer.backfill import RestClient, WeightBudget
from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.exceptions import BackfillError
from k2.producer.sample import generate_events

from .conftest import LocalStack
from .helpers import (
    SYMBOLS,
    assert_exactly,
    consume,
    live_options,
    make_events,
    make_topics,
    pid_of,
    produce_summary,
)

pytestmark = pytest.mark.integration

MANY = [f"K2S{index:03d}USDT" for index in range(120)]


def produce_args(server: BinanceStandIn, symbols: list[str], topic: str, dlq: str, *extra: str) -> list[str]:
    return [
        "produce", "--symbols", ",".join(symbols), "--ws-url", server.ws_url, "--rest-url", server.rest_url,
        "--topic", topic, "--dlq-topic", dlq, "--format", "json", *extra,
    ]  # fmt: skip


def test_a_mass_disconnect_of_120_symbols_recovers_every_trade_without_false_losses(local_stack: LocalStack) -> None:
    """Binance drops every connection at once during upgrades (CHANGELOG 2025-07-03, 2026-06-24): 120 gaps
    open together, REST serves them at the weight budget's pace (~3.6 pages/s, so over 30 s for all),
    and none is reported lost although the last waits far longer than --gap-timeout."""
    # 7.2 s of trades: the market goes on long after the reconnect, so every symbol's gap shows.
    events = list(generate_events(MANY, seconds=7.2, trades_per_second=2000, start_ms=1_790_000_000_000, seed=31))
    topic, dlq = make_topics(local_stack)
    script = Script(disconnect_at={2400}, refuse_after_disconnect_s=1.5)
    with BinanceStandIn(events, rate=2000, script=script) as server:
        args = produce_args(server, MANY, topic, dlq, "--max-messages", str(len(events)), "--gap-timeout", "3")
        done = local_stack.k2(*args, timeout=240)
        assert server.rest_429 == 0 and server.rest_418 == 0, "paced within the weight budget"
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["gaps_detected"] >= 100, summary
    assert (summary["gaps_unrecovered"], summary["trades_unrecovered"]) == (0, 0), summary
    assert summary["trades_backfilled"] >= 2000, summary
    assert_exactly(events, consume(local_stack, topic))


def test_ids_that_never_existed_are_counted_absent_not_lost(local_stack: LocalStack) -> None:
    """historicalTrades?fromId=a answers from the next existing id: REST is taken at its word."""
    events = make_events(600, seed=32)
    btc = [e for e in events if e["s"] == "BTCUSDT"]
    missing = {btc[100]["t"], btc[101]["t"], btc[102]["t"]}
    kept = [e for e in events if not (e["s"] == "BTCUSDT" and e["t"] in missing)]
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(kept, rate=1000) as server:
        done = local_stack.k2(*produce_args(server, SYMBOLS, topic, dlq, "--max-messages", str(len(kept))))
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["trades_absent"] == 3, summary
    assert (summary["gaps_unrecovered"], summary["trades_unrecovered"]) == (0, 0), summary
    assert summary["backfill_requests"] <= 2, "one answer settles it (the old producer asked 60 times)"
    assert_exactly(kept, consume(local_stack, topic))


def test_a_429_pauses_every_request_so_binance_never_bans(local_stack: LocalStack) -> None:
    """A weight limit of 100 a "minute" (3 s here) lets four pages through; the fifth gets 429 and
    Retry-After. Any request in that window after its 429 would be banned (418); none is."""
    events = list(generate_events(MANY[:30], seconds=6, trades_per_second=1000, start_ms=1_790_000_000_000, seed=33))
    topic, dlq = make_topics(local_stack)
    script = Script(disconnect_at={1000}, refuse_after_disconnect_s=1.0)
    with BinanceStandIn(events, rate=1000, script=script, weight_limit_per_min=100, time_scale=20) as server:
        args = produce_args(server, MANY[:30], topic, dlq, "--max-messages", str(len(events)), "--gap-timeout", "60")
        done = local_stack.k2(*args, timeout=240)
        assert server.rest_429 >= 1, "the limit was reached"
        assert server.rest_418 == 0, "no request followed a 429 within its window"
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert (summary["gaps_unrecovered"], summary["trades_unrecovered"]) == (0, 0), summary
    assert_exactly(events, consume(local_stack, topic))


def test_a_waf_block_pauses_backfill_and_requests_waiting_recheck_the_pause() -> None:
    """A 403 (WAF limit, rest-api.md) carries no Retry-After: every request pauses a minute, those
    already waiting for their slot included."""
    events = make_events(200, seed=34)
    with BinanceStandIn(events, rate=5000, waf_block_requests={1}) as server:
        _touch(server)
        while server.position < len(events):
            time.sleep(0.05)
        client = RestClient(server.rest_url, WeightBudget(window_s=60))
        with pytest.raises(BackfillError, match="WAF limit hit"):
            client.historical_trades("BTCUSDT", int(events[0]["t"]))
        assert client.budget.paused_for > 55
        with pytest.raises(BackfillError, match="no request slot before the deadline"):
            client.historical_trades("BTCUSDT", int(events[0]["t"]), deadline=time.monotonic() + 1)
        assert server.rest_requests == 1, "nothing was sent during the pause"


def _touch(server: BinanceStandIn) -> None:
    """Open and close one WebSocket so the stand-in starts playing its tape."""
    from websockets.sync.client import connect

    with connect(f"{server.ws_url}/stream?streams=btcusdt@trade"):
        time.sleep(0.2)


def test_sigterm_during_a_ban_exits_within_seconds_with_everything_flushed(local_stack: LocalStack) -> None:
    """The final backfill never waits out a ban (418, minutes to days): open gaps are reported, held
    trades released, Kafka flushed, and the process exits in seconds."""
    events = make_events(3000, seed=35)
    topic, dlq = make_topics(local_stack)
    script = Script(disconnect_at={500}, refuse_after_disconnect_s=1.0)
    with BinanceStandIn(events, rate=300, script=script) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "k2.cli", *produce_args(server, SYMBOLS, topic, dlq)],
            env=local_stack.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # started: symbols checked, stream open
        server.banned_until = time.time() + 3600  # now banned for an hour: every REST request gets 418
        while server.rest_418 == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # until a gap exists and its backfill met the ban
        assert server.rest_418 >= 1
        time.sleep(1)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - asked
    assert proc.returncode == 0, stderr
    assert took < 15, f"exit took {took:.1f}s"
    summary = produce_summary(stdout)
    assert summary["gaps_unrecovered"] >= 1 and summary["unacknowledged"] == 0 and summary["delivery_failures"] == 0
    assert "IP banned by Binance (418)" in stderr
    landed = consume(local_stack, topic)
    assert len(landed) == summary["trades_acknowledged"]
    assert len({(r.value["symbol"], r.value["trade_id"]) for r in landed}) == len(landed), "no duplicates"


def test_a_slow_broker_does_not_stop_the_socket_from_answering_pings(local_stack: LocalStack) -> None:
    """Kafka stalls (the broker is stopped for 8 s) and librdkafka's queue fills (100 records here):
    trades wait in order in memory and the event loop keeps answering the server's pings, so the
    stand-in (ping every second, pong due within 2 s) never drops the connection; every trade lands."""
    import threading

    from k2.producer.app import Summary, run_live

    events = make_events(6000, seed=36)
    topic, dlq = make_topics(local_stack)
    broker = pid_of(local_stack, "kafka")
    with BinanceStandIn(events, rate=500, ping_interval=1.0, ping_timeout=2.0) as server:
        options = live_options(
            local_stack, server, topic, dlq, max_messages=len(events), duration=120,
            producer_overrides={"queue.buffering.max.messages": 100},
        )  # fmt: skip
        result: list[Summary] = []
        runner = threading.Thread(target=lambda: result.append(run_live(options)))
        runner.start()
        while server.position < 1000:
            time.sleep(0.1)
        os.kill(broker, signal.SIGSTOP)
        try:
            time.sleep(8)
        finally:
            os.kill(broker, signal.SIGCONT)
        runner.join(180)
        connections = server.connections
    (summary,) = result
    assert connections == 1 and summary.reconnects == 0, "the stand-in never dropped the connection for silence"
    assert summary.lossless and summary.gaps_unrecovered == 0
    assert_exactly(events, consume(local_stack, topic))
