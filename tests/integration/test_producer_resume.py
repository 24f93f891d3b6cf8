"""A restarted `k2 produce` continues each symbol after its last trade in the topic (real stack, stand-in)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.resume import last_trade_ids

from .conftest import LocalStack
from .helpers import (
    SYMBOLS,
    assert_exactly,
    consume,
    make_events,
    make_topics,
    produce_cmd,
    produce_summary,
    start_producer,
)

pytestmark = pytest.mark.integration


def stop_after(stack: LocalStack, args: list[str], seconds: float) -> tuple[dict[str, Any], str]:
    """Run `k2 produce` for ``seconds``, then SIGTERM it; returns its summary and stderr."""
    proc = start_producer(stack, args)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return produce_summary(out), err


def test_a_restart_backfills_the_trades_made_while_it_was_down(local_stack: LocalStack) -> None:
    events = make_events(6000, seed=21)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=400) as server:
        first, first_err = stop_after(local_stack, produce_cmd(server, topic, dlq), 5)
        stopped_at = server.position
        time.sleep(4)  # the market goes on while no producer runs
        restarted_at = server.position
        rest = len(events) - first["trades_sent"]
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", str(rest), "--duration", "120"))
    assert done.returncode == 0, done.stderr
    second = produce_summary(done.stdout)
    assert 0 < first["trades_sent"] < len(events) - 1000, "the first run must stop well before the tape's end"
    assert first["resumed_symbols"] == 0 and "last trade id of 0 of 3 symbols found" in first_err
    assert restarted_at - stopped_at > 1000, "the stand-in kept trading while no producer ran"

    assert second["resumed_symbols"] == 3
    assert "resume: last trade id of 3 of 3 symbols found in " + topic in done.stderr
    # Everything broadcast between the two runs came back over REST, reported as backfilled.
    assert second["trades_backfilled"] >= restarted_at - stopped_at
    assert second["gaps_backfilled"] == second["gaps_detected"] >= 3
    assert second["gaps_unrecovered"] == 0 and second["lost_ranges"] == []
    assert second["duplicates_dropped"] == 0 and second["trades_acknowledged"] == rest
    landed = consume(local_stack, topic)
    assert_exactly(events, landed)  # the whole tape, each trade exactly once, in order per symbol

    # The backwards reader agrees with a full read, over many small chunks (seeks) and with a budget.
    newest: dict[str, int] = {}
    for record in landed:
        newest[record.value["symbol"]] = max(record.value["trade_id"], newest.get(record.value["symbol"], -1))
    wanted = [*SYMBOLS, "NEWUSDT"]
    assert last_trade_ids(local_stack.bootstrap_servers, topic, wanted, first_chunk=37) == newest
    partition_ends: dict[int, tuple[int, str, int]] = {}
    for record in landed:
        if record.offset >= partition_ends.get(record.partition, (-1, "", 0))[0]:
            partition_ends[record.partition] = (record.offset, record.value["symbol"], record.value["trade_id"])
    last_of_each_partition = {symbol: trade_id for _, symbol, trade_id in partition_ends.values()}
    assert last_trade_ids(local_stack.bootstrap_servers, topic, wanted, budget=1) == last_of_each_partition


def test_from_latest_starts_at_the_first_live_trade_without_backfill(local_stack: LocalStack) -> None:
    events = make_events(6000, seed=22)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=400) as server:
        first, _ = stop_after(local_stack, produce_cmd(server, topic, dlq), 4)
        stopped_at = server.position
        time.sleep(3)
        restarted_at = server.position
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--from-latest", "--duration", "4"))
    assert done.returncode == 0, done.stderr
    second = produce_summary(done.stdout)
    assert restarted_at - stopped_at > 800
    assert second["resumed_symbols"] == 0 and "resume:" not in done.stderr
    assert second["trades_backfilled"] == 0 and second["gaps_detected"] == 0 and second["backfill_requests"] == 0
    landed = consume(local_stack, topic)
    seen = [(r.value["symbol"], r.value["trade_id"]) for r in landed]
    assert len(seen) == len(set(seen)) == first["trades_acknowledged"] + second["trades_acknowledged"]
    # The trades made while no producer ran are not in the topic: each symbol's ids jump.
    by_id = {(e["s"], e["t"]): i for i, e in enumerate(events)}
    positions = sorted(by_id[key] for key in seen)
    assert any(later - earlier > 500 for earlier, later in zip(positions, positions[1:], strict=False))
